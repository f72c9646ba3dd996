"""Span getters: which stretches of a doc the model sees, as token ranges [start, end)."""

from __future__ import annotations

import numpy as np


def strided(n: int, window: int, stride: int) -> list[tuple[int, int]]:
    """spacy-transformers' strided_spans.v1, exactly (docs/alignment.md): windows of ``window`` every
    ``stride`` until one reaches the end; at most n // stride of them, then one last remainder."""
    spans: list[tuple[int, int]] = []
    start = 0
    for _ in range(n // stride):
        spans.append((start, min(start + window, n)))
        if start + window >= n:
            return spans
        start += stride
    if start < n:
        spans.append((start, n))
    return spans


def whole(n: int) -> list[tuple[int, int]]:
    """The doc as one span; an empty doc has none."""
    return [(0, n)] if n else []


def sentences(sent_starts: list[bool]) -> list[tuple[int, int]]:
    """One span per sentence; token 0 always starts one."""
    n = len(sent_starts)
    if n == 0:
        return []
    starts = np.flatnonzero(np.asarray(sent_starts, dtype=bool))
    starts = np.union1d(starts, [0])
    ends = np.append(starts[1:], n)
    return [(int(s), int(e)) for s, e in zip(starts, ends)]
