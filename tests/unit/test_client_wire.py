"""The client's protobuf edge: tensor decoding, options and spans, docs out, chunked results in."""

from __future__ import annotations

from typing import Any

import grpc
import numpy as np
import pytest
from spacy.tokens import Doc
from spacy.vocab import Vocab

from tokvec import _wire
from tokvec.v1 import tokvec_pb2 as pb


def bf16_bits(x: np.ndarray) -> np.ndarray:
    """bfloat16 as the server sends it: the top 16 bits of each float32 (truncated)."""
    return (np.ascontiguousarray(x, np.float32).view(np.uint32) >> 16).astype("<u2")


def test_float32_tensor() -> None:
    x = np.random.default_rng(0).normal(size=(3, 5)).astype(np.float32)
    got = _wire.tensor(pb.Tensor(dtype=pb.DTYPE_FLOAT32, shape=[3, 5], data=x.astype("<f4").tobytes()))
    assert got.dtype == np.float32 and np.array_equal(got, x)


def test_tensor_bytes_are_little_endian() -> None:
    got = _wire.tensor(pb.Tensor(dtype=pb.DTYPE_FLOAT32, shape=[2], data=b"\x00\x00\x80\x3f\x00\x00\x00\xc0"))
    assert got.tolist() == [1.0, -2.0]
    assert _wire.tensor(pb.Tensor(dtype=pb.DTYPE_FLOAT16, shape=[1], data=b"\x00\x3c")).tolist() == [1.0]


def test_float16_tensor() -> None:
    x = np.random.default_rng(1).normal(size=(4, 6)).astype(np.float16)
    got = _wire.tensor(pb.Tensor(dtype=pb.DTYPE_FLOAT16, shape=[4, 6], data=x.astype("<f2").tobytes()))
    assert got.dtype == np.float32 and np.array_equal(got, x.astype(np.float32))


def test_bfloat16_tensor_is_the_top_half_of_float32() -> None:
    x = np.random.default_rng(2).normal(size=(4, 6)).astype(np.float32) * 100
    bits = bf16_bits(x)
    got = _wire.tensor(pb.Tensor(dtype=pb.DTYPE_BFLOAT16, shape=[4, 6], data=bits.tobytes()))
    manual = np.array([[int(b) << 16 for b in row] for row in bits], dtype=np.uint32).view(np.float32)
    assert got.dtype == np.float32 and got.shape == (4, 6)
    assert np.array_equal(got, manual)
    np.testing.assert_allclose(got, x, rtol=2.0**-7, atol=0)  # truncation keeps 8 significant bits


def test_bfloat16_known_values() -> None:
    data = np.array([0x3F80, 0xC000, 0x0000, 0x4049, 0x7F80], dtype="<u2").tobytes()
    got = _wire.tensor(pb.Tensor(dtype=pb.DTYPE_BFLOAT16, shape=[5], data=data))
    assert got.tolist() == [1.0, -2.0, 0.0, 3.140625, float("inf")]


@pytest.mark.parametrize("dtype", [pb.DTYPE_FLOAT32, pb.DTYPE_FLOAT16, pb.DTYPE_BFLOAT16])
def test_empty_tensor_keeps_its_width(dtype: pb.DType) -> None:
    got = _wire.tensor(pb.Tensor(dtype=dtype, shape=[0, 384], data=b""))
    assert got.shape == (0, 384) and got.dtype == np.float32


@pytest.mark.parametrize(
    ("kwargs", "named"),
    [
        ({"pooling": "median"}, ["pooling", "'median'"]),
        ({"dtype": "int8"}, ["dtype", "'int8'"]),
        ({"outputs": ["tokens", "logits"]}, ["outputs", "'logits'"]),
        ({"spans_spec": "words:1:1"}, ["spans", "'words:1:1'"]),
    ],
)
def test_options_reject_unknown_values_by_name(kwargs: dict[str, Any], named: list[str]) -> None:
    with pytest.raises(ValueError) as info:
        _wire.options(**kwargs)
    assert all(n in str(info.value) for n in named)


def test_options_fields() -> None:
    msg = _wire.options("max", "pieces:126:96", "bfloat16", ["tokens", "doc_vector"], [0, -1], "m")
    assert (msg.model, msg.pooling, msg.dtype) == ("m", pb.POOLING_MAX, pb.DTYPE_BFLOAT16)
    assert list(msg.outputs) == [pb.OUTPUT_TOKENS, pb.OUTPUT_DOC_VECTOR]
    assert list(msg.hidden_layers) == [0, -1]
    assert (msg.spans.kind, msg.spans.window, msg.spans.stride) == (pb.Spans.KIND_PIECES, 126, 96)


@pytest.mark.parametrize(
    ("spec", "expected"),
    [
        ("doc", (pb.Spans.KIND_DOC, 0, 0)),
        ("sents", (pb.Spans.KIND_SENTS, 0, 0)),
        ("tokens:128:96", (pb.Spans.KIND_TOKENS, 128, 96)),
        ("pieces:4:2", (pb.Spans.KIND_PIECES, 4, 2)),
    ],
)
def test_spans(spec: str, expected: tuple[int, int, int]) -> None:
    msg = _wire.spans(spec)
    assert (msg.kind, msg.window, msg.stride) == expected


@pytest.mark.parametrize(
    "spec", ["", "doc:1", "tokens", "tokens:128", "tokens:a:b", "tokens:-1:2", "tokens:1:2:3", "Doc"]
)
def test_bad_spans(spec: str) -> None:
    with pytest.raises(ValueError, match=r"^spans: .* is not doc, sents, tokens:W:S or pieces:W:S$"):
        _wire.spans(spec)


