"""The caller's chunks: ranges of a doc to pool one vector each over.

A chunk arrives as a token range or a character range; it is checked and made a token range
here, once per doc, before any work is queued. After the forward, a chunk's pieces are the
pieces aligned to its tokens, token by token, exactly as the token pooling takes them: a piece
that two windows see is in two tokens' alignments (once per window), and so counts twice in a
chunk, as it does in a token's row.
"""

from __future__ import annotations

import numpy as np

from tokvec_server.errors import InvalidInput, limit_error

UNITS = ("tokens", "chars")


def token_ranges(
    starts: list[int], ends: list[int], unit: str, words: list[str], spaces: list[bool], where: str, max_chunks: int
) -> np.ndarray:
    """The chunks as token ranges [start, end), checked. Shape: (n_chunks, 2).

    Raises InvalidInput naming the doc (``where``), the chunk index and the bound it breaks."""
    if len(starts) != len(ends):
        raise InvalidInput(f"{where}.chunk_ends: {len(ends)} values for {len(starts)} chunk_starts")
    if len(starts) > max_chunks:
        raise limit_error(f"{where}.chunk_starts", len(starts), "max_chunks_per_doc", max_chunks)
    if unit not in UNITS:
        raise InvalidInput(f"{where}.chunk_unit: {unit} is not a ChunkUnit value")
    a = np.asarray(starts, dtype=np.int64).reshape(-1)
    b = np.asarray(ends, dtype=np.int64).reshape(-1)
    if (bad := np.flatnonzero(b < a)).size:
        k = int(bad[0])
        raise InvalidInput(f"{where}.chunks[{k}]: end {b[k]} < start {a[k]}")
    if (bad := np.flatnonzero(b == a)).size:
        k = int(bad[0])
        raise InvalidInput(f"{where}.chunks[{k}]: empty ([{a[k]}, {b[k]}))")
    if unit == "tokens":
        n = len(words)
        if (bad := np.flatnonzero(b > n)).size:
            k = int(bad[0])
            raise InvalidInput(f"{where}.chunks[{k}]: end {b[k]} > {n} tokens in the doc")
        return np.stack([a, b], axis=1)
    return _from_chars(a, b, words, spaces, where)


def _from_chars(a: np.ndarray, b: np.ndarray, words: list[str], spaces: list[bool], where: str) -> np.ndarray:
    lengths = np.fromiter((len(w) for w in words), dtype=np.int64, count=len(words))
    # Token i covers characters [begin[i], finish[i]) of the doc's text (words joined by spaces).
    begin = np.zeros(len(words), dtype=np.int64)
    np.cumsum((lengths + np.asarray(spaces, dtype=np.int64))[:-1], out=begin[1:])
    finish = begin + lengths
    n_chars = int(finish[-1] + spaces[-1]) if len(words) else 0
    if (bad := np.flatnonzero(b > n_chars)).size:
        k = int(bad[0])
        raise InvalidInput(f"{where}.chunks[{k}]: end {b[k]} > {n_chars} characters in the doc")
    first = np.searchsorted(begin, a, side="left")  # the first token starting at or after a
    last = np.searchsorted(finish, b, side="right")  # one past the last token ending by b
    # A token that starts before a bound and ends after it is cut by it.
    for bound, name, cut in ((a, "start", first - 1), (b, "end", last)):
        valid = (cut >= 0) & (cut < len(words))
        idx = np.where(valid, cut, 0)
        cuts = valid & (begin[idx] < bound) & (finish[idx] > bound)
        if (bad := np.flatnonzero(cuts)).size:
            k, t = int(bad[0]), int(idx[bad[0]])
            raise InvalidInput(
                f"{where}.chunks[{k}]: {name} {bound[k]} cuts token {t} (characters [{begin[t]}, {finish[t]}))"
            )
    if (bad := np.flatnonzero(last <= first)).size:
        k = int(bad[0])
        raise InvalidInput(f"{where}.chunks[{k}]: characters [{a[k]}, {b[k]}) hold no token")
    return np.stack([first, last], axis=1)


def bags(align_lengths: np.ndarray, align_indices: np.ndarray, ranges: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Each chunk's pieces as a ragged alignment, like the tokens': (pieces per chunk, piece
    indices chunk after chunk), the pieces of a chunk being its tokens' pieces in order.

    Shape: ranges (n_chunks, 2) -> (n_chunks,), (sum of lengths,)."""
    offsets = np.zeros(len(align_lengths) + 1, dtype=np.int64)
    np.cumsum(align_lengths, out=offsets[1:])
    first, last = offsets[ranges[:, 0]], offsets[ranges[:, 1]]
    lengths = last - first
    # A chunk's pieces are one slice of align_indices (its tokens are contiguous): gather every
    # slice at once, chunk k's positions running from first[k] to last[k].
    out_start = np.zeros(len(lengths), dtype=np.int64)
    np.cumsum(lengths[:-1], out=out_start[1:])
    positions = np.arange(int(lengths.sum()), dtype=np.int64) + np.repeat(first - out_start, lengths)
    return lengths, align_indices[positions]
