"""plan_docs with the real MiniLM tokenizer: spans, truncation and piece -> token alignment."""

from __future__ import annotations

import random
from typing import Any

import numpy as np
import pytest

from tokvec_server.alignment import DocPlan, Specials, plan_docs
from tokvec_server.alignment.offsets import doc_text
from tokvec_server.types import SpanSpec, Tokens

MAX_LENGTH = 512
CLS, SEP, UNK = 101, 102, 100
ALL_SPECS = ["doc", "tokens:128:96", "tokens:3:2", "tokens:2:5", "pieces:126:96", "pieces:4:2"]


def plan(
    tokenizer: Any, words: list[str], spaces: list[bool], spec: str = "doc", sent_starts: list[bool] | None = None
) -> DocPlan:
    return plan_docs(
        [Tokens("d", words, spaces, sent_starts)], SpanSpec.parse(spec), tokenizer, MAX_LENGTH, Specials.of(tokenizer)
    )[0]


def pieces_of(p: DocPlan, token: int) -> list[int]:
    """Global piece positions aligned to one token."""
    start = int(p.align_lengths[:token].sum())
    return [int(i) for i in p.align_indices[start : start + p.align_lengths[token]]]


def ids_of(p: DocPlan, token: int) -> list[int]:
    flat = np.concatenate(p.span_ids)
    return [int(i) for i in flat[pieces_of(p, token)]]


def test_specials_of_bert_tokenizer(tokenizer: Any) -> None:
    assert Specials.of(tokenizer) == Specials((CLS,), (SEP,))


@pytest.mark.parametrize("spec", ["doc", "tokens:128:96", "pieces:126:96"])
def test_cannot_split_as_can_not_gets_the_same_piece(tokenizer: Any, spec: str) -> None:
    p = plan(tokenizer, ["I", "can", "not", "go", "."], [True, False, True, False, False], spec)
    cannot = tokenizer.convert_tokens_to_ids("cannot")
    assert ids_of(p, 1) == ids_of(p, 2) == [cannot]
    assert pieces_of(p, 1) == pieces_of(p, 2)
    assert p.align_lengths.tolist() == [1, 1, 1, 1, 1]


def test_multi_piece_token_keeps_its_pieces_in_order(tokenizer: Any) -> None:
    p = plan(tokenizer, ["tokenization", "works"], [True, False])
    assert ids_of(p, 0) == tokenizer.convert_tokens_to_ids(["token", "##ization"])
    assert pieces_of(p, 0) == [1, 2]


def test_piece_offsets_point_at_the_doc_text(tokenizer: Any) -> None:
    # a whitespace token opens the second window: its span text must not be stripped
    words, spaces = ["Alpha", " ", "beta", "Gamma", "tokenization"], [True, False, True, True, False]
    text = doc_text(words, spaces)
    for spec in ALL_SPECS:
        p = plan(tokenizer, words, spaces, spec)
        pieces = tokenizer.convert_ids_to_tokens(np.concatenate(p.span_ids).tolist())
        for piece, (a, b) in zip(pieces, p.piece_offsets.tolist()):
            if piece in ("[CLS]", "[SEP]"):
                assert (a, b) == (0, 0), spec
            else:
                assert text[a:b].lower() == piece.removeprefix("##"), (spec, piece, a, b)


def test_overlapping_windows_pool_over_pieces_from_both(tokenizer: Any) -> None:
    p = plan(tokenizer, list("abcdef"), [True] * 5 + [False], "tokens:4:2")
    assert p.span_tokens.tolist() == [[0, 4], [2, 6]]
    assert [len(ids) for ids in p.span_ids] == [6, 6]  # [CLS] 4 pieces [SEP], each window alone
    assert p.align_lengths.tolist() == [1, 1, 2, 2, 1, 1]
    assert pieces_of(p, 2) == [3, 7] and pieces_of(p, 3) == [4, 8]  # span order, then piece order


def test_sentence_spans_are_tokenized_alone(tokenizer: Any) -> None:
    words = ["Hi", ".", "Bye", "now"]
    p = plan(tokenizer, words, [False, True, True, False], "sents", sent_starts=[True, False, True, False])
    assert p.span_tokens.tolist() == [[0, 2], [2, 4]]
    assert p.span_ids[1].tolist() == [CLS, *tokenizer.convert_tokens_to_ids(["bye", "now"]), SEP]


def test_pieces_windows_on_a_5000_token_doc(tokenizer: Any) -> None:
    rng = random.Random(7)
    vocab = [
        "The",
        "tokenization",
        "of",
        "antidisestablishmentarianism",
        "can",
        "not",
        "1st",
        ",",
        "😀",
        "café",
        "[SEP]",
        "gonna",
    ]
    words = [rng.choice(vocab) for _ in range(5000)]
    spaces = [rng.random() < 0.8 for _ in words]
    p = plan(tokenizer, words, spaces, "pieces:126:96")
    assert p.n_tokens == 5000
    assert (p.align_lengths > 0).all()
    assert max(len(ids) for ids in p.span_ids) <= 128
    assert p.truncated.size == 0
    full = tokenizer(doc_text(words, spaces), add_special_tokens=False)["input_ids"]
    assert len(full) > 5000
    for k, ids in enumerate(p.span_ids):
        assert ids[0] == CLS and ids[-1] == SEP
        assert ids[1:-1].tolist() == full[k * 96 : k * 96 + 126]
    assert 96 * (len(p.span_ids) - 1) + len(p.span_ids[-1]) - 2 == len(full)  # the last window reaches the end


