"""Check every doc and option against the limits before any work is queued.

A bad doc fails alone with a message naming the field, its size and the limit; the other docs
of the request go on. Messages never echo long input.
"""

from __future__ import annotations

import re
import threading
from typing import Any

from tokvec_server.alignment.chunks import token_ranges
from tokvec_server.errors import InvalidInput, limit_error
from tokvec_server.settings import Limits
from tokvec_server.types import DocInput, EmbedOptions, Output, Pooling, Tokens

_LANG = re.compile(r"^[a-z]{2,3}$")
RENEW_AFTER = 20_000  # new strings a spaCy pipeline may intern before it is replaced


class SpacyWords:
    """spaCy's rule-based tokenizer (and sentencizer) per language, made on first use.

    spaCy is imported lazily so a server that only ever sees words never pays for it; a lock
    guards the tokenizer's caches, which are not meant for concurrent mutation.
    """

    def __init__(self) -> None:
        self._nlp: dict[str, Any] = {}
        self._fresh: dict[str, int] = {}  # strings in each pipeline's vocab when it was made
        self._lock = threading.Lock()

    def _get(self, lang: str, field: str) -> Any:
        nlp = self._nlp.get(lang)
        # spaCy interns the text of every new token in the vocab for good: about 430 MB per
        # million distinct tokens (measured), so a server fed varied text would grow without
        # bound. A pipeline that has interned RENEW_AFTER strings is made afresh (about 0.1 s;
        # tokens and sentence starts do not depend on what the vocab has seen).
        if nlp is None or len(nlp.vocab.strings) > self._fresh[lang] + RENEW_AFTER:
            import spacy

            try:
                nlp = spacy.blank(lang)
            except ImportError:
                raise InvalidInput(f"{field}: {lang!r} is not a language spaCy knows") from None
            nlp.add_pipe("sentencizer")
            self._nlp[lang] = nlp
            self._fresh[lang] = len(nlp.vocab.strings)
        return nlp

    def tokenize(self, text: str, lang: str, field: str) -> tuple[list[str], list[bool], list[bool]]:
        with self._lock:
            doc = self._get(lang, field)(text)
        return [t.text for t in doc], [bool(t.whitespace_) for t in doc], [t.is_sent_start for t in doc]

    def sent_starts(self, words: list[str], spaces: list[bool]) -> list[bool]:
        from spacy.tokens import Doc

        # spaCy's Doc refuses an empty word (a ValueError that would reach the caller as INTERNAL).
        # "_" is punctuation but not sentence-final: the sentencizer neither starts nor ends a
        # sentence at it, so it stands in for an empty word without moving a boundary.
        words = [w or "_" for w in words]
        with self._lock:
            nlp = self._get("en", "sent_starts")
            doc = nlp.get_pipe("sentencizer")(Doc(nlp.vocab, words=words, spaces=spaces))
        return [bool(t.is_sent_start) for t in doc]


def check_request(n_docs: int, limits: Limits) -> None:
    if n_docs > limits.max_docs_per_request:
        raise limit_error("docs", n_docs, "max_docs_per_request", limits.max_docs_per_request)


def check_options(options: EmbedOptions, max_length: int, n_special: int, n_layers: int) -> None:
    spec = options.spans
    if spec.kind in ("tokens", "pieces") and (spec.window < 1 or spec.stride < 1):
        raise InvalidInput(f"options.spans: {spec} needs window >= 1 and stride >= 1")
    if spec.kind == "pieces":
        if spec.stride > spec.window:
            raise InvalidInput(
                f"options.spans: {spec} has stride {spec.stride} > window {spec.window} (pieces would be skipped)"
            )
        room = max_length - n_special
        if spec.window > room:
            raise limit_error(
                "options.spans.window", spec.window, "the model's max_length less its special pieces", room
            )
    # Each requested layer is one more (n_tokens, width) tensor per doc: without a bound, a short
    # request repeating a layer thousands of times asks for gigabytes and messages over 4 MiB.
    if len(options.hidden_layers) > n_layers + 1:
        raise limit_error(
            "options.hidden_layers", len(options.hidden_layers), "hidden states of the model", n_layers + 1
        )
    for i, layer in enumerate(options.hidden_layers):
        if not -(n_layers + 1) <= layer <= n_layers:
            raise InvalidInput(f"options.hidden_layers[{i}]: {layer} is outside [-{n_layers + 1}, {n_layers}]")
    # One tensor per entry: bounded as hidden_layers is (a repeat is never needed).
    if len(options.chunk_poolings) > len(Pooling):
        raise limit_error("options.chunk_poolings", len(options.chunk_poolings), "poolings there are", len(Pooling))


