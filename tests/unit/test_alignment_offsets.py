"""Character geometry: doc text, token offsets in code points, character owners, piece -> tokens."""

from __future__ import annotations

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

from tokvec_server.alignment import offsets

# Words as callers send them: plain, empty, whitespace, emoji (one code point, two UTF-16 units),
# combining accents, CJK.
WORDS = st.lists(
    st.one_of(
        st.text(alphabet="abcXYZ.,'-", min_size=1, max_size=6),
        st.sampled_from(["", " ", "\n\n", "\t", "\u00a0", "😀", "👍🏽", "e\u0301", "東京", "[SEP]"]),
    ),
    max_size=30,
)


def owners_brute_force(words: list[str], spaces: list[bool]) -> list[int]:
    """docs/alignment.md: each token in order claims its characters and one more; later tokens overwrite."""
    text = "".join(w + " " * s for w, s in zip(words, spaces))
    owner, pos = [-1] * len(text), 0
    for i, (word, space) in enumerate(zip(words, spaces)):
        for c in range(pos, min(pos + len(word) + 1, len(text))):
            owner[c] = i
        pos += len(word) + space
    return owner


def owners_of(words: list[str], spaces: list[bool]) -> np.ndarray:
    starts, ends = offsets.token_starts_ends(words, spaces)
    return offsets.char_owners(starts, ends, len(offsets.doc_text(words, spaces)))


def test_doc_text() -> None:
    assert offsets.doc_text(["Hello", ",", "world", "!"], [False, True, False, True]) == "Hello, world! "
    assert offsets.doc_text([], []) == ""


def test_token_offsets_count_code_points_not_bytes() -> None:
    words, spaces = ["I", "😀", "you", "e\u0301", "x"], [True, True, False, True, False]
    starts, ends = offsets.token_starts_ends(words, spaces)
    assert starts.tolist() == [0, 2, 4, 7, 10]  # "I 😀 youe\u0301 x": the emoji is one character
    assert ends.tolist() == [1, 3, 7, 9, 11]
    text = offsets.doc_text(words, spaces)
    assert [text[a:b] for a, b in zip(starts, ends)] == words


def test_token_offsets_of_empty_doc() -> None:
    starts, ends = offsets.token_starts_ends([], [])
    assert starts.shape == ends.shape == (0,)


def test_trailing_space_belongs_to_the_token_before() -> None:
    assert owners_of(["Hello", "world"], [True, True]).tolist() == [0] * 6 + [1] * 6


def test_no_space_join_later_token_overwrites() -> None:
    # token 0 claims "can" + one more character, the "n" that token 1 then takes back
    assert owners_of(["can", "not"], [False, False]).tolist() == [0, 0, 0, 1, 1, 1]


def test_empty_word_owns_nothing_when_followed_by_a_word() -> None:
    assert owners_of(["a", "", "b"], [False, False, False]).tolist() == [0, 2]
    assert owners_of(["a", "", "b"], [True, False, False]).tolist() == [0, 0, 2]
    assert owners_of(["a", ""], [True, False]).tolist() == [0, 0]


def test_whitespace_tokens_own_their_characters() -> None:
    assert owners_of(["a", " ", "b", "\n\n", "c"], [True, False, False, False, False]).tolist() == [0, 0, 1, 2, 3, 3, 4]


@settings(max_examples=300, deadline=None, database=None)
@given(words=WORDS, data=st.data())
def test_char_owners_property(words: list[str], data: st.DataObject) -> None:
    spaces = data.draw(st.lists(st.booleans(), min_size=len(words), max_size=len(words)))
    got = owners_of(words, spaces)
    assert got.tolist() == owners_brute_force(words, spaces)
    assert (got >= 0).all()  # every character is a token's own or its trailing space
    assert (np.diff(got) >= 0).all()
    starts, ends = offsets.token_starts_ends(words, spaces)
    text = offsets.doc_text(words, spaces)
    assert [text[a:b] for a, b in zip(starts, ends)] == words
    # a character inside a word is that word's (the one exception: empty words)
    for i, (a, b) in enumerate(zip(starts, ends)):
        assert (got[a:b] == i).all()


def test_piece_over_two_tokens_aligns_to_both_and_specials_to_nothing() -> None:
    owners = owners_of(["can", "not", "go"], [False, True, False])  # "cannot go"
    starts, ends = np.array([0, 0, 7, 0]), np.array([0, 6, 9, 0])  # [CLS] cannot go [SEP]
    pieces, tokens = offsets.piece_tokens(owners, starts, ends)
    assert pieces.tolist() == [1, 1, 2]
    assert tokens.tolist() == [0, 1, 2]


def test_piece_tokens_skips_unowned_characters_and_repeats_shared_tokens() -> None:
    owners = np.array([-1, 0, 0, 1, -1, 2])
    pieces, tokens = offsets.piece_tokens(owners, np.array([0, 1, 2, 4, 3]), np.array([2, 2, 4, 6, 3]))
    assert list(zip(pieces.tolist(), tokens.tolist())) == [(0, 0), (1, 0), (2, 0), (2, 1), (3, 2)]


def test_piece_tokens_with_no_pieces() -> None:
    pieces, tokens = offsets.piece_tokens(np.array([0, 0]), np.zeros(0, np.int64), np.zeros(0, np.int64))
    assert pieces.shape == tokens.shape == (0,)


@settings(max_examples=300, deadline=None, database=None)
@given(words=WORDS, data=st.data())
def test_piece_tokens_equals_brute_force(words: list[str], data: st.DataObject) -> None:
    spaces = data.draw(st.lists(st.booleans(), min_size=len(words), max_size=len(words)))
    owners = owners_of(words, spaces)
    n = len(owners)
    ranges = data.draw(st.lists(st.tuples(st.integers(0, n), st.integers(0, 4)), max_size=20))
    starts = np.array([a for a, _ in ranges], dtype=np.int64)
    ends = np.array([min(a + w, n) for a, w in ranges], dtype=np.int64)
    pieces, tokens = offsets.piece_tokens(owners, starts, ends)
    expected = [
        (p, t)
        for p, (a, b) in enumerate(zip(starts, ends))
        for t in sorted({int(owners[c]) for c in range(a, b)})
        if t >= 0
    ]
    assert list(zip(pieces.tolist(), tokens.tolist())) == expected
