"""R3 cancellation: random cancels against a gated model.

Figures (docs/reliability.md): 0 cancelled docs reach the model; queued work freed within 20 ms p99;
batch-mates of a cancelled doc get rows identical to a solo run; every request completes exactly
once. The quick tier makes ~200 cancels, the slow tier 1,000.

Each round closes the model's gate and holds it with a plug batch, so that every other doc waits
where docs wait while the model is busy: in the scheduler's queue. Then a random 60% of the calls
are cancelled by the client (RST_STREAM over the wire), the gate opens, the survivors run in
batches without the cancelled docs, and everything is checked.
"""

from __future__ import annotations

import random
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import grpc
import numpy as np
import pytest
from faultkit import Batches, Doc, DocMaker, channels, embed_call, fake_server, results, rows, wait_until

from tokvec_server.engine import Engine

P99_FREE_S = 0.020


@dataclass
class Call:
    docs: list[Doc]
    call: Any = None
    cancelled: bool = False


@dataclass
class Report:
    cancels: int = 0
    free_latencies: list[float] = field(default_factory=list)  # seconds until the queue let go of a cancelled call
    reached_model: set[str] = field(default_factory=set)  # ids of cancelled docs the model ran
    completions: list[str] = field(default_factory=list)  # problems with how calls ended
    row_diffs: list[float] = field(default_factory=list)  # survivors vs solo, max |diff| per doc
    leftover: tuple[int, int] = (0, 0)


@pytest.fixture(scope="module")
def server() -> Iterator[Any]:
    with fake_server() as srv:
        yield srv


class CancelKit(Batches):
    """Batches, plus the ids of the docs whose cancel the server has noticed."""

    def __init__(self, server: Any) -> None:
        super().__init__(server)
        self.noticed: set[str] = set()


@pytest.fixture
def kit(server: Any) -> Iterator[CancelKit]:
    kit = CancelKit(server)
    engine = kit.engine
    original = engine._on_done

    def observed(job: Any, future: Any) -> None:
        # Watch (never change) the server noticing a cancel, so the round knows when every
        # client cancel has landed before it opens the gate.
        original(job, future)
        if future.cancelled():
            kit.noticed.add(job.doc.id)

    engine._on_done = observed  # an instance attribute: the class keeps its own method
    yield kit
    engine.__dict__.pop("_on_done", None)
    kit.open()
    kit.faults.calls.clear()


def cancel_round(
    kit: CancelKit,
    chans: list[grpc.Channel],
    maker: DocMaker,
    rng: random.Random,
    report: Report,
    free_timeout: float = 2.0,
    notice_timeout: float = 5.0,
) -> None:
    kit.faults.calls.clear()
    kit.noticed.clear()
    plug = kit.fill_pipeline(chans[0], [maker.doc(3)])
    calls = [Call([maker.doc() for _ in range(rng.randint(1, 3))]) for _ in range(24)]
    for c in calls:
        c.call = embed_call(rng.choice(chans), c.docs)
    kit.wait_queued(sum(len(c.docs) for c in calls))

    order = [c for c in calls if rng.random() < 0.6]
    rng.shuffle(order)
    for c in order:
        before = kit.queued_docs()
        c.call.cancel()
        c.cancelled = True
        report.cancels += 1
        goal = before - len(c.docs)
        try:
            report.free_latencies.append(
                wait_until(lambda: kit.queued_docs() <= goal, free_timeout, "the queue to let go")
            )
        except AssertionError:
            report.free_latencies.append(float("inf"))
            free_timeout = 0.01  # already failed: do not spend the whole tier finding out again
    cancelled_ids = {d.id for c in order for d in c.docs}
    # Every cancel has reached the server before the model runs again (else the test would race).
    try:
        wait_until(lambda: cancelled_ids <= kit.noticed, notice_timeout, "the server to notice every cancel")
    except AssertionError:
        pass  # reported below as docs that reached the model, if they did
    kit.open()

    survivors = [c for c in calls if not c.cancelled]
    got: dict[int, list[Any]] = {}
    for c in [*plug, *(s.call for s in survivors)]:
        try:
            got[id(c)] = results(c)
        except grpc.RpcError as exc:
            report.completions.append(f"survivor ended {exc.code().name}")
    for s in survivors:
        out = got.get(id(s.call), [])
        if [r.id for r in out] != [d.id for d in s.docs] or [r.index for r in out] != list(range(len(s.docs))):
            report.completions.append(f"survivor got {[(r.index, r.id) for r in out]}, wanted {[d.id for d in s.docs]}")
        if any(r.HasField("error") for r in out):
            report.completions.append(f"survivor doc failed: {[r.error.message for r in out if r.HasField('error')]}")
    for c in order:
        if c.call.code() != grpc.StatusCode.CANCELLED:
            report.completions.append(f"cancelled call ended {c.call.code().name}")
    wait_until(lambda: kit.scheduler.queued == (0, 0), 5.0, "an empty queue")

    seen = kit.seen()
    report.reached_model |= {d.id for c in order for d in c.docs if d.key in seen}
    # The survivors ran with the cancelled docs taken out of their batches: their rows must not move.
    by_id = {r.id: rows(r) for s in survivors for r in got.get(id(s.call), [])}
    solo = kit.solo([d for s in survivors for d in s.docs if d.id in by_id])
    report.row_diffs += [float(np.abs(by_id[i] - solo[i]).max()) for i in solo]
    report.leftover = kit.scheduler.queued


