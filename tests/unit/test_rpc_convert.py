"""results(): a large doc is split into row-range chunks under gRPC's 4 MiB, and the client's
Assembler rebuilds exactly the arrays the server had."""

from __future__ import annotations

import numpy as np
import pytest

from tokvec import _wire
from tokvec.v1 import tokvec_pb2 as pb
from tokvec_server.alignment import DocPlan
from tokvec_server.batching.jobs import DocOutput
from tokvec_server.chunks import CHUNK_BYTES, cuts
from tokvec_server.rpc.convert import results
from tokvec_server.types import DType, Tokens

MiB = 1024 * 1024
WIDTH = 384


def output(
    n_tokens: int,
    n_pieces: int = 0,
    rows: bool = True,
    n_layers: int = 0,
    pieces: bool = False,
    dtype: DType = DType.FLOAT32,
    from_text: bool = False,
) -> DocOutput:
    rng = np.random.default_rng(n_tokens)
    plan = DocPlan(
        n_tokens=n_tokens,
        span_ids=[np.full(n_pieces, 7, np.int64)] if n_pieces else [],
        span_tokens=np.array([[0, n_tokens]] if n_pieces else [], np.int64).reshape(-1, 2),
        piece_offsets=np.zeros((n_pieces, 2), np.int64),
        align_lengths=np.ones(n_tokens, np.int64),
        align_indices=np.arange(n_tokens, dtype=np.int64) % max(n_pieces, 1),
        truncated=np.array([1, 2], np.int64),
    )
    words = ["w"] * n_tokens

    def wire(shape: tuple[int, ...]) -> np.ndarray:  # host arrays in the wire dtype, as DocOutput holds them
        x = rng.normal(size=shape).astype(np.float32)
        if dtype is DType.BFLOAT16:
            return (x.view(np.uint32) >> 16).astype(np.uint16)
        return x.astype(np.float16) if dtype is DType.FLOAT16 else x

    return DocOutput(
        doc=Tokens("doc-7", words, [True] * n_tokens, None, from_text=from_text),
        plan=plan,
        rows=wire((n_tokens, WIDTH)) if rows else None,
        layers=[wire((n_tokens, WIDTH)) for _ in range(n_layers)],
        pieces=wire((n_pieces, WIDTH)) if pieces else None,
        doc_vector=None,
    )


def decoded(x: np.ndarray, dtype: DType) -> np.ndarray:
    """What the client must get back: float32, bfloat16 widened by a 16-bit shift."""
    if dtype is DType.BFLOAT16:
        return (x.astype(np.uint32) << 16).view(np.float32)
    return x.astype(np.float32)


def assemble(messages: list[pb.DocResult]) -> _wire.Embedding:
    assembler = _wire.Assembler()
    outs = [assembler.add(m) for m in messages]
    assert all(o is None for o in outs[:-1]) and outs[-1] is not None
    return outs[-1]


def test_chunk_budget_is_3_mib() -> None:
    assert 3 * MiB == CHUNK_BYTES


@pytest.mark.parametrize("n", [0, 1, 7, 40, 1000, 65537])
@pytest.mark.parametrize("parts", [1, 2, 3, 7])
def test_cuts_are_near_equal_row_ranges_from_0_to_n(n: int, parts: int) -> None:
    bounds = cuts(n, parts)
    sizes = np.diff(bounds)
    assert len(bounds) == parts + 1 and bounds[0] == 0 and bounds[-1] == n
    assert (sizes >= 0).all() and sizes.max() - sizes.min() <= 1


@pytest.mark.parametrize("dtype", list(DType))
def test_large_doc_is_chunked_under_4_mib_and_rebuilt_exactly(dtype: DType) -> None:
    n_tokens = 5000 if dtype is DType.FLOAT32 else 9000  # 7.3 MiB of float32 rows, 6.6 MiB of 16-bit ones
    out = output(n_tokens, dtype=dtype, n_layers=1, from_text=True)
    messages = list(results(4, out, "fp", dtype))
    assert len(messages) >= 3
    assert all(m.ByteSize() < 4 * MiB for m in messages)
    assert [m.more for m in messages] == [True] * (len(messages) - 1) + [False]
    starts = [m.row_start for m in messages]
    assert starts[0] == 0 and starts == sorted(starts)
    assert [m.row_start + m.tokens.shape[0] for m in messages[:-1]] == starts[1:]
    assert all(m.index == 4 and m.id == "doc-7" and m.n_tokens == n_tokens for m in messages)
    assert all(
        m.tokens.dtype
        == {DType.FLOAT32: pb.DTYPE_FLOAT32, DType.FLOAT16: pb.DTYPE_FLOAT16, DType.BFLOAT16: pb.DTYPE_BFLOAT16}[dtype]
        for m in messages
    )
    got = assemble(messages)
    assert out.rows is not None and got.rows.dtype == np.float32
    assert np.array_equal(got.rows, decoded(out.rows, dtype))
    assert np.array_equal(got.layers[0], decoded(out.layers[0], dtype))
    # flags and the server's tokens travel once, in the first chunk
    assert got.truncated.tolist() == [1, 2] and got.words == ["w"] * n_tokens
    assert all(not m.truncated and not m.words for m in messages[1:])


def test_small_doc_is_one_message() -> None:
    out = output(100)
    (msg,) = results(0, out, "fp", DType.FLOAT32)
    assert not msg.more and msg.fingerprint == "fp" and (msg.tokens.shape, msg.row_start) == ([100, WIDTH], 0)
    assert out.rows is not None and np.array_equal(assemble([msg]).rows, out.rows)


def test_empty_doc_keeps_its_width() -> None:
    (msg,) = results(0, output(0), "fp", DType.FLOAT32)
    assert assemble([msg]).rows.shape == (0, WIDTH)


def test_piece_output_alone_is_chunked_by_pieces() -> None:
    out = output(10, n_pieces=5000, rows=False, pieces=True)
    messages = list(results(0, out, "fp", DType.FLOAT32))
    assert len(messages) >= 3 and all(m.ByteSize() < 4 * MiB for m in messages)
    got = assemble(messages)
    assert got.pieces is not None and out.pieces is not None
    assert np.array_equal(got.pieces.hidden, out.pieces)
    assert got.pieces.span_lengths.tolist() == [5000] and got.pieces.span_tokens.tolist() == [[0, 10]]


def test_rows_and_pieces_together_stay_under_4_mib() -> None:
    # 2,040 rows and 2,040 pieces of 384 float32 are each just under 3 MiB: budgeted apart, they
    # would share one ~6 MiB message
    out = output(2040, n_pieces=2040, pieces=True)
    messages = list(results(0, out, "fp", DType.FLOAT32))
    assert len(messages) >= 2 and all(m.ByteSize() < 4 * MiB for m in messages), [m.ByteSize() for m in messages]
    got = assemble(messages)
    assert out.rows is not None and out.pieces is not None and got.pieces is not None
    assert np.array_equal(got.rows, out.rows) and np.array_equal(got.pieces.hidden, out.pieces)
