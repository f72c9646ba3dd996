"""R10 validation: a catalogue of hand-written malformed inputs against the real all-MiniLM-L6-v2.

Figures (docs/reliability.md): INVALID_ARGUMENT naming field, size and limit; no traceback, path or long
input echoed; the server stays SERVING; other clients' rows unchanged; empty doc -> OK (0, width);
zero docs -> OK, empty; invalid UTF-8 and corrupt protobuf -> INVALID_ARGUMENT; no response
message over 4 MiB. Requests go as raw bytes (an identity serializer), so the catalogue can hold
what no client would build. Hypothesis and atheris cover the same path in test_fuzz.py.
"""

from __future__ import annotations

import re
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import grpc
import numpy as np
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc

from tokvec import Client
from tokvec.v1 import tokvec_pb2 as pb

INVALID = grpc.StatusCode.INVALID_ARGUMENT
MiB = 1024 * 1024
WIDTH = 384
SERVICE = "/tokvec.v1.EmbedService/"
ECHO = 51  # echoing more than 50 characters of the caller's input counts as a leak
LEAKS = re.compile(
    r"Traceback|File \"|\b[A-Z]\w*(Error|Exception)\b|(?:/[\w.\-]+){2,}|\\\\|\.py\b|site-packages|0x[0-9a-f]{6,}"
)


def malformed(kind: str) -> str:
    return re.escape(f"request: not a valid {kind} message (corrupt protobuf or invalid UTF-8)")


def varint(n: int) -> bytes:
    out = bytearray()
    while True:
        byte, n = n & 0x7F, n >> 7
        out.append(byte | (0x80 if n else 0))
        if not n:
            return bytes(out)


def ld(number: int, payload: bytes) -> bytes:
    """A length-delimited protobuf field (strings, bytes, messages)."""
    return varint(number << 3 | 2) + varint(len(payload)) + payload


def embed(*docs: pb.Doc, spans: tuple[int, int, int] | None = None, **options: Any) -> bytes:
    if spans is not None:
        options["spans"] = pb.Spans(kind=spans[0], window=spans[1], stride=spans[2])
    return bytes(pb.EmbedRequest(docs=list(docs), options=pb.EmbedOptions(**options)).SerializeToString())


def doc(*words: str, **kw: Any) -> pb.Doc:
    return pb.Doc(words=list(words), **kw)


def raw_embed_doc(**fields: bytes) -> bytes:
    """An EmbedRequest with one Doc whose fields are raw bytes (numbers: id 1, words 2, text 4, lang 6)."""
    numbers = {"id": 1, "words": 2, "text": 4, "lang": 6}
    return ld(2, b"".join(ld(numbers[k], v) for k, v in fields.items()))


HELLO = doc("Hello", "world", spaces=[True, False])
VALID = embed(HELLO)
TOKENS, PIECES = pb.Spans.KIND_TOKENS, pb.Spans.KIND_PIECES


@dataclass
class Case:
    name: str
    payload: bytes | list[bytes]  # one request, or the messages of a stream
    expect: str = ""  # a full-match regex for the error message; "" = accepted
    where: str = "status"  # status: the call fails; doc: in-band errors at ``bad``; ok: accepted
    bad: tuple[int, ...] = (0,)
    method: str = "Embed"
    rows: tuple[int, ...] = ()  # ok: rows per doc
    answered: int = 0  # status: docs answered (without error) before the call failed


def limit(field_: str, size: int, name: str, value: int) -> str:
    return re.escape(f"{field_}: {size} > {name} ({value})")


