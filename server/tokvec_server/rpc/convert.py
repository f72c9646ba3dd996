"""Protobuf <-> plain types. The only server module besides service.py that touches messages."""

from __future__ import annotations

from collections.abc import Iterator

import numpy as np

from tokvec.v1 import tokvec_pb2 as pb
from tokvec_server.alignment import DocPlan
from tokvec_server.batching.jobs import DocOutput
from tokvec_server.chunks import cuts, n_chunks
from tokvec_server.errors import InvalidInput, TokvecError
from tokvec_server.runners import ModelInfo
from tokvec_server.settings import Batching, Limits
from tokvec_server.types import DocInput, DType, EmbedOptions, Output, Pooling, SpanSpec, Tokens

_POOLING = {
    pb.POOLING_UNSPECIFIED: Pooling.MEAN,
    pb.POOLING_MEAN: Pooling.MEAN,
    pb.POOLING_MAX: Pooling.MAX,
    pb.POOLING_FIRST: Pooling.FIRST,
    pb.POOLING_LAST: Pooling.LAST,
    pb.POOLING_SUM: Pooling.SUM,
}
_DTYPE = {
    pb.DTYPE_UNSPECIFIED: DType.FLOAT32,
    pb.DTYPE_FLOAT32: DType.FLOAT32,
    pb.DTYPE_FLOAT16: DType.FLOAT16,
    pb.DTYPE_BFLOAT16: DType.BFLOAT16,
}
_DTYPE_PB = {v: k for k, v in _DTYPE.items() if k != pb.DTYPE_UNSPECIFIED}
_OUTPUT = {
    pb.OUTPUT_TOKENS: Output.TOKENS,
    pb.OUTPUT_PIECES: Output.PIECES,
    pb.OUTPUT_DOC_VECTOR: Output.DOC_VECTOR,
    pb.OUTPUT_CHUNK_VECTORS: Output.CHUNK_VECTORS,
}
_CHUNK_UNIT = {pb.CHUNK_UNIT_UNSPECIFIED: "tokens", pb.CHUNK_UNIT_TOKENS: "tokens", pb.CHUNK_UNIT_CHARS: "chars"}
_SPANS = {
    pb.Spans.KIND_DOC: "doc",
    pb.Spans.KIND_SENTS: "sents",
    pb.Spans.KIND_TOKENS: "tokens",
    pb.Spans.KIND_PIECES: "pieces",
}


def options(msg: pb.EmbedOptions) -> EmbedOptions:
    if msg.pooling not in _POOLING:
        raise InvalidInput(f"options.pooling: {msg.pooling} is not a Pooling value")
    for i, value in enumerate(msg.more_poolings):
        if value not in _POOLING:
            raise InvalidInput(f"options.more_poolings[{i}]: {value} is not a Pooling value")
    # Each entry is one more (n_tokens, width) tensor per doc: bounded like hidden_layers.
    if len(msg.more_poolings) > len(Pooling):
        raise InvalidInput(
            f"options.more_poolings: {len(msg.more_poolings)} entries > {len(Pooling)} (one per Pooling value)"
        )
    if msg.dtype not in _DTYPE:
        raise InvalidInput(f"options.dtype: {msg.dtype} is not a DType value")
    for i, value in enumerate(msg.chunk_poolings):
        if value not in _POOLING:
            raise InvalidInput(f"options.chunk_poolings[{i}]: {value} is not a Pooling value")
    return EmbedOptions(
        model=msg.model,
        pooling=_POOLING[msg.pooling],
        spans=spans(msg.spans if msg.HasField("spans") else None),
        dtype=_DTYPE[msg.dtype],
        outputs=_outputs(list(msg.outputs)),
        hidden_layers=tuple(msg.hidden_layers),
        more_poolings=tuple(_POOLING[p] for p in msg.more_poolings),
        chunk_poolings=tuple(_POOLING[v] for v in msg.chunk_poolings),
    )


