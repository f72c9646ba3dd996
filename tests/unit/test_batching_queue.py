"""pack (the padded-piece budget) and the Scheduler (max wait, fairness, cancellation, admission)."""

from __future__ import annotations

import math
import threading
import time

import grpc
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from tokvec_server.alignment import DocPlan
from tokvec_server.batching.jobs import DocJob, SpanJob
from tokvec_server.batching.packing import pack
from tokvec_server.batching.queue import Scheduler
from tokvec_server.errors import DeadlineExceeded, Overloaded, TokvecError
from tokvec_server.types import EmbedOptions, Tokens


def job(*lengths: int, client: str = "", deadline: float = math.inf, delivered: list[object] | None = None) -> DocJob:
    """A doc whose spans have these piece counts (only the lengths matter to the queue)."""
    plan = DocPlan(
        n_tokens=0,
        span_ids=[np.zeros(n, np.int64) for n in lengths],
        span_tokens=np.zeros((len(lengths), 2), np.int64),
        piece_offsets=np.zeros((sum(lengths), 2), np.int64),
        align_lengths=np.zeros(0, np.int64),
        align_indices=np.zeros(0, np.int64),
        truncated=np.zeros(0, np.int64),
    )
    sink = delivered if delivered is not None else []
    return DocJob(Tokens("d", [], [], None), plan, EmbedOptions(), (), sink.append, client=client, deadline=deadline)


def lengths_of(batch: list[SpanJob] | None) -> list[int]:
    assert batch is not None
    return [len(s.ids) for s in batch]


def test_pack_examples() -> None:
    assert pack(np.array([100]), 512).tolist() == [0]
    assert pack(np.array([600]), 512).tolist() == [0]  # too big alone: it still goes, alone
    assert pack(np.array([600, 10, 10]), 512).tolist() == [0]
    assert pack(np.array([128] * 40), 4096).tolist() == list(range(32))
    # from the anchor outwards in length order, to the closer neighbour first
    assert pack(np.array([10, 500, 12, 9, 300]), 40).tolist() == [0, 2, 3]
    assert pack(np.array([10, 500, 12, 9, 300]), 1000, first=4).tolist() == [1, 4]  # 500 is closer to 300 than 12
    assert pack(np.array([10, 500, 12, 9, 300]), 900, first=4).tolist() == [0, 2, 4]  # 2 x 500 would not fit


def test_pack_keeps_a_padding_floor() -> None:
    lengths = np.array([30, 160, 32, 150, 28, 155])
    # No floor: everything fits the budget, padded to 160 (efficiency 555 / 960 = 0.58).
    assert pack(lengths, 4096).tolist() == [0, 1, 2, 3, 4, 5]
    # A floor of 0.8: the short spans go together, the long ones in the next batch.
    assert pack(lengths, 4096, first=0, floor=0.8).tolist() == [0, 2, 4]
    assert pack(lengths, 4096, first=1, floor=0.8).tolist() == [1, 3, 5]
    assert pack(np.array([10, 500]), 4096, floor=1.0).tolist() == [0]  # the anchor always goes


@settings(max_examples=400, deadline=None, database=None)
@given(lengths=st.lists(st.integers(1, 600), min_size=1, max_size=60), budget=st.integers(1, 5000), data=st.data())
def test_pack_properties(lengths: list[int], budget: int, data: st.DataObject) -> None:
    arr = np.array(lengths, dtype=np.int64)
    first = data.draw(st.integers(0, len(lengths) - 1))
    floor = data.draw(st.sampled_from([0.0, 0.5, 0.8, 1.0]))
    chosen = pack(arr, budget, first, floor)
    assert first in chosen.tolist()
    assert chosen.tolist() == sorted(set(chosen.tolist())) and chosen.min() >= 0 and chosen.max() < len(arr)
    picked, k = arr[chosen], len(chosen)
    if k > 1:
        assert k * picked.max() <= budget
        assert picked.sum() >= floor * k * picked.max()
    rest = np.delete(arr, chosen)
    # contiguous in length order: nothing left out lies strictly between the batch's shortest and longest
    assert not ((rest > picked.min()) & (rest < picked.max())).any()
    # greedy: no left-out span would have fitted the budget and the floor
    for length in rest:
        longest = max(int(picked.max()), int(length))
        assert (k + 1) * longest > budget or picked.sum() + length < floor * (k + 1) * longest


