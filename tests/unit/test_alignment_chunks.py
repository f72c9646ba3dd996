"""Chunks as token ranges, and their pieces: a chunk's bag is its tokens' pieces, token by token."""

from __future__ import annotations

import numpy as np
import pytest

from tokvec_server.alignment.chunks import bags, token_ranges
from tokvec_server.errors import InvalidInput

WORDS = ["Hello", ",", "big", "world", "!"]
SPACES = [False, True, True, False, False]  # "Hello, big world!"


def test_char_ranges_become_the_tokens_inside_them():
    got = token_ranges([0, 0, 7, 6, 11], [5, 17, 16, 11, 17], "chars", WORDS, SPACES, "docs[0]", 100)
    assert got.tolist() == [[0, 1], [0, 5], [2, 4], [2, 3], [3, 5]]


@pytest.mark.parametrize(
    "starts,ends,unit,message",
    [
        ([1], [4], "chars", "docs[3].chunks[0]: start 1 cuts token 0 (characters [0, 5))"),
        ([0], [9], "chars", "docs[3].chunks[0]: end 9 cuts token 2 (characters [7, 10))"),
        ([0], [18], "chars", "docs[3].chunks[0]: end 18 > 17 characters in the doc"),
        ([6], [7], "chars", "docs[3].chunks[0]: characters [6, 7) hold no token"),
        ([0, 3], [2, 6], "tokens", "docs[3].chunks[1]: end 6 > 5 tokens in the doc"),
        ([0, 3], [2, 3], "tokens", "docs[3].chunks[1]: empty ([3, 3))"),
        ([2], [1], "tokens", "docs[3].chunks[0]: end 1 < start 2"),
        ([0, 1, 2], [1, 2, 3], "tokens", "docs[3].chunk_starts: 3 > max_chunks_per_doc (2)"),
        ([0], [1, 2], "tokens", "docs[3].chunk_ends: 2 values for 1 chunk_starts"),
        ([0], [1], "3", "docs[3].chunk_unit: 3 is not a ChunkUnit value"),
    ],
)
def test_bad_chunks_name_the_doc_the_chunk_and_the_bound(starts, ends, unit, message):
    with pytest.raises(InvalidInput) as caught:
        token_ranges(starts, ends, unit, WORDS, SPACES, "docs[3]", 2)
    assert str(caught.value) == message


def test_bags_take_the_tokens_pieces_in_order_a_piece_seen_twice_counts_twice():
    # Two windows: token 1's pieces are 1 (first window) and 4 (second window); token 2 has none.
    lengths = np.array([1, 2, 0, 2])
    indices = np.array([0, 1, 4, 5, 6])
    got_lengths, got_indices = bags(lengths, indices, np.array([[0, 2], [1, 3], [2, 3], [0, 4]]))
    assert got_lengths.tolist() == [3, 2, 0, 5]
    assert got_indices.tolist() == [0, 1, 4, 1, 4, 0, 1, 4, 5, 6]
    empty_lengths, empty_indices = bags(lengths, indices, np.zeros((0, 2), np.int64))
    assert empty_lengths.size == 0 and empty_indices.size == 0