CATALOGUE: list[Case] = [
    # ---- request level: the whole call is refused
    Case("too-many-docs", embed(*[doc("a")] * 1025), limit("docs", 1025, "max_docs_per_request", 1024)),
    Case("pooling-enum", embed(HELLO, pooling=99), re.escape("options.pooling: 99 is not a Pooling value")),
    Case("pooling-negative", embed(HELLO, pooling=-1), re.escape("options.pooling: -1 is not a Pooling value")),
    Case("dtype-enum", embed(HELLO, dtype=42), re.escape("options.dtype: 42 is not a DType value")),
    Case(
        "spans-kind-enum", embed(HELLO, spans=(9, 0, 0)), re.escape("options.spans.kind: 9 is not a Spans.Kind value")
    ),
    Case("outputs-enum", embed(HELLO, outputs=[1, 9]), re.escape("options.outputs: 9 is not an Output value")),
    Case("outputs-unspecified", embed(HELLO, outputs=[0]), re.escape("options.outputs: 0 is not an Output value")),
    Case(
        "tokens-window-zero",
        embed(HELLO, spans=(TOKENS, 0, 96)),
        re.escape("options.spans: tokens:0:96 needs window >= 1 and stride >= 1"),
    ),
    Case(
        "tokens-stride-zero",
        embed(HELLO, spans=(TOKENS, 128, 0)),
        re.escape("options.spans: tokens:128:0 needs window >= 1 and stride >= 1"),
    ),
    Case(
        "pieces-window-zero",
        embed(HELLO, spans=(PIECES, 0, 0)),
        re.escape("options.spans: pieces:0:0 needs window >= 1 and stride >= 1"),
    ),
    Case(
        "pieces-stride-over-window",
        embed(HELLO, spans=(PIECES, 64, 96)),
        re.escape("options.spans: pieces:64:96 has stride 96 > window 64 (pieces would be skipped)"),
    ),
    Case(
        "pieces-window-over-model",
        embed(HELLO, spans=(PIECES, 600, 100)),
        limit("options.spans.window", 600, "the model's max_length less its special pieces", 510),
    ),
    Case(
        "pieces-window-uint32-max",
        embed(HELLO, spans=(PIECES, 2**32 - 1, 1)),
        limit("options.spans.window", 2**32 - 1, "the model's max_length less its special pieces", 510),
    ),
    Case(
        "layer-too-high", embed(HELLO, hidden_layers=[7]), re.escape("options.hidden_layers[0]: 7 is outside [-7, 6]")
    ),
    Case(
        "layer-too-low",
        embed(HELLO, hidden_layers=[0, -8]),
        re.escape("options.hidden_layers[1]: -8 is outside [-7, 6]"),
    ),
    Case(
        "layer-int32-min",
        embed(HELLO, hidden_layers=[-(2**31)]),
        re.escape(f"options.hidden_layers[0]: {-(2**31)} is outside [-7, 6]"),
    ),
    Case(
        "layers-too-many",
        embed(HELLO, hidden_layers=[0] * 8),
        limit("options.hidden_layers", 8, "hidden states of the model", 7),
    ),
    Case(
        "layers-repeated-3000",
        embed(HELLO, hidden_layers=[0] * 3000),
        limit("options.hidden_layers", 3000, "hidden states of the model", 7),
    ),
    Case(
        "model-unknown",
        embed(HELLO, model="nope"),
        re.escape("options.model: 'nope' is not served (served: all-MiniLM-L6-v2)"),
    ),
    Case(
        "model-name-100k",
        embed(HELLO, model="m" * 100_000),
        re.escape(f"options.model: '{'m' * 50}' is not served (served: all-MiniLM-L6-v2)"),
    ),
    Case("corrupt-bytes", b"\xff\xff\xff\xff\xff", malformed("EmbedRequest")),
    Case("truncated", VALID[:-3], malformed("EmbedRequest")),
    Case("length-past-end", varint(2 << 3 | 2) + varint(2**31) + b"\x0a\x01", malformed("EmbedRequest")),
    Case("unmatched-end-group", b"\x0c", malformed("EmbedRequest")),
    Case("unterminated-group", VALID + b"\x0b", malformed("EmbedRequest")),
    Case("varint-overlong", VALID + b"\x80" * 10 + b"\x01", malformed("EmbedRequest")),
    Case("utf8-invalid-word", raw_embed_doc(words=b"\xc3\x28"), malformed("EmbedRequest")),
    Case("utf8-invalid-id", raw_embed_doc(id=b"\xff\xfe", words=b"a"), malformed("EmbedRequest")),
    Case("utf8-invalid-text", raw_embed_doc(text=b"caf\xe9"), malformed("EmbedRequest")),
    Case("utf8-invalid-lang", raw_embed_doc(text=b"hello", lang=b"\x80"), malformed("EmbedRequest")),
    Case("utf8-invalid-model", ld(1, ld(1, b"\xff")) + ld(2, ld(2, b"a")), malformed("EmbedRequest")),
    Case("utf8-surrogate", raw_embed_doc(words=b"\xed\xa0\x80"), malformed("EmbedRequest")),
    Case("utf8-overlong", raw_embed_doc(words=b"\xc0\xaf"), malformed("EmbedRequest")),
    Case("info-corrupt", b"\xff\xff", malformed("InfoRequest"), method="Info"),
    Case("tokenize-corrupt", b"\x1a\x05\x12", malformed("TokenizeRequest"), method="Tokenize"),
    Case(
        "tokenize-too-many-docs",
        pb.TokenizeRequest(docs=[doc("a")] * 1025).SerializeToString(),
        limit("docs", 1025, "max_docs_per_request", 1024),
        method="Tokenize",
    ),
    # A corrupt message ends the stream, after the results of the docs sent before it.
    Case(
        "stream-corrupt-message",
        [VALID, b"\xff\xff\xff"],
        malformed("EmbedStreamRequest"),
        method="EmbedStream",
        answered=1,
    ),
    # ---- doc level: the bad doc fails alone, in-band; the call succeeds
    Case(
        "words-over-limit",
        embed(doc(*["a"] * 16385)),
        limit("docs[0].words", 16385, "max_tokens_per_doc", 16384),
        "doc",
    ),
    Case(
        "bad-doc-at-index-3",
        embed(HELLO, HELLO, HELLO, doc(*["w"] * 20001), HELLO),
        limit("docs[3].words", 20001, "max_tokens_per_doc", 16384),
        "doc",
        (3,),
    ),
    Case("spaces-short", embed(doc("a", "b", spaces=[True])), re.escape("docs[0].spaces: 1 values for 2 words"), "doc"),
    Case(
        "spaces-long",
        embed(doc("a", "b", spaces=[True, True, True])),
        re.escape("docs[0].spaces: 3 values for 2 words"),
        "doc",
    ),
    Case(
        "sent-starts-mismatch",
        embed(doc("a", "b", sent_starts=[True])),
        re.escape("docs[0].sent_starts: 1 values for 2 words"),
        "doc",
    ),
    # No spaces sent: one after every word (spaCy's default).
    Case("word-of-1-mib", embed(doc("w" * MiB)), limit("docs[0] text", MiB + 1, "max_chars_per_doc", 200_000), "doc"),
    Case(
        "words-chars-over-limit",
        embed(doc(*["c" * 2001] * 100)),
        limit("docs[0] text", 200_200, "max_chars_per_doc", 200_000),
        "doc",
    ),
    Case(
        "text-over-limit",
        embed(pb.Doc(text="t" * 200_001)),
        limit("docs[0].text", 200_001, "max_chars_per_doc", 200_000),
        "doc",
    ),
    Case(
        "text-tokens-over-limit",
        embed(pb.Doc(text="a " * 16385)),
        limit("docs[0].text tokens", 16385, "max_tokens_per_doc", 16384),
        "doc",
    ),
    Case("id-too-long", embed(doc("a", id="i" * 257)), limit("docs[0].id", 257, "max_id_chars", 256), "doc"),
    Case("words-and-text", embed(doc("a", text="a")), re.escape("docs[0]: set words or text, not both"), "doc"),
    Case(
        "text-with-spaces",
        embed(pb.Doc(text="a b", spaces=[True])),
        re.escape("docs[0]: spaces and sent_starts need words"),
        "doc",
    ),
    Case(
        "text-with-sent-starts",
        embed(pb.Doc(text="a b", sent_starts=[True])),
        re.escape("docs[0]: spaces and sent_starts need words"),
        "doc",
    ),
    Case(
        "spaces-without-words",
        embed(pb.Doc(spaces=[True, False])),
        re.escape("docs[0]: spaces and sent_starts need words"),
        "doc",
    ),
    Case(
        "lang-uppercase",
        embed(pb.Doc(text="hello", lang="EN")),
        re.escape("docs[0].lang: not a language code (2 or 3 lowercase letters)"),
        "doc",
    ),
    Case(
        "lang-path",
        embed(pb.Doc(text="hello", lang="../../etc/passwd")),
        re.escape("docs[0].lang: not a language code (2 or 3 lowercase letters)"),
        "doc",
    ),
    Case(
        "lang-100k",
        embed(pb.Doc(text="hello", lang="x" * 100_000)),
        re.escape("docs[0].lang: not a language code (2 or 3 lowercase letters)"),
        "doc",
    ),
    Case(
        "lang-unknown",
        embed(pb.Doc(text="hello", lang="zz")),
        re.escape("docs[0].lang: 'zz' is not a language spaCy knows"),
        "doc",
    ),
    Case(
        "lang-without-its-package",
        embed(pb.Doc(text="hello", lang="ja")),
        re.escape("docs[0].lang: 'ja' is not a language spaCy knows"),
        "doc",
    ),
    Case(
        "stream-bad-options",
        [embed(HELLO, HELLO, pooling=99), embed(HELLO)],
        re.escape("options.pooling: 99 is not a Pooling value"),
        "doc",
        (0, 1),
        "EmbedStream",
    ),
    Case(
        "stream-too-many-docs",
        [embed(HELLO), embed(*[doc("a")] * 1025)],
        limit("docs", 1025, "max_docs_per_request", 1024),
        "doc",
        tuple(range(1, 1026)),
        "EmbedStream",
    ),
    # A stream's docs are named by their place in the stream, the index their results carry: here
    # doc 1 of the second message, and a doc past the first max_in_flight_per_stream (256) of one.
    Case(
        "stream-bad-doc-by-stream-index",
        [embed(HELLO, HELLO), embed(HELLO, doc("a", "b", spaces=[True]))],
        re.escape("docs[3].spaces: 1 values for 2 words"),
        "doc",
        (3,),
        "EmbedStream",
    ),
    Case(
        "stream-bad-doc-past-in-flight",
        [embed(HELLO), embed(*[HELLO] * 300, doc("a", "b", spaces=[True]))],
        re.escape("docs[301].spaces: 1 values for 2 words"),
        "doc",
        (301,),
        "EmbedStream",
    ),
    Case(
        "tokenize-bad-doc",
        pb.TokenizeRequest(docs=[HELLO, doc("a", "b", spaces=[True])]).SerializeToString(),
        re.escape("docs[1].spaces: 1 values for 2 words"),
        "doc",
        (1,),
        "Tokenize",
    ),
    # ---- accepted: odd but valid
    Case("empty-doc", embed(pb.Doc()), where="ok", rows=(0,)),
    Case("zero-docs", embed(), where="ok", rows=()),
    Case("empty-words-and-text", embed(pb.Doc(id="e", words=[], text="")), where="ok", rows=(0,)),
    Case(
        "word-of-3000-chars",
        embed(doc("see", "data:image/png;base64," + "iVBORw0KGgo" * 271, ".")),
        where="ok",
        rows=(3,),
    ),
    Case("whitespace-words", embed(doc(" ", "\n\n", "\t", "\u00a0")), where="ok", rows=(4,)),
    Case("control-characters", embed(doc("\x00", "a\x01b", "\u200b", "\U0010ffff")), where="ok", rows=(4,)),
    Case("unknown-field", VALID + ld(99, b"ignored"), where="ok", rows=(2,)),
    Case("group-in-place-of-options", b"\x0b\x0c" + VALID, where="ok", rows=(2,)),
    Case("wrong-wire-type-for-docs", varint(2 << 3) + varint(5) + VALID, where="ok", rows=(2,)),
    Case(
        "all-outputs-and-layers",
        embed(doc(*["word"] * 3000), outputs=[1, 2, 3], hidden_layers=list(range(-7, 0))),
        where="ok",
        rows=(3000,),
    ),
]


