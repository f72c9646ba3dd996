"""R8 isolation: a poison doc in batches of 2-32 docs from 8 clients.

Figures (docs/reliability.md): the batch is bisected, only the poison doc fails (in-band, its own
status), 0 collateral failures, survivors' rows <= 1e-5 from solo runs; a NaN/Inf output fails
that doc alone. Quick tier: 100 batches per fault on the fake runner; slow tier: 1,000. The real
all-MiniLM-L6-v2 (in-process, its forward wrapped to fail on a marker piece) shows it too.

Every batch is composed by the test (faultkit.Batches): all the round's docs are queued, then
flushed as one batch, and the model's first call of the round must hold all of them.
"""

from __future__ import annotations

import random
import re
from collections import defaultdict
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

import grpc
import numpy as np
import pytest
import torch
from faultkit import Batches, Doc, DocMaker, channels, embed_call, fake_server, results, rows, stop
from serving import ServerThread

from tokvec.v1 import tokvec_pb2 as pb
from tokvec_server.batching.worker import ModelWorker
from tokvec_server.runners.batch import Batch
from tokvec_server.settings import ModelSettings, Settings

TOLERANCE = 1e-5
INTERNAL = grpc.StatusCode.INTERNAL.value[0]
RAISED = re.compile(r"^model failure \(error id [0-9a-f]{12}\)$")
NON_FINITE = "the model produced non-finite values for this doc"


def holding(batch: Batch, piece: int) -> torch.Tensor:
    """Every piece of the spans that hold ``piece``. Shape: (n_pieces,) bool"""
    span = batch.span_index()
    return torch.from_numpy(np.isin(span, span[batch.ids == piece]))


@dataclass
class Report:
    batches: int = 0
    batch_sizes: list[int] = field(default_factory=list)
    collateral: list[str] = field(default_factory=list)  # a doc that failed but was not the poison
    poison: list[str] = field(default_factory=list)  # the poison doc's outcome when it was wrong
    max_diff: float = 0.0


def run_rounds(
    kit: Batches,
    chans: list[grpc.Channel],
    pool: list[Doc],
    solo: dict[str, np.ndarray],
    make_poison: Callable[[random.Random], Doc],
    expect: Callable[[pb.DocResult], bool],
    n_batches: int,
    seed: int,
    calls: list[list[int]],
    options: pb.EmbedOptions | None = None,
) -> Report:
    """n_batches rounds of one batch each: 1-31 docs from the pool and one poison doc, spread
    over the 8 clients. ``calls`` is the model's call log (first piece of each row)."""
    rng = random.Random(seed)
    report = Report()
    kit.hold()
    try:
        for _ in range(n_batches):
            docs = rng.sample(pool, rng.randint(1, 31))
            bad = make_poison(rng)
            docs.insert(rng.randint(0, len(docs)), bad)
            by_client: dict[int, list[Doc]] = defaultdict(list)
            for doc in docs:
                by_client[rng.randrange(len(chans))].append(doc)
            first_call = len(calls)
            before = kit.queued_docs()
            started = [(embed_call(chans[c], mine, options), mine) for c, mine in by_client.items()]
            kit.wait_queued(before + len(docs))
            kit.flush()
            for call, mine in started:
                for doc, result in zip(mine, results(call), strict=True):
                    if doc is bad:
                        if not expect(result):
                            report.poison.append(f"{result.error.code}: {result.error.message!r}")
                    elif result.HasField("error"):
                        report.collateral.append(f"{doc.id}: {result.error.message}")
                    else:
                        report.max_diff = max(report.max_diff, float(np.abs(rows(result) - solo[doc.id]).max()))
            report.batches += 1
            report.batch_sizes.append(len(calls[first_call]) if len(calls) > first_call else 0)
            assert report.batch_sizes[-1] == len(docs), "the round's docs did not go as one batch"
    finally:
        kit.open()
    return report


def check(report: Report, n_batches: int) -> None:
    assert report.batches == n_batches
    assert not report.collateral, f"{len(report.collateral)} collateral failures, e.g. {report.collateral[:3]}"
    assert not report.poison, f"poison doc outcomes: {report.poison[:3]}"
    assert report.max_diff <= TOLERANCE, f"survivors moved {report.max_diff:.2e} from solo"
    assert min(report.batch_sizes) >= 2 and max(report.batch_sizes) <= 32


