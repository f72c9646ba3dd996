"""Validation: every limit and malformed field fails with INVALID_ARGUMENT naming field, size and limit."""

from __future__ import annotations

import grpc
import pytest

from tokvec_server.errors import InvalidInput
from tokvec_server.settings import Limits
from tokvec_server.types import DocInput, EmbedOptions, SpanSpec
from tokvec_server.validation import SpacyWords, check_doc, check_options, check_request

LIMITS = Limits()


@pytest.fixture(scope="module")
def words() -> SpacyWords:
    return SpacyWords()


def refused(doc: DocInput, words: SpacyWords, limits: Limits = LIMITS, index: int = 0) -> str:
    with pytest.raises(InvalidInput) as info:
        check_doc(doc, index, limits, words, need_sents=False)
    assert info.value.code is grpc.StatusCode.INVALID_ARGUMENT
    return str(info.value)


def options_refused(spans: str = "tokens:128:96", hidden_layers: tuple[int, ...] = ()) -> str:
    with pytest.raises(InvalidInput) as info:
        check_options(
            EmbedOptions(spans=SpanSpec.parse(spans), hidden_layers=hidden_layers),
            max_length=512,
            n_special=2,
            n_layers=6,
        )
    assert info.value.code is grpc.StatusCode.INVALID_ARGUMENT
    return str(info.value)


def test_too_many_words(words: SpacyWords) -> None:
    assert refused(DocInput(words=["a"] * 20001), words, index=3) == "docs[3].words: 20001 > max_tokens_per_doc (16384)"


def test_words_at_the_limit_pass(words: SpacyWords) -> None:
    assert len(check_doc(DocInput(words=["a"] * 16384), 0, LIMITS, words, False).words) == 16384


def test_too_many_docs() -> None:
    check_request(1024, LIMITS)
    with pytest.raises(InvalidInput, match=r"^docs: 1025 > max_docs_per_request \(1024\)$"):
        check_request(1025, LIMITS)


def test_id_too_long(words: SpacyWords) -> None:
    assert refused(DocInput(id="x" * 257, words=["a"]), words) == "docs[0].id: 257 > max_id_chars (256)"


def test_word_too_long_when_an_operator_sets_max_word_chars(words: SpacyWords) -> None:
    msg = refused(DocInput(words=["a", "b" * 2049, "c"]), words, Limits(max_word_chars=2048), index=2)
    assert msg == "docs[2].words[1]: 2049 > max_word_chars (2048)"


def test_by_default_a_word_may_be_as_long_as_the_doc_allows(words: SpacyWords) -> None:
    longest = LIMITS.max_chars_per_doc - 2  # "a", a space, then the one long word
    assert [
        len(w)
        for w in check_doc(DocInput(words=["a", "b" * longest], spaces=[True, False]), 0, LIMITS, words, False).words
    ] == [1, longest]
    assert (
        refused(DocInput(words=["a", "b" * (longest + 1)], spaces=[True, False]), words)
        == f"docs[0] text: {LIMITS.max_chars_per_doc + 1} > max_chars_per_doc ({LIMITS.max_chars_per_doc})"
    )


def test_words_text_too_long(words: SpacyWords) -> None:
    msg = refused(
        DocInput(words=["hello", "world"], spaces=[True, False]), words, Limits(max_chars_per_doc=10), index=1
    )
    assert msg.startswith("docs[1]") and msg.endswith(": 11 > max_chars_per_doc (10)")


def test_text_too_long(words: SpacyWords) -> None:
    assert (
        refused(DocInput(text="x" * 11), words, Limits(max_chars_per_doc=10))
        == "docs[0].text: 11 > max_chars_per_doc (10)"
    )


def test_text_with_too_many_tokens(words: SpacyWords) -> None:
    msg = refused(DocInput(text="a b c d"), words, Limits(max_tokens_per_doc=3))
    assert msg == "docs[0].text tokens: 4 > max_tokens_per_doc (3)"


@pytest.mark.parametrize("name", ["spaces", "sent_starts"])
def test_length_mismatch(words: SpacyWords, name: str) -> None:
    doc = DocInput(words=["a", "b", "c"])
    setattr(doc, name, [True, False])
    assert refused(doc, words, index=4) == f"docs[4].{name}: 2 values for 3 words"


