"""R4 deadlines: docs whose deadline passes while queued get DEADLINE_EXCEEDED, and the model
spends 0 calls on them. The model is held (gate closed), so docs wait where they wait while the
model is busy: in the scheduler's queue; or, once taken, in the half of a failed batch that waits
while the other half is retried.

Also the queue timeout (``max_queue_ms``), the same mechanism: RESOURCE_EXHAUSTED, 0 calls.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterator
from typing import Any

import grpc
import numpy as np
import pytest
from faultkit import Batches, Doc, DocMaker, channels, embed_call, fake_server, results, rows, wait_until

from tokvec_server.errors import DeadlineExceeded
from tokvec_server.types import DocInput, EmbedOptions

# How late an expiry may be told while the model is busy (polling and a loaded 2-core machine).
LATE_S = 0.1


@pytest.fixture(scope="module")
def server() -> Iterator[Any]:
    with fake_server() as srv:
        yield srv


@pytest.fixture
def kit(server: Any) -> Iterator[Batches]:
    kit = Batches(server)
    kit.faults.calls.clear()
    yield kit
    kit.open()
    wait_until(lambda: kit.scheduler.queued == (0, 0), 10, "an empty queue")


@pytest.fixture(scope="module")
def maker(server: Any) -> DocMaker:
    return DocMaker(server.runner.tokenizer, seed=11)


def direct(kit: Batches, docs: list[Doc], deadline: float) -> list[asyncio.Future[Any]]:
    """Queue docs through the engine itself (no gRPC call to cancel them): only the deadline acts."""

    async def go() -> list[asyncio.Future[Any]]:
        return list(await kit.engine.embed([DocInput(d.id, d.words) for d in docs], EmbedOptions(), "direct", deadline))

    futures: list[asyncio.Future[Any]] = asyncio.run_coroutine_threadsafe(go(), kit.server.loop).result(10)
    return futures


def outcome(future: asyncio.Future[Any]) -> BaseException | None:
    return future.exception() if not future.cancelled() else asyncio.CancelledError()


def told_deadline(call: Any, n_docs: int) -> str:
    """How the caller learnt of its deadline: the server's own expiry, which fires first, answers
    each doc in-band; gRPC's, when it wins the race, ends the call. Either way DEADLINE_EXCEEDED."""
    try:
        got = results(call)
    except grpc.RpcError as exc:
        assert exc.code() == grpc.StatusCode.DEADLINE_EXCEEDED, exc
        return "call status"
    assert [r.error.code for r in got] == [grpc.StatusCode.DEADLINE_EXCEEDED.value[0]] * n_docs, got
    return "in-band"


def test_wire_deadline_passes_while_queued(server: Any, kit: Batches, maker: DocMaker) -> None:
    chans = channels(server.address, 4)
    plug = kit.fill_pipeline(chans[0], [maker.doc(3)])
    # Docs in the queue behind the held model; half of them have a 0.4 s deadline.
    expiring: list[tuple[Any, list[Doc]]] = []
    patient: list[tuple[Any, list[Doc]]] = []
    last_deadline = 0.0
    for i in range(8):
        docs = [maker.doc() for _ in range(2)]
        timeout = 0.4 if i % 2 else 60.0
        last_deadline = time.perf_counter() + timeout if i % 2 else last_deadline
        (expiring if i % 2 else patient).append((embed_call(chans[i % 4], docs, timeout=timeout), docs))
    kit.wait_queued(16)
    told = [told_deadline(call, len(docs)) for call, docs in expiring]
    # The expired Q docs leave the queue while the model is still held.
    freed = wait_until(lambda: kit.queued_docs() == 8, 5, "expired docs to leave the queue")
    late = time.perf_counter() - last_deadline
    assert late <= LATE_S, f"expired docs freed {late * 1000:.0f} ms after their deadline"
    assert kit.faults.calls == []  # nothing ran yet: the model is held

    kit.open()
    for call in plug:
        results(call)
    got = {r.id: r for call, _ in patient for r in results(call)}
    assert all(not r.HasField("error") for r in got.values())
    seen = kit.seen()
    expired_keys = {d.key for _, docs in expiring for d in docs}
    assert not expired_keys & seen, f"{len(expired_keys & seen)} expired docs reached the model"
    assert {d.key for _, docs in patient for d in docs} <= seen
    solo = kit.solo([d for _, docs in patient for d in docs])
    for doc_id, want in solo.items():
        np.testing.assert_array_equal(rows(got[doc_id]), want)
    print(
        f"R4 wire: 8 expired calls told DEADLINE_EXCEEDED ({', '.join(sorted(set(told)))}), queue freed {late * 1000:.1f} ms after the deadline "
        f"({freed * 1000:.1f} ms of polling), 0 of {len(expired_keys)} expired docs ran"
    )
    for ch in chans:
        ch.close()