# ---------------------------------------------------------------- the fake runner


@pytest.fixture(scope="module")
def server() -> Iterator[ServerThread]:
    with fake_server() as srv:
        yield srv


@pytest.fixture(scope="module")
def maker(server: ServerThread) -> DocMaker:
    return DocMaker(server.runner.tokenizer, seed=21)


@pytest.fixture(scope="module")
def pool(server: ServerThread, maker: DocMaker) -> tuple[list[Doc], dict[str, np.ndarray]]:
    """Docs for the batch-mates, with their solo rows."""
    docs = [maker.doc(random.Random(i).randint(1, 24)) for i in range(120)]
    return docs, Batches(server).solo(docs)


@pytest.fixture
def chans(server: ServerThread) -> Iterator[list[grpc.Channel]]:
    chans = channels(server.address, 8)
    yield chans
    for ch in chans:
        ch.close()


def inject(
    server: ServerThread, maker: DocMaker, kind: str, monkeypatch: pytest.MonkeyPatch
) -> tuple[Callable[[random.Random], Doc], Callable[[pb.DocResult], bool]]:
    """Arm one fault on a fresh marker word; poison docs carry that word somewhere after their key."""
    word, piece = maker.reserve()
    faults = server.runner.faults
    if kind == "raise":
        monkeypatch.setattr(faults, "poison_id", piece)
    elif kind == "nan":
        monkeypatch.setattr(faults, "nan_id", piece)
    else:  # inf: the fake has no hook for it, so wrap its forward
        forward = server.runner.forward

        def with_inf(batch: Batch, layers: tuple[int, ...]) -> Any:
            hidden, chosen = forward(batch, layers)
            hidden[holding(batch, piece)] = float("inf")
            return hidden, chosen

        monkeypatch.setattr(server.runner, "forward", with_inf)

    def expect(result: pb.DocResult) -> bool:
        message = result.error.message
        ok = RAISED.match(message) if kind == "raise" else message == NON_FINITE
        return result.error.code == INTERNAL and bool(ok) and not result.HasField("tokens")

    return (lambda rng: maker.doc(rng.randint(1, 12), insert=word)), expect