def test_first_span_waits_max_wait_for_batch_mates() -> None:
    scheduler = Scheduler(max_batch_items=4096, max_wait_s=0.3, max_queued_pieces=100_000)
    scheduler.submit([job(10)])
    threading.Timer(0.02, scheduler.submit, args=([job(20)],)).start()
    batch = scheduler.next_batch()
    assert lengths_of(batch) == [10, 20]
    assert batch is not None and 0.3 <= time.monotonic() - batch[0].queued_at < 5.0


def test_full_budget_goes_at_once() -> None:
    scheduler = Scheduler(max_batch_items=1024, max_wait_s=30.0, max_queued_pieces=100_000)
    scheduler.submit([job(512, 512, 512)])
    started = time.monotonic()
    assert lengths_of(scheduler.next_batch()) == [512, 512]
    assert time.monotonic() - started < 5.0
    assert scheduler.queued == (1, 512)


def test_a_submit_that_fills_the_budget_wakes_a_waiting_batch() -> None:
    scheduler = Scheduler(max_batch_items=1024, max_wait_s=30.0, max_queued_pieces=100_000)
    scheduler.submit([job(512)])
    threading.Timer(0.05, scheduler.submit, args=([job(512)],)).start()
    started = time.monotonic()
    assert lengths_of(scheduler.next_batch()) == [512, 512]
    assert time.monotonic() - started < 5.0


def test_close_drains_then_returns_none() -> None:
    scheduler = Scheduler(max_batch_items=4096, max_wait_s=30.0, max_queued_pieces=100_000)
    scheduler.submit([job(5, 6)])
    scheduler.close()
    assert lengths_of(scheduler.next_batch()) == [5, 6]
    assert scheduler.next_batch() is None


def test_a_light_client_is_not_starved_by_a_flood() -> None:
    scheduler = Scheduler(max_batch_items=1024, max_wait_s=0.0, max_queued_pieces=100_000)
    scheduler.submit([job(512, client="flood") for _ in range(10)])
    light = job(512, client="light")
    scheduler.submit([light])
    first, second = scheduler.next_batch(), scheduler.next_batch()
    assert first is not None and {s.job.client for s in first} == {"flood"}
    assert second is not None and light in {s.job for s in second}


def test_cancelled_jobs_are_dropped_without_an_answer() -> None:
    scheduler = Scheduler(max_batch_items=4096, max_wait_s=0.0, max_queued_pieces=100_000)
    said: list[object] = []
    gone, kept = job(7, 8, delivered=said), job(9)
    scheduler.submit([gone, kept])
    gone.cancelled.set()
    batch = scheduler.next_batch()
    assert batch is not None and [s.job for s in batch] == [kept]
    assert scheduler.queued == (0, 0) and said == [] and scheduler.dropped["cancelled"] == 1


def test_wake_frees_cancelled_work_while_a_batch_waits() -> None:
    scheduler = Scheduler(max_batch_items=4096, max_wait_s=30.0, max_queued_pieces=100_000)
    waiter = threading.Thread(target=scheduler.next_batch)
    waiter.start()
    doomed = job(100)
    scheduler.submit([doomed])
    doomed.cancelled.set()
    scheduler.wake()
    deadline = time.monotonic() + 5.0
    while scheduler.queued != (0, 0) and time.monotonic() < deadline:
        time.sleep(0.005)
    assert scheduler.queued == (0, 0)
    scheduler.close()
    waiter.join(5.0)
    assert not waiter.is_alive()


def test_a_doc_past_its_deadline_is_answered_deadline_exceeded() -> None:
    scheduler = Scheduler(max_batch_items=4096, max_wait_s=0.0, max_queued_pieces=100_000)
    said: list[object] = []
    scheduler.submit([job(10, deadline=time.monotonic() - 1.0, delivered=said), job(11)])
    assert lengths_of(scheduler.next_batch()) == [11]
    (error,) = said
    assert isinstance(error, DeadlineExceeded) and error.code is grpc.StatusCode.DEADLINE_EXCEEDED


def test_a_doc_queued_too_long_is_answered_resource_exhausted() -> None:
    scheduler = Scheduler(max_batch_items=4096, max_wait_s=0.0, max_queued_pieces=100_000, max_queue_s=0.0)
    said: list[object] = []
    scheduler.submit([job(10, delivered=said)])
    scheduler.close()
    assert scheduler.next_batch() is None
    (error,) = said
    assert isinstance(error, Overloaded) and "max_queue_ms (0)" in str(error)


