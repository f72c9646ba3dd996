"""Tokenize each span with the model's fast tokenizer and align its pieces to the caller's tokens.

The rules are spacy-transformers' (docs/alignment.md): span text is spaCy's Span.text, pieces align by
character offsets, a piece over several tokens goes to each of them, a span past the model's limit
keeps its first max_length pieces. Everything is computed as flat arrays, no per-token loops.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np

from tokvec_server.alignment import offsets, spans
from tokvec_server.types import SpanSpec, Tokens


@dataclass
class DocPlan:
    """What the model must run for one doc, and how its pieces map back to the doc's tokens."""

    n_tokens: int
    span_ids: list[np.ndarray]  # model input per span, special pieces included. Shape: (n_pieces_s,)
    span_tokens: np.ndarray  # token range [start, end) of each span. Shape: (n_spans, 2)
    piece_offsets: np.ndarray  # doc-text character range of every piece, (0, 0) for specials. Shape: (n_pieces, 2)
    align_lengths: np.ndarray  # pieces per token. Shape: (n_tokens,)
    align_indices: np.ndarray  # pieces of token 0, then token 1...; index into all spans' pieces. Shape: (n_pairs,)
    truncated: np.ndarray  # tokens that lost pieces to a cut at max_length. Shape: (k,)
    # Per span, the runner's own model input where piece ids do not say it all (a spaCy Doc for
    # a tok2vec, runners/tok2vec.py); empty for a transformer.
    inputs: list[Any] = field(default_factory=list)

    @property
    def n_pieces(self) -> int:
        return int(sum(len(ids) for ids in self.span_ids))

    @property
    def no_piece(self) -> np.ndarray:
        return np.flatnonzero(self.align_lengths == 0)


@dataclass(frozen=True)
class Specials:
    """The pieces a tokenizer wraps a text in ([CLS] ... [SEP] for BERT, <s> ... </s> for RoBERTa)."""

    prefix: tuple[int, ...]
    suffix: tuple[int, ...]

    @classmethod
    def of(cls, tokenizer: Any) -> Specials:
        enc = tokenizer("a", add_special_tokens=True, return_offsets_mapping=True)
        real = [i for i, (a, b) in enumerate(enc["offset_mapping"]) if b > a]
        ids = enc["input_ids"]
        return cls(tuple(ids[: real[0]]), tuple(ids[real[-1] + 1 :]))


def _encode(
    tokenizer: Any, texts: list[str], add_special_tokens: bool
) -> tuple[list[list[int]], list[list[tuple[int, int]]]]:
    if not texts:
        return [], []
    enc = tokenizer(
        texts,
        add_special_tokens=add_special_tokens,
        return_offsets_mapping=True,
        return_attention_mask=False,
        return_token_type_ids=False,
        truncation=False,
        verbose=False,
    )
    return enc["input_ids"], enc["offset_mapping"]


def _finish(
    n_tokens: int,
    span_ids: list[np.ndarray],
    span_tokens: list[tuple[int, int]],
    piece_offsets: np.ndarray,
    owners: np.ndarray,
    dropped: np.ndarray,
) -> DocPlan:
    pieces, tokens = offsets.piece_tokens(owners, piece_offsets[:, 0], piece_offsets[:, 1])
    # Stable sort by token keeps each token's pieces in span order, then piece order.
    order = np.argsort(tokens, kind="stable")
    _, lost = offsets.piece_tokens(owners, dropped[:, 0], dropped[:, 1])
    return DocPlan(
        n_tokens=n_tokens,
        span_ids=span_ids,
        span_tokens=np.asarray(span_tokens, dtype=np.int64).reshape(-1, 2),
        piece_offsets=piece_offsets,
        align_lengths=np.bincount(tokens, minlength=n_tokens).astype(np.int64),
        align_indices=pieces[order].astype(np.int64),
        truncated=np.unique(lost),
    )


def _token_ranges(doc: Tokens, spec: SpanSpec) -> list[tuple[int, int]]:
    n = len(doc.words)
    if spec.kind == "doc":
        return spans.whole(n)
    if spec.kind == "sents":
        assert doc.sent_starts is not None, "validation fills sent_starts for sents spans"
        return spans.sentences(doc.sent_starts)
    return spans.strided(n, spec.window, spec.stride)