def check(report: Report, n_cancels: int) -> None:
    assert report.cancels >= n_cancels
    assert not report.reached_model, f"{len(report.reached_model)} cancelled docs reached the model"
    assert not report.completions, report.completions[:5]
    p99 = float(np.percentile(report.free_latencies, 99))
    assert p99 <= P99_FREE_S, f"queued work freed in {p99 * 1000:.1f} ms p99 > 20 ms"
    assert report.row_diffs and max(report.row_diffs) == 0.0, f"batch-mates moved by {max(report.row_diffs):.2e}"
    assert report.leftover == (0, 0)


def run_cancels(server: Any, kit: CancelKit, n_cancels: int, seed: int, free_timeout: float = 2.0) -> Report:
    maker = DocMaker(server.runner.tokenizer, seed)
    rng = random.Random(seed)
    report = Report()
    chans = channels(server.address, 8)
    try:
        while report.cancels < n_cancels:
            cancel_round(kit, chans, maker, rng, report, free_timeout, notice_timeout=free_timeout)
    finally:
        for ch in chans:
            ch.close()
    return report


def test_random_cancels_quick(server: Any, kit: CancelKit) -> None:
    report = run_cancels(server, kit, 200, seed=3)
    check(report, 200)
    print(
        f"R3 quick: {report.cancels} cancels, free p99 {np.percentile(report.free_latencies, 99) * 1000:.2f} ms "
        f"over {len(report.free_latencies)} queued cancels, {len(report.row_diffs)} survivors identical to solo"
    )


@pytest.mark.slow
def test_random_cancels_1000(server: Any, kit: CancelKit) -> None:
    report = run_cancels(server, kit, 1000, seed=4)
    check(report, 1000)
    print(f"R3 slow: {report.cancels} cancels, free p99 {np.percentile(report.free_latencies, 99) * 1000:.2f} ms")


def test_negative_control_cancel_propagation_off(server: Any, kit: CancelKit, monkeypatch: pytest.MonkeyPatch) -> None:
    """With the engine no longer telling the queue and the worker about a cancelled future, the
    same round must fail: cancelled docs reach the model and queued work is never freed."""
    monkeypatch.setattr(Engine, "_on_done", lambda self, job, future: None)
    kit.engine.__dict__.pop("_on_done", None)  # the observer wraps the class method: drop it
    report = run_cancels(server, kit, 10, seed=5, free_timeout=0.1)
    with pytest.raises(AssertionError, match="reached the model"):
        check(report, 10)
    assert report.reached_model and max(report.free_latencies) == float("inf")