def test_to_doc_text() -> None:
    assert _wire.to_doc("Hello world.", 4) == pb.Doc(id="4", text="Hello world.")


@pytest.mark.parametrize("words", [["a", "b"], ("a", "b")])
def test_to_doc_word_list_has_a_space_after_each(words: list[str]) -> None:
    assert _wire.to_doc(words, 1) == pb.Doc(id="1", words=["a", "b"], spaces=[True, True])


def test_to_doc_mapping() -> None:
    doc = {"id": "x", "words": ["Hi", "!"], "spaces": [False, False], "sent_starts": [True, False], "lang": "en"}
    assert _wire.to_doc(doc, 0) == pb.Doc(
        id="x", words=["Hi", "!"], spaces=[False, False], sent_starts=[True, False], lang="en"
    )


def test_to_doc_mapping_without_spaces_has_a_space_after_each() -> None:
    """spaCy's Doc(vocab, words) default, the same as a plain word list (and the wire's meaning)."""
    assert _wire.to_doc({"id": "x", "words": ["a", "b"]}, 0) == pb.Doc(id="x", words=["a", "b"], spaces=[True, True])
    assert _wire.to_doc({"words": ["a", "b"], "spaces": None}, 0).spaces == [True, True]


def test_to_doc_mapping_words_win_over_text() -> None:
    assert _wire.to_doc({"words": ["a"], "text": "b c"}, 2) == pb.Doc(id="2", words=["a"], spaces=[True])
    assert _wire.to_doc({"text": "b c", "lang": "de"}, 2) == pb.Doc(id="2", text="b c", lang="de")


def test_to_doc_spacy_doc() -> None:
    doc = Doc(Vocab(), words=["Hello", ",", "world"], spaces=[False, True, False])
    assert _wire.to_doc(doc, 0) == pb.Doc(id="0", words=["Hello", ",", "world"], spaces=[False, True, False])


def test_to_doc_refuses_other_types() -> None:
    with pytest.raises(TypeError, match="^doc 3: .*got int$"):
        _wire.to_doc(42, 3)


def test_to_doc_refuses_a_word_list_with_a_non_string() -> None:
    with pytest.raises(TypeError, match="^doc 0"):
        _wire.to_doc(["a", 1], 0)


def f32(x: np.ndarray) -> pb.Tensor:
    return pb.Tensor(dtype=pb.DTYPE_FLOAT32, shape=list(x.shape), data=x.astype("<f4").tobytes())


def test_assembler_joins_chunks_in_order() -> None:
    rows = np.arange(5 * 3, dtype=np.float32).reshape(5, 3)
    layer = -rows
    pieces = np.arange(7 * 3, dtype=np.float32).reshape(7, 3) / 10
    first = pb.DocResult(
        index=2,
        id="d",
        fingerprint="fp",
        n_tokens=5,
        row_start=0,
        tokens=f32(rows[:2]),
        layers=[f32(layer[:2])],
        no_piece=[4],
        truncated=[3],
        words=["a", "b", "c", "d", " "],
        spaces=[True, True, True, False, False],
        doc_vector=f32(np.ones(3, np.float32)),
        more=True,
        piece_start=0,
        pieces=pb.Pieces(
            hidden=f32(pieces[:4]),
            ids=[101, 5, 6, 7, 8, 9, 102],
            span_lengths=[7],
            span_token_starts=[0],
            span_token_ends=[5],
            align_lengths=[1, 1, 1, 2, 0],
            align_indices=[1, 2, 3, 4, 5],
        ),
    )
    second = pb.DocResult(
        index=2,
        id="d",
        n_tokens=5,
        row_start=2,
        tokens=f32(rows[2:]),
        layers=[f32(layer[2:])],
        piece_start=4,
        pieces=pb.Pieces(hidden=f32(pieces[4:])),
    )
    assembler = _wire.Assembler()
    assert assembler.add(first) is None
    out = assembler.add(second)
    assert out is not None and out.error is None
    assert (out.index, out.id, out.fingerprint) == (2, "d", "fp")
    assert np.array_equal(out.rows, rows) and len(out.layers) == 1 and np.array_equal(out.layers[0], layer)
    assert out.no_piece.tolist() == [4] and out.truncated.tolist() == [3]
    assert out.words == ["a", "b", "c", "d", " "] and out.spaces == [True, True, True, False, False]
    assert out.doc_vector is not None and out.doc_vector.tolist() == [1.0, 1.0, 1.0]
    assert out.pieces is not None and np.array_equal(out.pieces.hidden, pieces)
    assert out.pieces.ids.tolist() == [101, 5, 6, 7, 8, 9, 102] and out.pieces.span_tokens.tolist() == [[0, 5]]
    assert out.pieces.align_lengths.tolist() == [1, 1, 1, 2, 0] and out.pieces.align_indices.tolist() == [1, 2, 3, 4, 5]
    # the next doc starts afresh
    single = assembler.add(pb.DocResult(index=3, id="e", n_tokens=1, tokens=f32(rows[:1])))
    assert single is not None and single.index == 3 and np.array_equal(single.rows, rows[:1])
    assert single.words is None and single.pieces is None and single.doc_vector is None


def test_assembler_error_result() -> None:
    out = _wire.Assembler().add(
        pb.DocResult(index=1, id="bad", error=pb.Error(code=3, message="docs[1].words: 9 > max (8)"))
    )
    assert out is not None and out.error is not None
    assert out.error.code is grpc.StatusCode.INVALID_ARGUMENT
    assert (out.error.index, out.error.doc_id, out.error.reason) == (1, "bad", "docs[1].words: 9 > max (8)")
    assert out.rows.size == 0