def _plan_token_spans(docs: list[Tokens], spec: SpanSpec, tokenizer: Any, max_length: int) -> list[DocPlan]:
    """doc, sents and tokens:W:S: every span's text is tokenized alone, as spacy-transformers does."""
    geometry = []
    texts: list[str] = []
    for doc in docs:
        text = offsets.doc_text(doc.words, doc.spaces)
        starts, ends = offsets.token_starts_ends(doc.words, doc.spaces)
        ranges = _token_ranges(doc, spec)
        geometry.append((text, starts, ends, ranges))
        texts.extend(text[starts[a] : ends[b - 1]] for a, b in ranges)
    all_ids, all_offsets = _encode(tokenizer, texts, add_special_tokens=True)
    plans, k = [], 0
    for doc, (text, starts, ends, ranges) in zip(docs, geometry):
        owners = offsets.char_owners(starts, ends, len(text))
        span_ids, kept, dropped = [], [], []
        for a, _ in ranges:
            ids = np.asarray(all_ids[k], dtype=np.int64)
            offs = np.asarray(all_offsets[k], dtype=np.int64).reshape(-1, 2) + starts[a]
            k += 1
            # A span past the limit keeps its first max_length pieces; its final [SEP] goes with the
            # rest and none is re-added (spacy-transformers' behaviour, which parity needs).
            span_ids.append(ids[:max_length])
            kept.append(offs[:max_length])
            dropped.append(offs[max_length:])
        piece_offsets = np.concatenate(kept) if kept else np.zeros((0, 2), np.int64)
        piece_offsets[piece_offsets[:, 1] <= piece_offsets[:, 0]] = 0  # specials: (0, 0)
        lost = np.concatenate(dropped) if dropped else np.zeros((0, 2), np.int64)
        plans.append(_finish(len(doc.words), span_ids, ranges, piece_offsets, owners, lost))
    return plans


def _plan_piece_spans(docs: list[Tokens], spec: SpanSpec, tokenizer: Any, specials: Specials) -> list[DocPlan]:
    """pieces:W:S: the doc is tokenized once and cut into windows of W pieces, each wrapped in the
    model's special pieces. Nothing is ever cut at the model's limit (validation checks W)."""
    texts = [offsets.doc_text(d.words, d.spaces) for d in docs]
    all_ids, all_offsets = _encode(tokenizer, texts, add_special_tokens=False)
    prefix = np.asarray(specials.prefix, dtype=np.int64)
    suffix = np.asarray(specials.suffix, dtype=np.int64)
    zeros_pre, zeros_suf = np.zeros((len(prefix), 2), np.int64), np.zeros((len(suffix), 2), np.int64)
    plans = []
    for doc, text, ids_list, offs_list in zip(docs, texts, all_ids, all_offsets):
        starts, ends = offsets.token_starts_ends(doc.words, doc.spaces)
        owners = offsets.char_owners(starts, ends, len(text))
        ids = np.asarray(ids_list, dtype=np.int64)
        offs = np.asarray(offs_list, dtype=np.int64).reshape(-1, 2)
        span_ids, kept, ranges = [], [], []
        for a, b in _windows(len(ids), spec.window, spec.stride):
            span_ids.append(np.concatenate((prefix, ids[a:b], suffix)))
            kept.append(np.concatenate((zeros_pre, offs[a:b], zeros_suf)))
            # Every token owning a character of the window: from the first piece's first
            # character to the last piece's last one (a piece may run over two tokens).
            ranges.append((int(owners[offs[a, 0]]), int(owners[offs[b - 1, 1] - 1]) + 1))
        piece_offsets = np.concatenate(kept) if kept else np.zeros((0, 2), np.int64)
        plans.append(_finish(len(doc.words), span_ids, ranges, piece_offsets, owners, np.zeros((0, 2), np.int64)))
    return plans


def _windows(n: int, window: int, stride: int) -> list[tuple[int, int]]:
    """Windows of ``window`` every ``stride`` covering [0, n) completely (stride <= window)."""
    out, start = [], 0
    while start < n:
        out.append((start, min(start + window, n)))
        if start + window >= n:
            break
        start += stride
    return out


def plan_docs(docs: list[Tokens], spec: SpanSpec, tokenizer: Any, max_length: int, specials: Specials) -> list[DocPlan]:
    """Plan every doc of a request in one tokenizer call (the fast tokenizer batches in Rust)."""
    if spec.kind == "pieces":
        return _plan_piece_spans(docs, spec, tokenizer, specials)
    return _plan_token_spans(docs, spec, tokenizer, max_length)
