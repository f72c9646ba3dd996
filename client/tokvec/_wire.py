"""Requests out, results in: the client's only contact with protobuf messages."""

from __future__ import annotations

import functools
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from tokvec.errors import DocError, status_code
from tokvec.v1 import tokvec_pb2 as pb

# A doc: raw text, a list of words, a mapping with words/spaces (or text) and optionally
# id/sent_starts/chunks/chunk_unit, or anything iterable over spaCy tokens. Words sent without spaces have a space
# after every word, as in spaCy's Doc(vocab, words), which is also what omitted spaces mean on the
# wire (tokvec.proto). The client sends them explicitly all the same, so its rows do not depend on
# which server version reads the request.
DocLike = str | Sequence[str] | Mapping[str, Any] | Any

POOLINGS = {
    "mean": pb.POOLING_MEAN,
    "max": pb.POOLING_MAX,
    "first": pb.POOLING_FIRST,
    "last": pb.POOLING_LAST,
    "sum": pb.POOLING_SUM,
}
DTYPES = {"float32": pb.DTYPE_FLOAT32, "float16": pb.DTYPE_FLOAT16, "bfloat16": pb.DTYPE_BFLOAT16}
OUTPUTS = {
    "tokens": pb.OUTPUT_TOKENS,
    "pieces": pb.OUTPUT_PIECES,
    "doc_vector": pb.OUTPUT_DOC_VECTOR,
    "chunk_vectors": pb.OUTPUT_CHUNK_VECTORS,
}
CHUNK_UNITS = {"tokens": pb.CHUNK_UNIT_TOKENS, "chars": pb.CHUNK_UNIT_CHARS}
# A doc's chunks: (start, end) ranges, end exclusive, of its tokens (or characters).
Chunks = Sequence[Sequence[int]]
SPAN_KINDS = {
    "doc": pb.Spans.KIND_DOC,
    "sents": pb.Spans.KIND_SENTS,
    "tokens": pb.Spans.KIND_TOKENS,
    "pieces": pb.Spans.KIND_PIECES,
}


@dataclass
class Pieces:
    """Piece-level output (what spacy-transformers keeps in doc._.trf_data), unpadded."""

    hidden: np.ndarray  # Shape: (n_pieces, width), spans back to back
    ids: np.ndarray  # Shape: (n_pieces,)
    span_lengths: np.ndarray  # Shape: (n_spans,)
    span_tokens: np.ndarray  # token range [start, end) of each span. Shape: (n_spans, 2)
    align_lengths: np.ndarray  # Shape: (n_tokens,)
    align_indices: np.ndarray  # Shape: (n_pairs,), into hidden's rows


@dataclass
class Embedding:
    """One doc's result. ``rows`` has exactly one float32 row per token: Shape (n_tokens, width)."""

    index: int
    id: str
    rows: np.ndarray
    fingerprint: str = ""
    no_piece: np.ndarray = field(default_factory=lambda: np.zeros(0, np.int64))
    truncated: np.ndarray = field(default_factory=lambda: np.zeros(0, np.int64))
    words: list[str] | None = None  # the server's tokens, for text docs
    spaces: list[bool] | None = None
    layers: list[np.ndarray] = field(default_factory=list)
    pooled: list[np.ndarray] = field(default_factory=list)  # the rows under each of more_poolings, in order
    doc_vector: np.ndarray | None = None
    pieces: Pieces | None = None
    # One array per chunk pooling, each (n_chunks, width), chunks in the order given.
    chunk_vectors: list[np.ndarray] = field(default_factory=list)
    chunk_no_piece: np.ndarray = field(default_factory=lambda: np.zeros(0, np.int64))
    error: DocError | None = None


def to_doc(doc: DocLike, index: int, chunks: Chunks | None = None, chunk_unit: str | None = None) -> pb.Doc:
    """The wire doc; ``chunks`` (else a mapping's own "chunks") are ranges in ``chunk_unit``
    (else the mapping's "chunk_unit", else tokens)."""
    msg = _doc(doc, index)
    if chunks is None and isinstance(doc, Mapping):
        chunks = doc.get("chunks")
        chunk_unit = chunk_unit or doc.get("chunk_unit")
    if chunks is not None:
        unit = chunk_unit or "tokens"
        if unit not in CHUNK_UNITS:
            raise ValueError(f"doc {index}: chunk_unit {unit!r} is not one of {', '.join(CHUNK_UNITS)}")
        ranges = _ranges(chunks, index)
        msg.chunk_starts.extend(ranges[:, 0].tolist())
        msg.chunk_ends.extend(ranges[:, 1].tolist())
        msg.chunk_unit = CHUNK_UNITS[unit]
    return msg