def test_catalogue_size() -> None:
    refused = [c for c in CATALOGUE if c.where != "ok"]
    assert len(refused) >= 40, len(refused)
    assert len({c.name for c in CATALOGUE}) == len(CATALOGUE)


@dataclass
class Outcome:
    code: grpc.StatusCode
    details: str
    sizes: list[int] = field(default_factory=list)  # bytes of every response message
    results: list[Any] = field(default_factory=list)  # DocResult (Embed*), TokenizedDoc, or the Info response


def identity(data: bytes) -> bytes:
    return data


def send(channel: grpc.Channel, case: Case) -> Outcome:
    path = SERVICE + case.method
    raw: list[bytes] = []
    try:
        # Responses are kept one by one: a call that fails after some of them still shows them.
        if case.method == "Embed":
            raw.extend(
                channel.unary_stream(path, request_serializer=identity, response_deserializer=identity)(
                    case.payload, timeout=120
                )
            )
        elif case.method == "EmbedStream":
            raw.extend(
                channel.stream_stream(path, request_serializer=identity, response_deserializer=identity)(
                    iter(case.payload), timeout=120
                )
            )
        else:
            raw = [
                channel.unary_unary(path, request_serializer=identity, response_deserializer=identity)(
                    case.payload, timeout=120
                )
            ]
        code, details = grpc.StatusCode.OK, ""
    except grpc.RpcError as exc:
        code, details = exc.code(), exc.details() or ""
    out = Outcome(code, details, [len(r) for r in raw])
    if case.method in ("Embed", "EmbedStream"):
        out.results = [pb.EmbedResponse.FromString(r).result for r in raw]
    elif case.method == "Tokenize":
        out.results = [d for r in raw for d in pb.TokenizeResponse.FromString(r).docs]
    return out