@pytest.mark.parametrize("kind", ["raise", "nan", "inf"])
def test_poison_fails_alone(
    server: ServerThread,
    maker: DocMaker,
    pool: tuple[list[Doc], dict[str, np.ndarray]],
    chans: list[grpc.Channel],
    kind: str,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    make_poison, expect = inject(server, maker, kind, monkeypatch)
    kit = Batches(server)
    splits = kit.engine.worker.stats["bisections"]
    report = run_rounds(
        kit, chans, pool[0], pool[1], make_poison, expect, 100, seed=hash(kind) % 1000, calls=kit.faults.calls
    )
    check(report, 100)
    if kind == "raise":
        assert kit.engine.worker.stats["bisections"] - splits >= 100  # bisected, not luck
    print(
        f"R8 fake {kind}: {report.batches} batches of {min(report.batch_sizes)}-{max(report.batch_sizes)} docs, "
        f"0 collateral, survivors max |diff| {report.max_diff:.1e}"
    )


@pytest.mark.slow
@pytest.mark.parametrize("kind", ["raise", "nan"])
def test_poison_fails_alone_1000(
    server: ServerThread,
    maker: DocMaker,
    pool: tuple[list[Doc], dict[str, np.ndarray]],
    chans: list[grpc.Channel],
    kind: str,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    make_poison, expect = inject(server, maker, kind, monkeypatch)
    kit = Batches(server)
    report = run_rounds(kit, chans, pool[0], pool[1], make_poison, expect, 1000, seed=7, calls=kit.faults.calls)
    check(report, 1000)


def test_non_finite_outside_the_token_rows_still_fails_the_doc(
    server: ServerThread,
    maker: DocMaker,
    pool: tuple[list[Doc], dict[str, np.ndarray]],
    chans: list[grpc.Channel],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """NaN only in the [CLS] row: no token row pools it, but the doc vector and the piece rows
    would carry it to the caller. The doc must fail alone all the same."""
    word, piece = maker.reserve()
    forward = server.runner.forward

    def nan_at_cls(batch: Batch, layers: tuple[int, ...]) -> Any:
        hidden, chosen = forward(batch, layers)
        cls = holding(batch, piece) & torch.from_numpy(batch.positions() == 0)
        hidden[cls] = float("nan")
        return hidden, [c.clone() for c in chosen]

    monkeypatch.setattr(server.runner, "forward", nan_at_cls)
    options = pb.EmbedOptions(outputs=[pb.OUTPUT_TOKENS, pb.OUTPUT_DOC_VECTOR, pb.OUTPUT_PIECES])
    kit = Batches(server)
    report = run_rounds(
        kit,
        chans,
        pool[0],
        pool[1],
        lambda rng: maker.doc(rng.randint(1, 12), insert=word),
        lambda r: r.error.code == INTERNAL and r.error.message == NON_FINITE,
        10,
        seed=3,
        calls=kit.faults.calls,
        options=options,
    )
    check(report, 10)


def test_negative_control_without_bisection_the_batch_fails_together(
    server: ServerThread,
    maker: DocMaker,
    pool: tuple[list[Doc], dict[str, np.ndarray]],
    chans: list[grpc.Channel],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Switch bisection off (a failed batch fails every doc in it): the same check must fail."""

    def fail_whole_batch(self: ModelWorker, spans: list[Any]) -> None:
        try:
            self.runner.forward(Batch.of([s.ids for s in spans]), ())
        except Exception as exc:
            for span in spans:
                self._fail_alone(span, exc, False, 0)
            return
        original(self, spans)

    original = ModelWorker._attempt
    monkeypatch.setattr(ModelWorker, "_attempt", fail_whole_batch)
    make_poison, expect = inject(server, maker, "raise", monkeypatch)
    kit = Batches(server)
    report = run_rounds(kit, chans, pool[0], pool[1], make_poison, expect, 5, seed=1, calls=kit.faults.calls)
    with pytest.raises(AssertionError, match="collateral failures"):
        check(report, 5)


# ---------------------------------------------------------------- the real model


@pytest.fixture(scope="module")
def real() -> Iterator[ServerThread]:
    server = ServerThread(Settings(models=(ModelSettings(device="cpu"),)))
    yield server
    stop(server)


@pytest.mark.parametrize("kind", ["raise", "nan"])
def test_poison_fails_alone_on_minilm(
    real: ServerThread, ewt_docs: list[dict[str, Any]], kind: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    maker = DocMaker(real.runner.tokenizer, seed=5)
    ewt_words = {w.lower() for d in ewt_docs for w in d["words"]}
    word, piece = maker.reserve()
    while word in ewt_words:
        word, piece = maker.reserve()
    pool = [
        Doc(f"ewt-{i}", d["words"][:40], spaces=d["spaces"][:40]) for i, d in enumerate(ewt_docs[:64]) if d["words"]
    ]
    kit = Batches(real)
    solo = kit.solo(pool)
    calls: list[list[int]] = []
    forward = real.runner.forward

    def faulty(batch: Batch, layers: tuple[int, ...]) -> Any:
        calls.append(batch.ids[batch.starts[:-1] + 1].tolist())
        hit = holding(batch, piece)
        if kind == "raise" and bool(hit.any()):
            raise RuntimeError("poisoned batch")
        hidden, chosen = forward(batch, layers)
        if kind == "nan":
            hidden[hit] = float("nan")
        return hidden, chosen

    monkeypatch.setattr(real.runner, "forward", faulty)

    def make_poison(rng: random.Random) -> Doc:
        d = rng.choice(pool)
        at = rng.randint(1, len(d.words))
        spaces = list(d.spaces or [])
        spaces[at - 1] = True  # else the marker glues onto the word before it: other pieces
        return Doc(
            f"poison-{rng.random()}", d.words[:at] + [word] + d.words[at:], spaces=spaces[:at] + [True] + spaces[at:]
        )

    def expect(result: pb.DocResult) -> bool:
        ok = RAISED.match(result.error.message) if kind == "raise" else result.error.message == NON_FINITE
        return result.error.code == INTERNAL and bool(ok)

    chans = channels(real.address, 8)
    try:
        report = run_rounds(kit, chans, pool, solo, make_poison, expect, 12, seed=9, calls=calls)
    finally:
        for ch in chans:
            ch.close()
    print(
        f"R8 MiniLM {kind}: {report.batches} batches of {min(report.batch_sizes)}-{max(report.batch_sizes)} docs, "
        f"0 collateral, survivors max |diff| {report.max_diff:.1e}"
    )
    check(report, 12)