def overloaded(scheduler: Scheduler, jobs: list[DocJob]) -> TokvecError:
    with pytest.raises(Overloaded) as info:
        scheduler.submit(jobs)
    assert info.value.code is grpc.StatusCode.RESOURCE_EXHAUSTED
    return info.value


def test_too_many_queued_pieces_names_the_limit_and_changes_nothing() -> None:
    scheduler = Scheduler(max_batch_items=4096, max_wait_s=0.0, max_queued_pieces=1000)
    scheduler.submit([job(600)])
    assert str(overloaded(scheduler, [job(300), job(200)])) == "queued pieces: 1100 > max_queued_pieces (1000)"
    assert scheduler.queued == (1, 600)
    scheduler.submit([job(400)])  # exactly at the limit is admitted
    assert scheduler.queued == (2, 1000)


def test_too_many_queued_docs_names_the_limit() -> None:
    scheduler = Scheduler(max_batch_items=4096, max_wait_s=0.0, max_queued_pieces=100_000, max_queued_docs=3)
    scheduler.submit([job(1), job(1)])
    assert str(overloaded(scheduler, [job(1), job(1)])) == "queued docs: 4 > max_queued_docs (3)"
    assert scheduler.queued == (2, 2)


def test_past_the_doc_bound_a_client_under_its_share_is_still_admitted() -> None:
    scheduler = Scheduler(max_batch_items=4096, max_wait_s=0.0, max_queued_pieces=100_000, max_queued_docs=8)
    scheduler.submit([job(1, client="flood") for _ in range(8)])
    with pytest.raises(Overloaded, match=r"queued docs: 9 > max_queued_docs \(8\)"):
        scheduler.check_room(1, "flood")
    scheduler.check_room(1, "light")  # two clients: a share of 4, and it holds none
    scheduler.submit([job(1, client="light")])
    assert (
        str(overloaded(scheduler, [job(1, client="light") for _ in range(4)]))
        == "queued docs: 13 > max_queued_docs (8)"
    )
    assert scheduler.queued == (9, 9)
    batch = scheduler.next_batch()
    assert batch is not None and len(batch) == 9 and scheduler.queued == (0, 0)
    scheduler.submit([job(1, client="flood") for _ in range(8)])  # the queue forgot who held what


def test_an_oversized_request_is_admitted_into_an_empty_queue() -> None:
    scheduler = Scheduler(max_batch_items=4096, max_wait_s=0.0, max_queued_pieces=1000, max_queued_docs=1)
    scheduler.submit([job(800, 800), job(5)])
    assert scheduler.queued == (2, 1605)


def test_cancelled_work_does_not_count_against_admission() -> None:
    scheduler = Scheduler(max_batch_items=4096, max_wait_s=0.0, max_queued_pieces=1000)
    gone = job(600)
    scheduler.submit([gone])
    gone.cancelled.set()
    scheduler.submit([job(600)])
    assert scheduler.queued == (1, 600)


def run_forward(seconds: float) -> None:
    time.sleep(seconds)  # the model's time on a batch: the anticipation window is a share of it


def clients(batch: list[SpanJob] | None) -> list[str]:
    return [s.job.client for s in batch or []]


def later(seconds: float, scheduler: Scheduler, *jobs: DocJob) -> None:
    threading.Timer(seconds, scheduler.submit, args=(list(jobs),)).start()


def beside_a_flood(client: str, rearrival_s: float) -> Scheduler:
    """A ragged scheduler with a flood queued and one doc of ``client``, whose first batch (the
    client's doc and a flood doc) the model has just taken."""
    scheduler = Scheduler(
        max_batch_items=1024, max_wait_s=0.0, max_queued_pieces=100_000, ragged=True, rearrival_s=rearrival_s
    )
    scheduler.submit([job(512, client="flood") for _ in range(20)])
    scheduler.submit([job(512, client=client)])
    assert clients(scheduler.next_batch()) == [client, "flood"]
    return scheduler