def check_chunks(doc: DocInput, tokens: Tokens, index: int, limits: Limits, options: EmbedOptions) -> Tokens:
    """Set ``tokens.chunks`` to the doc's chunks as token ranges, checked (see alignment/chunks.py)."""
    where = f"docs[{index}]"
    if not (doc.chunk_starts or doc.chunk_ends):
        return tokens
    if Output.CHUNK_VECTORS not in options.outputs:
        raise InvalidInput(f"{where}.chunk_starts: chunks need OUTPUT_CHUNK_VECTORS in options.outputs")
    tokens.chunks = token_ranges(
        doc.chunk_starts, doc.chunk_ends, doc.chunk_unit, tokens.words, tokens.spaces, where, limits.max_chunks_per_doc
    )
    return tokens


def check_doc(doc: DocInput, index: int, limits: Limits, words: SpacyWords, need_sents: bool) -> Tokens:
    """Validate one doc and return its tokens (tokenizing text docs with spaCy).

    ``index`` names the doc in errors: the index its result carries (its place in the request,
    or in the stream for EmbedStream)."""
    where = f"docs[{index}]"
    if len(doc.id) > limits.max_id_chars:
        raise limit_error(f"{where}.id", len(doc.id), "max_id_chars", limits.max_id_chars)
    if doc.words and doc.text:
        raise InvalidInput(f"{where}: set words or text, not both")
    if doc.text or not doc.words:
        return _text_doc(doc, where, limits, words, need_sents)
    n = len(doc.words)
    if n > limits.max_tokens_per_doc:
        raise limit_error(f"{where}.words", n, "max_tokens_per_doc", limits.max_tokens_per_doc)
    for name in ("spaces", "sent_starts"):
        given = len(getattr(doc, name))
        if given and given != n:
            raise InvalidInput(f"{where}.{name}: {given} values for {n} words")
    if limits.max_word_chars:
        longest = max(range(n), key=lambda i: len(doc.words[i]))
        if len(doc.words[longest]) > limits.max_word_chars:
            raise limit_error(
                f"{where}.words[{longest}]", len(doc.words[longest]), "max_word_chars", limits.max_word_chars
            )
    # Omitted spaces mean spaCy's default for Doc(vocab, words): a space after every word. The
    # Python client's word lists have always sent that; the wire now means it too (tokvec.proto).
    spaces = list(doc.spaces) or [True] * n
    chars = sum(len(w) for w in doc.words) + sum(spaces)
    if chars > limits.max_chars_per_doc:
        raise limit_error(f"{where} text", chars, "max_chars_per_doc", limits.max_chars_per_doc)
    sent_starts = list(doc.sent_starts) or None
    if need_sents and sent_starts is None:
        sent_starts = words.sent_starts(list(doc.words), spaces)
    return Tokens(doc.id, list(doc.words), spaces, sent_starts)


def _text_doc(doc: DocInput, where: str, limits: Limits, words: SpacyWords, need_sents: bool) -> Tokens:
    if len(doc.text) > limits.max_chars_per_doc:
        raise limit_error(f"{where}.text", len(doc.text), "max_chars_per_doc", limits.max_chars_per_doc)
    if doc.spaces or doc.sent_starts:
        raise InvalidInput(f"{where}: spaces and sent_starts need words")
    lang = doc.lang or "en"
    if not _LANG.match(lang):
        raise InvalidInput(f"{where}.lang: not a language code (2 or 3 lowercase letters)")
    if not doc.text:
        return Tokens(doc.id, [], [], [] if need_sents else None, from_text=True)
    toks, spaces, starts = words.tokenize(doc.text, lang, f"{where}.lang")
    if len(toks) > limits.max_tokens_per_doc:
        raise limit_error(f"{where}.text tokens", len(toks), "max_tokens_per_doc", limits.max_tokens_per_doc)
    return Tokens(doc.id, toks, spaces, starts if need_sents else None, from_text=True)