def _ranges(chunks: Chunks, index: int) -> np.ndarray:
    """Shape: (n_chunks, 2). Checked in one numpy pass: a spancat asks for ~3 chunks per token."""
    try:
        ranges = np.asarray(chunks)
    except ValueError:  # ragged
        ranges = np.zeros((0, 3))
    if ranges.size == 0 and len(chunks) == 0:
        return np.zeros((0, 2), np.int64)
    if ranges.ndim == 2 and ranges.shape[1] == 2 and np.issubdtype(ranges.dtype, np.integer) and (ranges >= 0).all():
        return ranges
    for k, chunk in enumerate(chunks):  # only to name the first bad one
        if len(chunk) != 2 or any(isinstance(v, bool) or not isinstance(v, (int, np.integer)) or v < 0 for v in chunk):
            raise ValueError(f"doc {index}: chunks[{k}] is not a (start, end) pair of non-negative ints")
    raise ValueError(f"doc {index}: chunks is not a list of (start, end) pairs of non-negative ints")


def docs_with_chunks(
    docs: Iterable[DocLike], chunks: Iterable[Chunks | None] | None, chunk_unit: str | None
) -> list[pb.Doc]:
    """The wire docs, chunks paired with docs in order (one entry per doc)."""
    docs = list(docs)
    if chunks is None:
        return [to_doc(d, i, chunk_unit=chunk_unit) for i, d in enumerate(docs)]
    chunks = list(chunks)
    if len(chunks) != len(docs):
        raise ValueError(f"chunks: {len(chunks)} entries for {len(docs)} docs (one list of ranges per doc)")
    return [to_doc(d, i, c, chunk_unit) for i, (d, c) in enumerate(zip(docs, chunks))]


def _doc(doc: DocLike, index: int) -> pb.Doc:
    if isinstance(doc, str):
        return pb.Doc(id=str(index), text=doc)
    if isinstance(doc, Mapping):
        words = doc.get("words") or ()
        return pb.Doc(
            id=str(doc.get("id", index)),
            words=words,
            spaces=doc.get("spaces") or [True] * len(words),
            text="" if words else doc.get("text", ""),  # words win: rows follow the caller's tokens
            sent_starts=doc.get("sent_starts", ()) or (),
            lang=doc.get("lang", ""),
        )
    if isinstance(doc, Sequence):
        if not all(isinstance(w, str) for w in doc):
            raise TypeError(f"doc {index}: a word list must hold only strings")
        return pb.Doc(id=str(index), words=doc, spaces=[True] * len(doc))
    if hasattr(doc, "__iter__"):  # a spaCy Doc, duck-typed so the client needs no spaCy
        tokens = list(doc)
        return pb.Doc(id=str(index), words=[t.text for t in tokens], spaces=[bool(t.whitespace_) for t in tokens])
    raise TypeError(f"doc {index}: expected text, words, a mapping or a spaCy Doc, got {type(doc).__name__}")


def spans(spec: str) -> pb.Spans:
    kind, *numbers = spec.split(":")
    if kind in ("doc", "sents") and not numbers:
        return pb.Spans(kind=SPAN_KINDS[kind])
    if kind in ("tokens", "pieces") and len(numbers) == 2 and all(n.isdigit() for n in numbers):
        return pb.Spans(kind=SPAN_KINDS[kind], window=int(numbers[0]), stride=int(numbers[1]))
    raise ValueError(f"spans: {spec!r} is not doc, sents, tokens:W:S or pieces:W:S")


def options(
    pooling: str = "mean",
    spans_spec: str = "tokens:128:96",
    dtype: str = "float32",
    outputs: Iterable[str] = ("tokens",),
    hidden_layers: Iterable[int] = (),
    model: str = "",
    more_poolings: Iterable[str] = (),
    chunk_poolings: Iterable[str] = (),
) -> pb.EmbedOptions:
    """The options message, checked. Shared between calls with the same arguments (building and
    checking it was 10 us of a one-doc call's 24 us in bench/client_cost.py): copy it before changing
    it. A request built with it copies it anyway."""
    return _options(
        pooling,
        spans_spec,
        dtype,
        tuple(outputs),
        tuple(hidden_layers),
        model,
        tuple(more_poolings),
        tuple(chunk_poolings),
    )


@functools.lru_cache(maxsize=64)
def _options(
    pooling: str,
    spans_spec: str,
    dtype: str,
    outputs: tuple[str, ...],
    hidden_layers: tuple[int, ...],
    model: str,
    more_poolings: tuple[str, ...],
    chunk_poolings: tuple[str, ...],
) -> pb.EmbedOptions:
    checks: list[tuple[str, str, Mapping[str, object]]] = [
        ("pooling", pooling, POOLINGS),
        ("dtype", dtype, DTYPES),
        *((f"more_poolings[{i}]", p, POOLINGS) for i, p in enumerate(more_poolings)),
        *((f"chunk_poolings[{i}]", p, POOLINGS) for i, p in enumerate(chunk_poolings)),
    ]
    for name, value, table in checks:
        if value not in table:
            raise ValueError(f"{name}: {value!r} is not one of {', '.join(table)}")
    bad = [o for o in outputs if o not in OUTPUTS]
    if bad:
        raise ValueError(f"outputs: {bad[0]!r} is not one of {', '.join(OUTPUTS)}")
    return pb.EmbedOptions(
        model=model,
        pooling=POOLINGS[pooling],
        spans=spans(spans_spec),
        dtype=DTYPES[dtype],
        outputs=[OUTPUTS[o] for o in outputs],
        hidden_layers=list(hidden_layers),
        more_poolings=[POOLINGS[p] for p in more_poolings],
        chunk_poolings=[POOLINGS[p] for p in chunk_poolings],
    )


