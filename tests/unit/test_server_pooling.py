"""pool: ragged segment reductions against a per-token numpy loop, zero rows for tokens without pieces."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from tokvec_server.pooling import pool
from tokvec_server.types import Pooling

REDUCE = {
    Pooling.MEAN: lambda x: x.mean(0),
    Pooling.MAX: lambda x: x.max(0),
    Pooling.SUM: lambda x: x.sum(0),
    Pooling.FIRST: lambda x: x[0],
    Pooling.LAST: lambda x: x[-1],
}


def reference(rows: np.ndarray, lengths: np.ndarray, indices: np.ndarray, pooling: Pooling) -> np.ndarray:
    out = np.zeros((len(lengths), rows.shape[1]), np.float64)
    start = 0
    for i, n in enumerate(lengths):
        if n:
            out[i] = REDUCE[pooling](rows[indices[start : start + n]].astype(np.float64))
        start += n
    return out


def ragged(
    seed: int, n_pieces: int = 40, n_tokens: int = 60, width: int = 16
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    rows = rng.normal(size=(n_pieces, width)).astype(np.float32) - 3.0  # mostly negative: max must not clamp at 0
    lengths = rng.integers(0, 5, size=n_tokens)
    lengths[rng.choice(n_tokens, 10, replace=False)] = 0
    indices = rng.integers(0, n_pieces, size=int(lengths.sum()))  # a piece may serve several tokens
    return rows, lengths.astype(np.int64), indices.astype(np.int64)


@pytest.mark.parametrize("pooling", list(Pooling))
@pytest.mark.parametrize("seed", range(5))
def test_pool_matches_numpy_reference(pooling: Pooling, seed: int) -> None:
    rows, lengths, indices = ragged(seed)
    got = pool(torch.from_numpy(rows), lengths, indices, pooling)
    assert got.dtype == torch.float32 and got.shape == (len(lengths), rows.shape[1])
    np.testing.assert_allclose(got.numpy(), reference(rows, lengths, indices, pooling), rtol=1e-5, atol=1e-5)
    assert (got.numpy()[lengths == 0] == 0).all()


@pytest.mark.parametrize("pooling", list(Pooling))
def test_tokens_without_pieces_are_zero_rows_under_every_pooling(pooling: Pooling) -> None:
    rows = -torch.ones((3, 4))
    got = pool(rows, np.array([0, 2, 0, 1, 0]), np.array([0, 1, 2]), pooling)
    assert torch.isfinite(got).all()
    assert (got[[0, 2, 4]] == 0).all()
    assert (got[[1, 3]] != 0).all()


@pytest.mark.parametrize("pooling", list(Pooling))
def test_no_piece_at_all(pooling: Pooling) -> None:
    got = pool(torch.zeros((0, 8)), np.zeros(3, np.int64), np.zeros(0, np.int64), pooling)
    assert got.shape == (3, 8) and got.dtype == torch.float32 and (got == 0).all()
    assert pool(torch.zeros((0, 8)), np.zeros(0, np.int64), np.zeros(0, np.int64), pooling).shape == (0, 8)


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16])
@pytest.mark.parametrize("pooling", list(Pooling))
def test_half_precision_rows_pool_to_float32(dtype: torch.dtype, pooling: Pooling) -> None:
    rows, lengths, indices = ragged(11)
    half = torch.from_numpy(rows).to(dtype)
    got = pool(half, lengths, indices, pooling)
    assert got.dtype == torch.float32
    np.testing.assert_allclose(
        got.numpy(), reference(half.float().numpy(), lengths, indices, pooling), rtol=1e-5, atol=1e-5
    )


def test_ordering_of_first_and_last() -> None:
    rows = torch.arange(12, dtype=torch.float32).reshape(6, 2)
    lengths, indices = np.array([3, 1]), np.array([4, 0, 2, 5])
    assert pool(rows, lengths, indices, Pooling.FIRST).tolist() == [[8, 9], [10, 11]]
    assert pool(rows, lengths, indices, Pooling.LAST).tolist() == [[4, 5], [10, 11]]
    assert pool(rows, lengths, indices, Pooling.MEAN).tolist() == [[4, 5], [10, 11]]
