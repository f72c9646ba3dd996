"""Character geometry of a doc: token offsets and which token owns each character."""

from __future__ import annotations

import numpy as np


def doc_text(words: list[str], spaces: list[bool]) -> str:
    return "".join(w + " " if s else w for w, s in zip(words, spaces))


def token_starts_ends(words: list[str], spaces: list[bool]) -> tuple[np.ndarray, np.ndarray]:
    """Start and end (code-point indices, not bytes) of each token in doc_text. Shape: (n_tokens,)."""
    lengths = np.fromiter((len(w) for w in words), dtype=np.int64, count=len(words))
    steps = lengths + np.asarray(spaces, dtype=np.int64)
    starts = np.concatenate(([0], np.cumsum(steps)[:-1])) if len(words) else lengths
    return starts, starts + lengths


def char_owners(starts: np.ndarray, ends: np.ndarray, n_chars: int) -> np.ndarray:
    """Owner token of every character, -1 for none. Shape: (n_chars,).

    spacy-transformers' rule: each token in order claims its characters and one more (its trailing
    space); a later token overwrites. Starts are sorted, so the owner of character c is the last
    token starting at or before c, if c is within that token's claim.
    """
    chars = np.arange(n_chars)
    last = np.searchsorted(starts, chars, side="right") - 1
    claimed = (last >= 0) & (chars < ends[np.maximum(last, 0)] + 1)
    return np.where(claimed, last, -1)


def piece_tokens(owners: np.ndarray, piece_starts: np.ndarray, piece_ends: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Every (piece, token) pair where the token owns a character of the piece, in piece order.

    Pieces are given as global character ranges [start, end); an empty range (a special piece,
    offsets (0, 0)) aligns to nothing. Returns (pieces, tokens), both Shape: (n_pairs,).
    """
    widths = np.maximum(piece_ends - piece_starts, 0)
    total = int(widths.sum())
    piece_of_char = np.repeat(np.arange(len(widths)), widths)
    first_of_piece = np.cumsum(widths) - widths
    chars = np.repeat(piece_starts, widths) + np.arange(total) - np.repeat(first_of_piece, widths)
    tokens = owners[chars]
    # Within a piece owners are sorted, so duplicate pairs are adjacent.
    keep = tokens >= 0
    if total:
        keep[1:] &= (tokens[1:] != tokens[:-1]) | (piece_of_char[1:] != piece_of_char[:-1])
    return piece_of_char[keep], tokens[keep]
