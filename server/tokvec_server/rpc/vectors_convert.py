"""VectorsService protobuf <-> plain types (its docs are read by rpc/convert.py, as the EmbedService's)."""

from __future__ import annotations

from collections.abc import Iterator

import numpy as np
import torch

from tokvec.v1 import tokvec_pb2 as pb
from tokvec.v1 import vectors_pb2 as vpb
from tokvec_server.batching.collect import to_host
from tokvec_server.chunks import cuts, n_chunks
from tokvec_server.errors import InvalidInput, TokvecError
from tokvec_server.types import DType, Tokens
from tokvec_server.vectors.similarity import ItemRef
from tokvec_server.vectors.table import VectorTable

_DTYPE: dict[int, DType] = {
    pb.DTYPE_UNSPECIFIED: DType.FLOAT32,
    pb.DTYPE_FLOAT32: DType.FLOAT32,
    pb.DTYPE_FLOAT16: DType.FLOAT16,
    pb.DTYPE_BFLOAT16: DType.BFLOAT16,
}
_DTYPE_PB = {DType.FLOAT32: pb.DTYPE_FLOAT32, DType.FLOAT16: pb.DTYPE_FLOAT16, DType.BFLOAT16: pb.DTYPE_BFLOAT16}
_OOV: dict[int, str] = {vpb.OOV_UNSPECIFIED: "zero", vpb.OOV_ZERO: "zero", vpb.OOV_ERROR: "error"}
_KIND: dict[int, str] = {
    vpb.Item.KIND_UNSPECIFIED: "doc",
    vpb.Item.KIND_DOC: "doc",
    vpb.Item.KIND_TOKEN: "token",
    vpb.Item.KIND_SPAN: "span",
}


def oov(value: int) -> str:
    if value not in _OOV:
        raise InvalidInput(f"oov: {value} is not an Oov value")
    return _OOV[value]


def dtype(value: int) -> DType:
    if value not in _DTYPE:
        raise InvalidInput(f"dtype: {value} is not a DType value")
    return _DTYPE[value]


def item(msg: vpb.Item, where: str) -> ItemRef:
    if msg.kind not in _KIND:
        raise InvalidInput(f"{where}.kind: {msg.kind} is not an Item.Kind value")
    return ItemRef(msg.doc, _KIND[msg.kind], msg.start, msg.end)


def queries(msg: pb.Tensor, width: int) -> np.ndarray:
    """Query vectors as float32. Shape: (n, width)"""
    if not msg.data and not msg.shape:
        return np.zeros((0, width), np.float32)
    kind = dtype(msg.dtype)
    shape = tuple(msg.shape)
    if len(shape) != 2 or shape[1] != width:
        raise InvalidInput(f"vectors.shape: {list(shape)} is not [n, {width}] (the table's width)")
    itemsize = 4 if kind is DType.FLOAT32 else 2
    if len(msg.data) != shape[0] * shape[1] * itemsize:
        raise InvalidInput(f"vectors.data: {len(msg.data)} bytes for shape {list(shape)} in {kind.value}")
    if kind is DType.BFLOAT16:
        bits = np.frombuffer(msg.data, dtype="<u2").astype(np.uint32) << 16
        array = bits.view(np.float32)
    else:
        array = np.frombuffer(msg.data, dtype="<f4" if kind is DType.FLOAT32 else "<f2").astype(np.float32)
    array = array.reshape(shape)
    if not np.isfinite(array).all():
        raise InvalidInput("vectors: not all values are finite")
    return array


def _tensor(array: np.ndarray, kind: DType) -> pb.Tensor:
    wire = to_host(torch.from_numpy(np.ascontiguousarray(array, dtype=np.float32)), kind)
    return pb.Tensor(
        dtype=_DTYPE_PB[kind],
        shape=list(wire.shape),
        data=wire.astype(wire.dtype.newbyteorder("<"), copy=False).tobytes(),
    )


def error(index: int, doc_id: str, exc: TokvecError) -> vpb.TokenVectors:
    return vpb.TokenVectors(index=index, id=doc_id, error=pb.Error(code=exc.code.value[0], message=str(exc)))


def token_vectors(
    index: int, tokens: Tokens, vectors: np.ndarray, missing: np.ndarray, fingerprint: str, kind: DType
) -> Iterator[vpb.TokenVectors]:
    """One message per doc, or several row ranges (``more`` on all but the last) for a large doc."""
    n = len(vectors)
    itemsize = 4 if kind is DType.FLOAT32 else 2
    parts = n_chunks(vectors.size * itemsize)
    bounds = cuts(n, parts)
    for k in range(parts):
        a, b = bounds[k], bounds[k + 1]
        msg = vpb.TokenVectors(
            index=index, id=tokens.id, fingerprint=fingerprint, n_tokens=n, row_start=a, more=k < parts - 1
        )
        msg.vectors.CopyFrom(_tensor(vectors[a:b], kind))
        if k == 0:
            msg.oov.extend(missing.tolist())
            # spaCy's Doc.vector: the mean over every token, zero rows included.
            msg.doc_vector.CopyFrom(_tensor(vectors.mean(0) if n else np.zeros(vectors.shape[1], np.float32), kind))
            if tokens.from_text:
                msg.words.extend(tokens.words)
                msg.spaces.extend(tokens.spaces)
        yield msg


def query_error(exc: TokvecError) -> vpb.Neighbours:
    return vpb.Neighbours(error=pb.Error(code=exc.code.value[0], message=str(exc)))


def neighbours(
    table: VectorTable, rows: np.ndarray, scores: np.ndarray, row_key: dict[int, int], was_oov: bool
) -> vpb.Neighbours:
    keys = [int(row_key[int(r)]) for r in rows]
    return vpb.Neighbours(
        oov=was_oov, keys=keys, words=[table.word(k) for k in keys], rows=rows.tolist(), scores=scores.tolist()
    )


def info(table: VectorTable, device: str) -> vpb.VectorsInfoResponse:
    return vpb.VectorsInfoResponse(
        name=table.name,
        fingerprint=table.fingerprint,
        mode=table.mode,
        n_rows=table.n_rows,
        width=table.width,
        n_keys=table.n_keys,
        attr="ORTH",
        device=device,
    )