def test_words_and_text_both_set(words: SpacyWords) -> None:
    assert refused(DocInput(words=["a"], text="a"), words) == "docs[0]: set words or text, not both"


def test_spaces_without_words(words: SpacyWords) -> None:
    assert refused(DocInput(text="a b", spaces=[True, False]), words) == "docs[0]: spaces and sent_starts need words"


@pytest.mark.parametrize("lang", ["EN", "english", "e", "e1", "en-US", "../x", "q" * 10_000])
def test_malformed_lang(words: SpacyWords, lang: str) -> None:
    msg = refused(DocInput(text="Hello.", lang=lang), words, index=2)
    assert msg == "docs[2].lang: not a language code (2 or 3 lowercase letters)"  # the input is not echoed


def test_unknown_lang(words: SpacyWords) -> None:
    assert refused(DocInput(text="Hello.", lang="zz"), words) == "docs[0].lang: 'zz' is not a language spaCy knows"


def test_words_doc_defaults(words: SpacyWords) -> None:
    """Omitted spaces are spaCy's Doc(vocab, words) default: a space after every word, the last too."""
    from spacy.tokens import Doc
    from spacy.vocab import Vocab

    tokens = check_doc(DocInput(id="x", words=["a", "b"]), 0, LIMITS, words, need_sents=False)
    assert (tokens.id, tokens.words, tokens.spaces, tokens.sent_starts, tokens.from_text) == (
        "x",
        ["a", "b"],
        [True, True],
        None,
        False,
    )
    assert tokens.spaces == [bool(t.whitespace_) for t in Doc(Vocab(), words=["a", "b"])]


def test_omitted_spaces_count_toward_the_char_limit(words: SpacyWords) -> None:
    check_doc(DocInput(words=["hello", "world"]), 0, Limits(max_chars_per_doc=12), words, need_sents=False)
    msg = refused(DocInput(words=["hello", "world"]), words, Limits(max_chars_per_doc=11))
    assert msg == "docs[0] text: 12 > max_chars_per_doc (11)"


def test_words_doc_gets_server_sentences_when_needed(words: SpacyWords) -> None:
    doc = DocInput(words=["Hi", ".", "Bye", "."], spaces=[False, True, False, False])
    assert check_doc(doc, 0, LIMITS, words, need_sents=True).sent_starts == [True, False, True, False]


def test_text_doc_is_tokenized_by_spacy(words: SpacyWords) -> None:
    tokens = check_doc(DocInput(text="Don't stop.  Go!"), 0, LIMITS, words, need_sents=True)
    assert tokens.words == ["Do", "n't", "stop", ".", " ", "Go", "!"]
    assert tokens.spaces == [False, True, False, True, False, False, False]
    assert tokens.from_text and tokens.sent_starts is not None and len(tokens.sent_starts) == 7


def test_empty_doc_is_valid(words: SpacyWords) -> None:
    tokens = check_doc(DocInput(), 0, LIMITS, words, need_sents=False)
    assert tokens.words == [] and tokens.spaces == []


def test_pieces_window_too_large() -> None:
    check_options(EmbedOptions(spans=SpanSpec.parse("pieces:510:96")), max_length=512, n_special=2, n_layers=6)
    assert (
        options_refused("pieces:511:96")
        == "options.spans.window: 511 > the model's max_length less its special pieces (510)"
    )


def test_pieces_stride_over_window() -> None:
    assert (
        options_refused("pieces:10:20")
        == "options.spans: pieces:10:20 has stride 20 > window 10 (pieces would be skipped)"
    )
    check_options(EmbedOptions(spans=SpanSpec.parse("tokens:10:20")), max_length=512, n_special=2, n_layers=6)


@pytest.mark.parametrize("spans", ["tokens:0:96", "tokens:128:0", "pieces:0:0"])
def test_zero_window_or_stride(spans: str) -> None:
    assert options_refused(spans) == f"options.spans: {spans} needs window >= 1 and stride >= 1"


@pytest.mark.parametrize("layer", [7, -8, 100])
def test_hidden_layer_out_of_range(layer: int) -> None:
    assert options_refused(hidden_layers=(0, layer)) == f"options.hidden_layers[1]: {layer} is outside [-7, 6]"


def test_hidden_layers_in_range() -> None:
    check_options(EmbedOptions(hidden_layers=(0, 6, -1, -7)), max_length=512, n_special=2, n_layers=6)