def spans(msg: pb.Spans | None) -> SpanSpec:
    if msg is None or msg.kind == pb.Spans.KIND_UNSPECIFIED:
        return SpanSpec()
    if msg.kind not in _SPANS:
        raise InvalidInput(f"options.spans.kind: {msg.kind} is not a Spans.Kind value")
    kind = _SPANS[msg.kind]
    if kind in ("doc", "sents"):
        return SpanSpec(kind, 0, 0)
    return SpanSpec(kind, msg.window, msg.stride)


def _outputs(values: list[int]) -> frozenset[Output]:
    if not values:
        return frozenset({Output.TOKENS})
    unknown = [v for v in values if v not in _OUTPUT]
    if unknown:
        raise InvalidInput(f"options.outputs: {unknown[0]} is not an Output value")
    return frozenset(_OUTPUT[v] for v in values)


def doc(msg: pb.Doc) -> DocInput:
    # An unknown chunk unit fails its doc alone, in validation (alignment/chunks.py names it).
    unit = _CHUNK_UNIT.get(msg.chunk_unit, str(msg.chunk_unit))
    return DocInput(
        msg.id,
        list(msg.words),
        list(msg.spaces),
        msg.text,
        list(msg.sent_starts),
        msg.lang,
        list(msg.chunk_starts),
        list(msg.chunk_ends),
        unit,
    )


def _tensor(array: np.ndarray, dtype: DType) -> pb.Tensor:
    # numpy arrays are little-endian on every platform we serve from; make it explicit anyway.
    data = array.astype(array.dtype.newbyteorder("<"), copy=False).tobytes()
    return pb.Tensor(dtype=_DTYPE_PB[dtype], shape=list(array.shape), data=data)


def error(index: int, doc_id: str, exc: TokvecError) -> pb.DocResult:
    return pb.DocResult(index=index, id=doc_id, error=pb.Error(code=exc.code.value[0], message=str(exc)))


def results(
    index: int, out: DocOutput, fingerprint: str, dtype: DType, more_poolings: int = 0
) -> Iterator[pb.DocResult]:
    """One DocResult, or several (row ranges, ``more`` set on all but the last) for a large doc.
    ``more_poolings``: how many further poolings were asked (EmbedOptions.more_poolings)."""
    plan, width = out.plan, _width(out)
    pooled = _pooled(out, more_poolings)
    itemsize = 2 if dtype is not DType.FLOAT32 else 4
    row_bytes = width * itemsize * (int(out.rows is not None) + len(out.layers) + len(pooled))
    piece_bytes = out.pieces.nbytes if out.pieces is not None else 0
    chunk_bytes = sum(v.nbytes for v in out.chunk_vectors)
    # Every chunk carries a share of token rows, piece rows and chunk vectors: budget their sum.
    parts = n_chunks(plan.n_tokens * row_bytes + piece_bytes + chunk_bytes)
    row_cuts = cuts(plan.n_tokens, parts)
    piece_cuts = cuts(len(out.pieces) if out.pieces is not None else 0, parts)
    vector_cuts = cuts(len(out.chunk_vectors[0]) if out.chunk_vectors else 0, parts)
    for k in range(parts):
        a, b = row_cuts[k], row_cuts[k + 1]
        msg = pb.DocResult(
            index=index, id=out.doc.id, fingerprint=fingerprint, n_tokens=plan.n_tokens, row_start=a, more=k < parts - 1
        )
        if out.rows is not None:
            msg.tokens.CopyFrom(_tensor(out.rows[a:b], dtype))
        msg.layers.extend(_tensor(layer[a:b], dtype) for layer in out.layers)
        msg.pooled.extend(_tensor(rows[a:b], dtype) for rows in pooled)
        if k == 0:
            _first_chunk(msg, out, dtype)
        if out.pieces is not None:
            p, q = piece_cuts[k], piece_cuts[k + 1]
            msg.piece_start = p
            msg.pieces.hidden.CopyFrom(_tensor(out.pieces[p:q], dtype))
        if out.chunk_vectors:
            c, d = vector_cuts[k], vector_cuts[k + 1]
            msg.chunk_start = c
            msg.chunk_vectors.extend(_tensor(vectors[c:d], dtype) for vectors in out.chunk_vectors)
        yield msg