def inputs_of(case: Case) -> list[str]:
    """Every long string the case sends, as text (undecodable bytes become U+FFFD)."""
    payloads = case.payload if isinstance(case.payload, list) else [case.payload]
    found: list[str] = []
    for data in payloads:
        found += [m.decode("utf-8", "replace") for m in re.findall(rb"[\x20-\x7e\x80-\xff]{%d,}" % ECHO, data)]
    return found


def assert_safe(message: str, case: Case) -> None:
    """No traceback, no path, no long echo of the input, short."""
    assert not LEAKS.search(message), f"{case.name}: leaks internals: {message!r}"
    assert len(message) <= 200, f"{case.name}: {len(message)}-character message"
    sent = inputs_of(case)
    for start in range(max(0, len(message) - ECHO + 1)):
        window = message[start : start + ECHO]
        assert not any(window in s for s in sent), f"{case.name}: echoes {ECHO}+ characters of the input: {message!r}"


def first_chunks(results: list[Any]) -> list[Any]:
    """One DocResult per doc (the first chunk of each)."""
    out, more = [], False
    for r in results:
        if not more:
            out.append(r)
        more = r.more
    return out


@pytest.fixture(scope="module")
def channel(minilm: Any) -> Iterator[grpc.Channel]:
    # gRPC's default 4 MiB receive limit: a response message over it would fail the call.
    with grpc.insecure_channel(minilm.address) as ch:
        yield ch