def tensor(msg: pb.Tensor) -> np.ndarray:
    """Decode to float32 (bfloat16 is the top half of a float32's bits)."""
    return _decode(msg, np.empty(tuple(msg.shape), np.float32))


def _decode(msg: pb.Tensor, out: np.ndarray) -> np.ndarray:
    """Decode ``msg`` into ``out`` (float32, its shape): one copy from the message's bytes."""
    if msg.dtype == pb.DTYPE_BFLOAT16:
        bits = out.reshape(-1).view(np.uint32)
        np.left_shift(np.frombuffer(msg.data, dtype="<u2"), 16, out=bits, dtype=np.uint32)
        return out
    kind = "<f2" if msg.dtype == pb.DTYPE_FLOAT16 else "<f4"
    out.reshape(-1)[:] = np.frombuffer(msg.data, dtype=kind)
    return out


class Assembler:
    """Joins the chunks of each doc (row ranges, in order) into one Embedding."""

    def __init__(self) -> None:
        self._parts: list[pb.DocResult] = []

    def add(self, msg: pb.DocResult) -> Embedding | None:
        self._parts.append(msg)
        if msg.more:
            return None
        parts, self._parts = self._parts, []
        return _embedding(parts)


def _embedding(parts: list[pb.DocResult]) -> Embedding:
    first = parts[0]
    if first.HasField("error"):
        error = DocError(first.error.message, status_code(first.error.code), first.index, first.id)
        return Embedding(first.index, first.id, np.zeros((0, 0), np.float32), error=error)
    rows = _join([p.tokens for p in parts if p.HasField("tokens")])
    n_layers = len(first.layers)
    layers = [_join([p.layers[k] for p in parts]) for k in range(n_layers)]
    out = Embedding(
        index=first.index,
        id=first.id,
        rows=rows,
        fingerprint=first.fingerprint,
        no_piece=np.asarray(first.no_piece, dtype=np.int64),
        truncated=np.asarray(first.truncated, dtype=np.int64),
        words=list(first.words) if first.words or (first.n_tokens == 0 and first.spaces) else None,
        spaces=list(first.spaces) if first.words else None,
        layers=layers,
        pooled=[_join([p.pooled[k] for p in parts]) for k in range(len(first.pooled))],
        doc_vector=tensor(first.doc_vector) if first.HasField("doc_vector") else None,
        chunk_vectors=[_join([p.chunk_vectors[k] for p in parts]) for k in range(len(first.chunk_vectors))],
        chunk_no_piece=np.asarray(first.chunk_no_piece, dtype=np.int64),
    )
    if first.HasField("pieces"):
        p = first.pieces
        out.pieces = Pieces(
            hidden=_join([q.pieces.hidden for q in parts]),
            ids=np.asarray(p.ids, dtype=np.int64),
            span_lengths=np.asarray(p.span_lengths, dtype=np.int64),
            span_tokens=np.stack(
                [np.asarray(p.span_token_starts, np.int64), np.asarray(p.span_token_ends, np.int64)], axis=1
            ),
            align_lengths=np.asarray(p.align_lengths, dtype=np.int64),
            align_indices=np.asarray(p.align_indices, dtype=np.int64),
        )
    return out


def _join(tensors: list[pb.Tensor]) -> np.ndarray:
    """A doc's chunks (row ranges, in order) as one array, each decoded straight into its rows:
    one copy per byte, where decoding then concatenating made two."""
    if not tensors:
        return np.zeros((0, 0), np.float32)
    if len(tensors) == 1:
        return tensor(tensors[0])
    shapes = [tuple(t.shape) for t in tensors]
    out = np.empty((sum(s[0] for s in shapes), *shapes[0][1:]), np.float32)
    start = 0
    for t, shape in zip(tensors, shapes):
        _decode(t, out[start : start + shape[0]])
        start += shape[0]
    return out


def batches(docs: Iterable[pb.Doc], size: int) -> Iterator[list[pb.Doc]]:
    batch: list[pb.Doc] = []
    for doc in docs:
        batch.append(doc)
        if len(batch) == size:
            yield batch
            batch = []
    if batch:
        yield batch
