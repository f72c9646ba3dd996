"""Span getters: strided windows must equal spacy-transformers' strided_spans.v1 exactly."""

from __future__ import annotations

import pytest

from tokvec_server.alignment import spans


def reference_strided(n: int, window: int, stride: int) -> list[tuple[int, int]]:
    """docs/alignment.md, read literally: start at 0; at most n // S times emit [start, min(start + W, n)),
    stop once start + W >= n, else start += S; if the loop ran out, emit [start, n) when start < n."""
    out: list[tuple[int, int]] = []
    start, times = 0, n // stride
    while times > 0:
        out.append((start, min(start + window, n)))
        if start + window >= n:
            return out
        start, times = start + stride, times - 1
    return out + [(start, n)] if start < n else out


# Checked once against spacy_transformers.span_getters.get_strided_spans (1.4.0) on Docs of n tokens.
SPACY_TRANSFORMERS = [
    (0, 128, 96, []),
    (7, 128, 96, [(0, 7)]),
    (200, 128, 96, [(0, 128), (96, 200)]),
    (224, 128, 96, [(0, 128), (96, 224)]),
    (225, 128, 96, [(0, 128), (96, 224), (192, 225)]),
    (10, 4, 3, [(0, 4), (3, 7), (6, 10)]),
    (10, 5, 5, [(0, 5), (5, 10)]),
    (11, 5, 5, [(0, 5), (5, 10), (10, 11)]),
    (10, 3, 5, [(0, 3), (5, 8)]),  # W < S: tokens 3, 4, 8, 9 are in no span
    (12, 2, 5, [(0, 2), (5, 7), (10, 12)]),
    (4, 2, 5, [(0, 4)]),  # n < S: one span over everything, whatever W
]


@pytest.mark.parametrize(("n", "window", "stride", "expected"), SPACY_TRANSFORMERS)
def test_strided_matches_spacy_transformers_cases(
    n: int, window: int, stride: int, expected: list[tuple[int, int]]
) -> None:
    assert spans.strided(n, window, stride) == expected


@pytest.mark.parametrize(
    ("window", "stride"), [(128, 96), (4, 3), (7, 2), (100, 1), (1, 1), (5, 5), (10, 10), (3, 5), (2, 7), (1, 3)]
)
def test_strided_equals_reference_for_every_length(window: int, stride: int) -> None:
    for n in range(401):
        assert spans.strided(n, window, stride) == reference_strided(n, window, stride), n


@pytest.mark.parametrize(("window", "stride"), [(128, 96), (4, 3), (5, 5), (1, 1)])
def test_strided_with_window_at_least_stride_covers_every_token(window: int, stride: int) -> None:
    for n in range(1, 401):
        got = spans.strided(n, window, stride)
        covered = set().union(*(range(a, b) for a, b in got))
        assert covered == set(range(n)), n
        assert all(0 <= a < b <= n and b - a <= window for a, b in got), n
        assert [a for a, _ in got] == [k * stride for k in range(len(got))], n


def test_whole() -> None:
    assert spans.whole(0) == []
    assert spans.whole(1) == [(0, 1)]
    assert spans.whole(5000) == [(0, 5000)]


@pytest.mark.parametrize(
    ("sent_starts", "expected"),
    [
        ([], []),
        ([True], [(0, 1)]),
        ([True, False, False, True, False], [(0, 3), (3, 5)]),
        ([False, False, True], [(0, 2), (2, 3)]),  # token 0 always starts a sentence
        ([True, True, True], [(0, 1), (1, 2), (2, 3)]),
        ([False] * 4, [(0, 4)]),
        ([True, False, False, False, True], [(0, 4), (4, 5)]),
    ],
)
def test_sentences(sent_starts: list[bool], expected: list[tuple[int, int]]) -> None:
    got = spans.sentences(sent_starts)
    assert got == expected
    assert all(isinstance(x, int) for span in got for x in span)  # plain ints, not numpy scalars
