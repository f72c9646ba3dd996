"""The vectors client: a static word-vector table served by tokvec (``tokvec serve --vectors``),
with spaCy's semantics for ``.vector``, ``.similarity()`` and ``Vectors.most_similar``.

>>> with VectorsClient("127.0.0.1:50051") as vectors:
...     rows = vectors.lookup([{"words": ["Hello", "world"]}])[0].vectors
...     score = vectors.similarity([["cats", "purr"], ["dogs", "bark"]], [((0,), (1,)), ((0, 0), (1, 0))])
...     best = vectors.most_similar(words=["cat"], n=5)[0].words

Items of a pair name a doc of the same call: ``(doc,)`` the whole doc, ``(doc, i)`` token i,
``(doc, start, end)`` the span of tokens [start, end).
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

import grpc
import numpy as np

from tokvec import _wire
from tokvec._base import SyncConnection
from tokvec._channel import Credentials
from tokvec.errors import DocError, from_rpc_error, status_code
from tokvec.v1 import tokvec_pb2 as pb
from tokvec.v1 import vectors_pb2 as vpb
from tokvec.v1 import vectors_pb2_grpc as vpb_grpc

OOV = {"zero": vpb.OOV_ZERO, "error": vpb.OOV_ERROR}
Item = tuple[int] | tuple[int, int] | tuple[int, int, int]


@dataclass(frozen=True)
class VectorsInfo:
    name: str
    fingerprint: str
    mode: str  # "default" | "floret"
    n_rows: int
    width: int
    n_keys: int
    attr: str
    device: str


@dataclass
class TokenVectors:
    """One doc's lookup. ``vectors``: one float32 row per token, Shape (n_tokens, width)."""

    index: int
    id: str
    vectors: np.ndarray
    oov: np.ndarray = field(default_factory=lambda: np.zeros(0, np.int64))  # tokens with no row (zeros)
    doc_vector: np.ndarray | None = None  # spaCy's Doc.vector. Shape: (width,)
    fingerprint: str = ""
    words: list[str] | None = None  # the server's tokens, for text docs
    error: DocError | None = None


@dataclass
class Neighbours:
    """The n nearest rows to one query, best first."""

    keys: np.ndarray  # Shape: (n,) uint64
    words: list[str]
    rows: np.ndarray  # Shape: (n,)
    scores: np.ndarray  # cosine, rounded to 4 decimals as spaCy does. Shape: (n,)
    oov: bool = False  # the query word had no row: it was a zero vector
    error: DocError | None = None