class Bystander:
    """Another client embedding the same docs all along: its rows must not move."""

    def __init__(self, address: str, docs: list[dict[str, Any]]) -> None:
        self.client = Client(address)
        self.docs = docs
        self.reference = self.client.embed(docs)
        self.rounds = 0
        self.problems: list[str] = []
        self._stop = threading.Event()
        self.thread = threading.Thread(target=self._loop, daemon=True)
        self.thread.start()

    def _loop(self) -> None:
        while not self._stop.is_set():
            try:
                got = self.client.embed(self.docs)
            except Exception as exc:  # noqa: BLE001 (any failure is a finding)
                self.problems.append(f"{type(exc).__name__}: {exc}")
                continue
            diff = max(float(np.abs(a - b).max()) for a, b in zip(got, self.reference))
            if diff > 1e-5:
                self.problems.append(f"rows moved by {diff:.2e}")
            self.rounds += 1

    def stop(self) -> None:
        self._stop.set()
        self.thread.join(30)
        self.client.close()


@pytest.fixture(scope="module")
def bystander(minilm: Any, ewt_docs: list[dict[str, Any]]) -> Iterator[Bystander]:
    b = Bystander(minilm.address, ewt_docs[:3])
    yield b
    b.stop()


@pytest.mark.parametrize("case", CATALOGUE, ids=lambda c: c.name)
def test_malformed_input(channel: grpc.Channel, bystander: Bystander, case: Case) -> None:
    out = send(channel, case)
    assert all(size < 4 * MiB for size in out.sizes), f"a response message of {max(out.sizes)} bytes"
    if case.where == "status":
        assert out.code == INVALID, f"{case.name}: {out.code.name} {out.details!r}"
        assert re.fullmatch(case.expect, out.details), f"{case.name}: {out.details!r}"
        assert_safe(out.details, case)
        answered = first_chunks(out.results)
        assert [(r.index, r.HasField("error")) for r in answered] == [(i, False) for i in range(case.answered)], (
            case.name
        )
    else:
        assert out.code == grpc.StatusCode.OK, f"{case.name}: {out.code.name} {out.details!r}"
        docs = first_chunks(out.results) if case.method != "Tokenize" else out.results
        bad = set(case.bad) if case.where == "doc" else set()
        for i, result in enumerate(docs):
            if case.method != "Tokenize":
                assert result.index == i, f"{case.name}: doc {i} came back as index {result.index}"
            if i in bad:
                assert result.error.code == INVALID.value[0], f"{case.name}: doc {i}: {result.error}"
                assert re.fullmatch(case.expect, result.error.message), f"{case.name}: {result.error.message!r}"
                assert_safe(result.error.message, case)
            else:
                assert not result.HasField("error"), f"{case.name}: doc {i} failed: {result.error.message}"
        if case.where == "doc":
            assert bad <= set(range(len(docs)))
        if case.where == "ok":
            assert tuple(r.n_tokens for r in docs) == case.rows
            sums = [sum(r.tokens.shape[0] for r in out.results if r.index == d.index) for d in docs]
            assert tuple(sums) == case.rows and all(r.tokens.shape[1] == WIDTH for r in out.results if r.tokens.shape)
    health = health_pb2_grpc.HealthStub(channel).Check(
        health_pb2.HealthCheckRequest(service="tokvec.v1.EmbedService"), timeout=10
    )
    assert health.status == health_pb2.HealthCheckResponse.SERVING


def test_bystander_rows_unchanged(minilm: Any, bystander: Bystander) -> None:
    """Runs after the catalogue (file order): the other client saw no error and no moved row."""
    assert minilm.proc.poll() is None, "the server died"
    assert bystander.rounds >= 5, bystander.rounds
    assert not bystander.problems, bystander.problems[:3]
    print(
        f"R10: {sum(c.where != 'ok' for c in CATALOGUE)} malformed + {sum(c.where == 'ok' for c in CATALOGUE)} odd-but-valid inputs; "
        f"bystander made {bystander.rounds} calls, 0 errors, rows within 1e-5"
    )