def test_doc_span_past_the_limit_keeps_512_pieces_and_flags_lost_tokens(tokenizer: Any) -> None:
    words = ["hello"] * 600
    p = plan(tokenizer, words, [True] * 600, "doc")
    (ids,) = p.span_ids
    assert len(ids) == MAX_LENGTH and ids[0] == CLS and ids[-1] != SEP  # no [SEP] re-added
    assert p.truncated.tolist() == list(range(511, 600))
    assert p.no_piece.tolist() == list(range(511, 600))
    assert (p.align_lengths[:511] == 1).all()


def test_token_cut_in_the_middle_is_flagged_but_keeps_its_first_pieces(tokenizer: Any) -> None:
    words = ["hello"] * 509 + ["antidisestablishmentarianism"] + ["hello"] * 10  # 8 pieces at 510..517
    p = plan(tokenizer, words, [True] * len(words), "doc")
    assert p.truncated.tolist() == list(range(509, 520))
    assert pieces_of(p, 509) == [510, 511]
    assert p.no_piece.tolist() == list(range(510, 520))


def test_token_windows_past_the_limit_are_cut_too(tokenizer: Any) -> None:
    p = plan(tokenizer, ["hello"] * 600, [True] * 600, "tokens:600:600")
    assert [len(ids) for ids in p.span_ids] == [MAX_LENGTH]
    assert p.truncated.tolist() == list(range(511, 600))


@pytest.mark.parametrize("spec", [s for s in ALL_SPECS if s != "tokens:2:5"])  # W < S skips tokens
def test_whitespace_tokens_get_no_piece(tokenizer: Any, spec: str) -> None:
    words = ["Hello", " ", "world", "\n\n", "\t", "!", "\u00a0", "\u200b", "ok"]
    p = plan(tokenizer, words, [True, False, False, False, False, True, False, False, False], spec)
    assert p.no_piece.tolist() == [1, 3, 4, 6, 7]
    assert (p.align_lengths[[0, 2, 5, 8]] >= 1).all()


def test_literal_sep_text_aligns_to_a_real_sep_piece(tokenizer: Any) -> None:
    p = plan(tokenizer, ["a", "[SEP]", "b"], [True, True, False])
    assert p.span_ids[0].tolist() == [
        CLS,
        tokenizer.convert_tokens_to_ids("a"),
        SEP,
        tokenizer.convert_tokens_to_ids("b"),
        SEP,
    ]
    assert pieces_of(p, 1) == [2]
    assert p.piece_offsets[2].tolist() == [2, 7]


def test_emoji_becomes_unk_aligned_to_its_token(tokenizer: Any) -> None:
    p = plan(tokenizer, ["I", "😀", "you"], [True, True, False])
    assert ids_of(p, 1) == [UNK]
    assert ids_of(p, 2) == [tokenizer.convert_tokens_to_ids("you")]
    assert p.piece_offsets[pieces_of(p, 2)[0]].tolist() == [4, 7]  # code points: the emoji counts 1


@pytest.mark.parametrize("spec", ALL_SPECS)
def test_empty_doc_has_no_span(tokenizer: Any, spec: str) -> None:
    p = plan(tokenizer, [], [], spec)
    assert p.n_tokens == 0 and p.span_ids == [] and p.n_pieces == 0
    assert p.align_lengths.shape == (0,) and p.span_tokens.shape == (0, 2)


@pytest.mark.parametrize("spec", ALL_SPECS)
def test_a_doc_plans_the_same_alone_and_in_a_batch(tokenizer: Any, spec: str) -> None:
    docs = [
        Tokens("a", ["One", "tokenization", "can", "not"], [True, True, False, False], None),
        Tokens("b", [], [], None),
        Tokens("c", ["x", " ", "😀", "y"] * 3, [True, False, True, False] * 3, None),
    ]
    together = plan_docs(docs, SpanSpec.parse(spec), tokenizer, MAX_LENGTH, Specials.of(tokenizer))
    for doc, got in zip(docs, together):
        alone = plan_docs([doc], SpanSpec.parse(spec), tokenizer, MAX_LENGTH, Specials.of(tokenizer))[0]
        assert [ids.tolist() for ids in got.span_ids] == [ids.tolist() for ids in alone.span_ids]
        for name in ("span_tokens", "piece_offsets", "align_lengths", "align_indices", "truncated"):
            assert np.array_equal(getattr(got, name), getattr(alone, name)), name


def test_pieces_span_tokens_contain_every_token_aligned_in_the_span(tokenizer: Any) -> None:
    p = plan(tokenizer, ["can", "not"], [False, False], "pieces:1:1")
    assert p.span_tokens.tolist() == [[0, 2]]


def test_window_smaller_than_stride_leaves_skipped_tokens_without_pieces(tokenizer: Any) -> None:
    p = plan(tokenizer, list("abcdefg"), [True] * 6 + [False], "tokens:2:5")
    assert p.span_tokens.tolist() == [[0, 2], [5, 7]]
    assert p.n_tokens == 7 and p.align_lengths.tolist() == [1, 1, 0, 0, 0, 1, 1]