def _pooled(out: DocOutput, asked: int) -> list[np.ndarray]:
    # Every runner's rows go through batching/collect.py, which pools each of more_poolings (a
    # tok2vec's one piece per token pools to the row itself under every pooling).
    return out.pooled if out.rows is not None and asked else []


def _width(out: DocOutput) -> int:
    for array in (out.rows, out.pieces, out.doc_vector, *out.chunk_vectors[:1]):
        if array is not None:
            return int(array.shape[-1])
    return int(out.layers[0].shape[-1]) if out.layers else 0


def _first_chunk(msg: pb.DocResult, out: DocOutput, dtype: DType) -> None:
    """Flags, server tokens, the doc vector and the piece alignment travel once, up front."""
    plan = out.plan
    msg.no_piece.extend(plan.no_piece.tolist())
    msg.truncated.extend(plan.truncated.tolist())
    msg.chunk_no_piece.extend(out.chunk_no_piece.tolist())
    if out.doc.from_text:
        msg.words.extend(out.doc.words)
        msg.spaces.extend(out.doc.spaces)
    if out.doc_vector is not None:
        msg.doc_vector.CopyFrom(_tensor(out.doc_vector, dtype))
    if out.pieces is not None:
        pieces = msg.pieces
        pieces.ids.extend(np.concatenate(plan.span_ids).tolist() if plan.span_ids else [])
        pieces.span_lengths.extend(len(ids) for ids in plan.span_ids)
        pieces.span_token_starts.extend(plan.span_tokens[:, 0].tolist())
        pieces.span_token_ends.extend(plan.span_tokens[:, 1].tolist())
        pieces.align_lengths.extend(plan.align_lengths.tolist())
        pieces.align_indices.extend(plan.align_indices.tolist())


def tokenized(doc: Tokens, plan: DocPlan, tokenizer: object) -> pb.TokenizedDoc:
    msg = pb.TokenizedDoc(id=doc.id, words=doc.words, spaces=doc.spaces)
    k = 0
    for ids, (a, b) in zip(plan.span_ids, plan.span_tokens):
        offs = plan.piece_offsets[k : k + len(ids)]
        k += len(ids)
        msg.spans.append(
            pb.SpanPieces(
                token_start=int(a),
                token_end=int(b),
                ids=ids.tolist(),
                pieces=tokenizer.convert_ids_to_tokens(ids.tolist()),  # type: ignore[attr-defined]
                char_starts=offs[:, 0].tolist(),
                char_ends=offs[:, 1].tolist(),
            )
        )
    msg.align_lengths.extend(plan.align_lengths.tolist())
    msg.align_indices.extend(plan.align_indices.tolist())
    msg.no_piece.extend(plan.no_piece.tolist())
    msg.truncated.extend(plan.truncated.tolist())
    return msg


def info(models: list[tuple[ModelInfo, Batching]], limits: Limits, version: str) -> pb.InfoResponse:
    """The first model is the default. Batch settings are per model; Limits shows the default's."""
    batching = models[0][1]
    return pb.InfoResponse(
        version=version,
        models=[
            pb.ModelInfo(
                name=m.name,
                fingerprint=m.fingerprint,
                width=m.width,
                max_length=m.max_length,
                backend=m.backend,
                device=m.device,
                dtype=_DTYPE_PB[m.dtype],
                n_layers=m.n_layers,
                is_default=i == 0,
                pipeline=m.pipeline,
                component=m.component,
            )
            for i, (m, _) in enumerate(models)
        ],
        limits=pb.Limits(
            max_docs_per_request=limits.max_docs_per_request,
            max_tokens_per_doc=limits.max_tokens_per_doc,
            max_chars_per_doc=limits.max_chars_per_doc,
            max_message_bytes=limits.max_message_bytes,
            max_batch_items=batching.max_batch_items,
            max_wait_ms=int(batching.max_wait_ms),
            max_in_flight_per_stream=limits.max_in_flight_per_stream,
            rearrival_ms=int(batching.rearrival_ms),
            max_queued_docs=batching.max_queued_docs,
            max_queued_pieces=batching.max_queued_pieces,
        ),
    )
