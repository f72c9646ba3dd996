"""Similarity of tokens, spans and docs, with the rules of spaCy's ``.similarity()``:

- an object's vector is its token's row, or the mean of its tokens' vectors (OOV zeros included);
- the same words score exactly 1.0 (token vs token with the same key; a span or doc vs a token
  when it is that one token; a span or doc vs a span or doc of the same keys, in order). As in
  spaCy, a token compared with a span or doc gets no such shortcut;
- a side with a zero vector scores 0.0 (spaCy warns W008; here the pair is flagged);
- otherwise the cosine.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from tokvec_server.errors import InvalidInput


@dataclass(frozen=True)
class ItemRef:
    doc: int
    kind: str  # "doc" | "token" | "span"
    start: int = 0
    end: int = 0


@dataclass
class DocVectors:
    keys: np.ndarray  # Shape: (n_tokens,) uint64
    vectors: np.ndarray  # Shape: (n_tokens, width) float32


def check_item(item: ItemRef, where: str, docs: list[DocVectors]) -> None:
    if item.doc >= len(docs):
        raise InvalidInput(f"{where}.doc: {item.doc} is not one of the request's {len(docs)} docs")
    n = len(docs[item.doc].keys)
    if item.kind == "token" and item.start >= n:
        raise InvalidInput(f"{where}.start: token {item.start} is past the end of doc {item.doc} ({n} tokens)")
    if item.kind == "span" and not item.start <= item.end <= n:
        raise InvalidInput(f"{where}: span [{item.start}, {item.end}) is not within doc {item.doc} ({n} tokens)")


def _slice(item: ItemRef, doc: DocVectors) -> slice:
    if item.kind == "token":
        return slice(item.start, item.start + 1)
    if item.kind == "span":
        return slice(item.start, item.end)
    return slice(0, len(doc.keys))


def _vector(rows: np.ndarray, width: int) -> np.ndarray:
    return rows.sum(0, dtype=np.float32) / len(rows) if len(rows) else np.zeros(width, np.float32)


def score(a: ItemRef, b: ItemRef, docs: list[DocVectors]) -> tuple[float, bool]:
    """The similarity of a to b, and whether a side had a zero vector."""
    da, db = docs[a.doc], docs[b.doc]
    sa, sb = _slice(a, da), _slice(b, db)
    keys_a, keys_b = da.keys[sa], db.keys[sb]
    same = len(keys_a) == len(keys_b) and bool((keys_a == keys_b).all())
    if same and (a.kind != "token" or b.kind == "token"):
        return 1.0, False
    width = da.vectors.shape[1]
    va, vb = _vector(da.vectors[sa], width), _vector(db.vectors[sb], width)
    na, nb = float(np.sqrt((va * va).sum())), float(np.sqrt((vb * vb).sum()))
    if na == 0 or nb == 0:
        return 0.0, True
    return float(np.dot(va, vb) / (na * nb)), False