def test_engine_deadline_in_queue_and_in_a_split_batch(
    server: Any, kit: Batches, maker: DocMaker, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Without a gRPC call that the deadline cancels, the engine's own deadline must act: in the
    queue, the scheduler wakes for it while the model is busy; in a batch that failed and is being
    split, the worker drops the doc before each half's forward."""
    chans = channels(server.address, 1)
    word, piece = maker.reserve()
    monkeypatch.setattr(kit.faults, "poison_id", piece)
    poison = maker.doc(3, insert=word)
    deadline = time.monotonic() + 0.3
    kit.hold()
    kit.faults.gate.clear()
    # One batch, held at the gate: a poison doc (its forward fails) and four docs that expire.
    plug = embed_call(chans[0], [poison])
    in_batch = direct(kit, [maker.doc() for _ in range(4)], deadline)
    kit.wait_queued(5)
    kit.flush()
    queued = [maker.doc() for _ in range(4)]
    in_queue = direct(kit, queued, deadline)
    kit.wait_queued(4)

    waited = wait_until(lambda: all(f.done() for f in in_queue), 5, "queued docs to expire")
    late = time.monotonic() - deadline
    assert late <= LATE_S, f"DeadlineExceeded told {late * 1000:.0f} ms after the deadline"
    assert all(isinstance(outcome(f), DeadlineExceeded) for f in in_queue)
    assert kit.queued_docs() == 0 and kit.scheduler.dropped["deadline"] >= 4
    assert not any(f.done() for f in in_batch)  # still held with the model

    kit.open()
    wait_until(lambda: all(f.done() for f in in_batch), 5, "the split batch to settle")
    assert all(isinstance(outcome(f), DeadlineExceeded) for f in in_batch), [outcome(f) for f in in_batch]
    [failed] = results(plug)
    assert failed.error.code == grpc.StatusCode.INTERNAL.value[0]
    # The held forward, then the poison doc alone: the expired docs were dropped before the retry.
    assert [len(call) for call in kit.faults.calls] == [5, 1], kit.faults.calls
    assert not {d.key for d in queued} & kit.seen(), "an expired queued doc reached the model"
    print(
        f"R4 engine: 4 queued docs told DEADLINE_EXCEEDED {late * 1000:.1f} ms after the deadline "
        f"({waited:.3f} s wait), 4 docs of a failed batch dropped before its retry, 2 model calls (the batch, the poison alone)"
    )
    for ch in chans:
        ch.close()


def test_queue_timeout_is_resource_exhausted_without_a_model_call(server: Any, kit: Batches, maker: DocMaker) -> None:
    chans = channels(server.address, 1)
    plug = kit.fill_pipeline(chans[0], [maker.doc(3)])
    kit.scheduler.max_queue_s = 0.3
    try:
        docs = [maker.doc() for _ in range(3)]
        started = time.perf_counter()
        call = embed_call(chans[0], docs)
        got = results(call)  # answered while the model is still held
        took = time.perf_counter() - started
    finally:
        kit.scheduler.max_queue_s = 60.0
    assert [r.error.code for r in got] == [grpc.StatusCode.RESOURCE_EXHAUSTED.value[0]] * 3
    assert all("max_queue_ms (300)" in r.error.message for r in got)
    assert 0.3 <= took <= 0.3 + LATE_S, took
    assert kit.faults.calls == []
    kit.open()
    results(plug[0])
    assert not {d.key for d in docs} & kit.seen()
    for ch in chans:
        ch.close()