class VectorsClient(SyncConnection[vpb_grpc.VectorsServiceStub]):
    """A connection to a tokvec server's VectorsService. The channel opens on first use (never
    before a fork) and is dropped when the client is pickled."""

    def __init__(
        self,
        address: str | Sequence[str] = "127.0.0.1:50051",
        *,
        timeout: float | None = 60.0,
        credentials: Credentials | None = None,
    ) -> None:
        super().__init__(address, timeout=timeout, credentials=credentials)

    def _new_stub(self, channel: grpc.Channel) -> vpb_grpc.VectorsServiceStub:
        return vpb_grpc.VectorsServiceStub(channel)  # type: ignore[no-untyped-call]

    def _call(self, method: str, request: Any) -> Any:
        try:
            return getattr(self.stub, method)(request, timeout=self.timeout, metadata=self.metadata)
        except grpc.RpcError as exc:
            raise from_rpc_error(exc, self.target) from None

    def info(self) -> VectorsInfo:
        m = self._call("VectorsInfo", vpb.VectorsInfoRequest())
        return VectorsInfo(m.name, m.fingerprint, m.mode, m.n_rows, m.width, m.n_keys, m.attr, m.device)

    def lookup(self, docs: Iterable[_wire.DocLike], *, oov: str = "zero", dtype: str = "float32") -> list[TokenVectors]:
        """One result per doc, in order; a failed doc (oov="error" and an unknown word, a limit)
        comes back with ``error`` set."""
        if oov not in OOV or dtype not in _wire.DTYPES:
            raise ValueError(
                f"oov: {oov!r} must be one of {', '.join(OOV)}; dtype: {dtype!r} one of {', '.join(_wire.DTYPES)}"
            )
        request = vpb.LookupRequest(
            docs=[_wire.to_doc(d, i) for i, d in enumerate(docs)], oov=OOV[oov], dtype=_wire.DTYPES[dtype]
        )
        results: list[TokenVectors] = []
        parts: list[vpb.TokenVectors] = []
        try:
            for response in self.stub.Lookup(request, timeout=self.timeout, metadata=self.metadata):
                parts.append(response.result)
                if not response.result.more:
                    results.append(_token_vectors(parts))
                    parts = []
        except grpc.RpcError as exc:
            raise from_rpc_error(exc, self.target) from None
        return results

    def similarity(self, docs: Iterable[_wire.DocLike], pairs: Iterable[tuple[Item, Item]]) -> np.ndarray:
        """spaCy's ``a.similarity(b)`` for each pair. Shape: (n_pairs,) float32"""
        request = vpb.SimilarityRequest(
            docs=[_wire.to_doc(d, i) for i, d in enumerate(docs)],
            pairs=[vpb.Pair(a=_item(a), b=_item(b)) for a, b in pairs],
        )
        return np.asarray(self._call("Similarity", request).scores, dtype=np.float32)

    def most_similar(
        self, *, words: Sequence[str] = (), vectors: np.ndarray | None = None, n: int = 10, oov: str = "zero"
    ) -> list[Neighbours]:
        """The n nearest rows per query: the ``words`` first, then the rows of ``vectors``."""
        if oov not in OOV:
            raise ValueError(f"oov: {oov!r} must be one of {', '.join(OOV)}")
        request = vpb.MostSimilarRequest(words=list(words), n=n, oov=OOV[oov])
        if vectors is not None:
            array = np.ascontiguousarray(vectors, dtype="<f4")
            request.vectors.CopyFrom(pb.Tensor(dtype=pb.DTYPE_FLOAT32, shape=list(array.shape), data=array.tobytes()))
        out = []
        for i, m in enumerate(self._call("MostSimilar", request).results):
            error = DocError(m.error.message, status_code(m.error.code), i, "") if m.HasField("error") else None
            out.append(
                Neighbours(
                    np.asarray(m.keys, np.uint64),
                    list(m.words),
                    np.asarray(m.rows, np.int64),
                    np.asarray(m.scores, np.float32),
                    m.oov,
                    error,
                )
            )
        return out


def _item(item: Item) -> vpb.Item:
    if len(item) == 1:
        return vpb.Item(doc=item[0], kind=vpb.Item.KIND_DOC)
    if len(item) == 2:
        return vpb.Item(doc=item[0], kind=vpb.Item.KIND_TOKEN, start=item[1])
    if len(item) == 3:
        return vpb.Item(doc=item[0], kind=vpb.Item.KIND_SPAN, start=item[1], end=item[2])
    raise ValueError(f"item {item!r}: expected (doc,), (doc, token) or (doc, start, end)")


def _token_vectors(parts: list[vpb.TokenVectors]) -> TokenVectors:
    first = parts[0]
    if first.HasField("error"):
        error = DocError(first.error.message, status_code(first.error.code), first.index, first.id)
        return TokenVectors(first.index, first.id, np.zeros((0, 0), np.float32), error=error)
    arrays = [_wire.tensor(p.vectors) for p in parts]
    return TokenVectors(
        index=first.index,
        id=first.id,
        vectors=arrays[0] if len(arrays) == 1 else np.concatenate(arrays),
        oov=np.asarray(first.oov, np.int64),
        doc_vector=_wire.tensor(first.doc_vector) if first.HasField("doc_vector") else None,
        fingerprint=first.fingerprint,
        words=list(first.words) if first.words else None,
    )