@pytest.mark.parametrize("rearrival_s", [0.0, 1.0])
def test_a_closed_loop_client_that_comes_back_quickly_is_waited_for(rearrival_s: float) -> None:
    """Beside a flood, a light client answered at the end of a batch sends its next doc 10 ms
    later. Once it has shown it comes back quickly, the next batch waits for it (20% of the
    200 ms forward at most); with rearrival 0 it misses that batch and waits a whole one more."""
    scheduler = beside_a_flood("light", rearrival_s)
    run_forward(0.2)
    later(0.01, scheduler, job(512, client="light"))
    assert clients(scheduler.next_batch()) == ["flood", "flood"]  # not yet known to come back quickly
    run_forward(0.2)
    assert clients(scheduler.next_batch()) == ["light", "flood"]
    run_forward(0.2)
    light = job(512, client="light")
    later(0.01, scheduler, light)
    started = time.monotonic()
    batch = scheduler.next_batch()
    if rearrival_s:
        assert batch is not None and light in {s.job for s in batch}
        assert 0.005 <= time.monotonic() - started < 0.03 + 0.5
    else:
        assert clients(batch) == ["flood", "flood"]


def test_a_client_that_came_back_slowly_is_not_waited_for() -> None:
    # Waited for, it would hold the batch min(30 ms, 20% of 200 ms) = 30 ms.
    scheduler = beside_a_flood("stream", rearrival_s=0.03)
    run_forward(0.2)
    later(0.06, scheduler, job(512, client="stream"))  # an open-loop stream: its next doc is due later
    assert clients(scheduler.next_batch()) == ["flood", "flood"]
    run_forward(0.2)
    assert clients(scheduler.next_batch()) == ["stream", "flood"]
    run_forward(0.2)
    started = time.monotonic()
    assert set(clients(scheduler.next_batch())) == {"flood"}
    assert time.monotonic() - started < 0.015


def test_a_quick_client_late_once_is_still_waited_for_and_not_after_two_late_returns() -> None:
    # The wait is min(30 ms, 20% of 200 ms) = 30 ms; the client comes back 60 ms after its batch.
    scheduler = beside_a_flood("light", rearrival_s=0.03)
    run_forward(0.01)
    scheduler.submit([job(512, client="light")])  # back before its batch was handed back: quick
    assert clients(scheduler.next_batch()) == ["light", "flood"]
    for waited in (True, True, False):  # known quick; late once; late twice in a row
        run_forward(0.2)
        later(0.06, scheduler, job(512, client="light"))
        started = time.monotonic()
        assert set(clients(scheduler.next_batch())) == {"flood"}
        took = time.monotonic() - started
        assert took >= 0.025 if waited else took < 0.015, (waited, took)
        run_forward(0.2)
        assert clients(scheduler.next_batch()) == ["light", "flood"]


def test_an_expected_client_that_never_comes_back_costs_a_share_of_the_forward_at_most() -> None:
    scheduler = beside_a_flood("light", rearrival_s=10.0)
    run_forward(0.01)
    scheduler.submit([job(512, client="light")])  # back before its batch was handed back: quick
    assert clients(scheduler.next_batch()) == ["light", "flood"]
    run_forward(0.2)
    started = time.monotonic()
    assert set(clients(scheduler.next_batch())) == {"flood"}  # it has left
    assert 0.025 <= time.monotonic() - started < 0.03 + 0.5


def test_offer_runs_work_on_the_idle_consumer_and_its_docs_go_next() -> None:
    scheduler = Scheduler(max_batch_items=512, max_wait_s=0.0, max_queued_pieces=10_000)
    assert not scheduler.offer(lambda: None)  # nobody waits for a batch yet: the pool path
    ran_on: list[str] = []
    got: list[list[int]] = []

    def work() -> None:
        ran_on.append(threading.current_thread().name)
        scheduler.submit([job(7)])

    consumer = threading.Thread(target=lambda: got.append(lengths_of(scheduler.next_batch())), name="consumer")
    consumer.start()
    while not scheduler.offer(work):  # accepted once the consumer waits with nothing queued
        time.sleep(0.001)
    consumer.join(5)
    assert ran_on == ["consumer"] and got == [[7]]


def test_offer_is_refused_while_anything_is_queued_or_offered() -> None:
    scheduler = Scheduler(max_batch_items=512, max_wait_s=30.0, max_queued_pieces=10_000)
    gate = threading.Event()
    consumer = threading.Thread(target=scheduler.next_batch)
    consumer.start()
    try:
        while not scheduler.offer(gate.wait):  # holds the consumer in the work
            time.sleep(0.001)
        assert not scheduler.offer(lambda: None)  # the model's thread has its work already
        gate.set()
        scheduler.submit([job(5)])  # waits max_wait (30 s) for batch-mates: queued, not idle
        time.sleep(0.05)
        assert not scheduler.offer(lambda: None)
    finally:
        gate.set()
        scheduler.close()
        consumer.join(5)
