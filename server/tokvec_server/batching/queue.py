"""The span queue shared by every request and stream, packed into batches by a piece budget.

Spans are tokenized before they are queued, so the packer knows every length. The model's thread
asks for a batch when it is free, so a batch holds everything that arrived while the model was
busy, and docs wait here, where a cancel or a deadline frees them at once (R3, R4), never in a
batch formed ahead. On an idle model the first span waits at most ``max_wait_s`` for batch-mates
(0 by default: an idle model answers at once); a full budget goes at once.

Which spans form the batch is the packers' choice (packing.py): clients take turns, and a runner
that pads gets spans of similar lengths.

Closed-loop callers (the next doc is sent when the last one is answered) come back a moment after
their batch is handed back, just after the next batch has started without them: each then waits
one whole forward beside whoever was queued, and a light caller beside a flood waits two. So a
client that has come back quickly, and had nothing else queued, is expected: the next batch
waits for it up to ``rearrival_s`` (and never more than ``REARRIVAL_SHARE`` of the batch just run), as an
anticipatory disk scheduler waits for the process it just served. A client that has not yet come
back quickly, or came back slowly ``LATE_RETURNS`` times in a row (an open-loop stream, say), is not
waited for; on an idle model with one caller, nobody is.

Spans of cancelled docs, and of docs past their deadline or queued too long, leave the queue
without reaching the model.

A small request that finds the model idle (waiting here, nothing queued) need not cross to the
prep pool and back: ``offer`` hands its preparing to the model's own thread, which would only
wait for it otherwise, and which then takes the batch at once (the engine's idle path).
"""

from __future__ import annotations

import collections
import math
import threading
import time
from collections.abc import Callable, Iterable

import numpy as np

from tokvec_server.batching.jobs import DocJob, SpanJob
from tokvec_server.batching.packing import pack, share
from tokvec_server.errors import DeadlineExceeded, Overloaded

# The most a wait for a closed-loop client may cost, as a share of the batch the model just ran:
# under R2's flood the light client comes back 3-8 ms after its 80 ms batch ends, now and then
# 11-13 ms on a slower day of this machine (the default rearrival_ms, 15, sits past that tail).
REARRIVAL_SHARE = 0.2
# Late this many times in a row, a client is no longer waited for. One late return is not enough:
# judged slow at once, a closed-loop caller paid a second missed batch after each late gap.
LATE_RETURNS = 2


class Scheduler:
    def __init__(
        self,
        max_batch_items: int,
        max_wait_s: float,
        max_queued_pieces: int,
        max_queued_docs: int = 1 << 30,
        max_queue_s: float = math.inf,
        ragged: bool = False,
        min_padding_efficiency: float = 0.0,
        rearrival_s: float = 0.0,
    ) -> None:
        self.max_batch_items = max_batch_items
        self.ragged = ragged
        self.min_padding_efficiency = min_padding_efficiency
        self.max_wait_s = max_wait_s
        self.max_queued_pieces = max_queued_pieces
        self.max_queued_docs = max_queued_docs
        self.max_queue_s = max_queue_s
        self.rearrival_s = rearrival_s
        self._cond = threading.Condition()
        self._pending: list[SpanJob] = []  # arrival order
        self._queued_pieces = 0
        self._queued_docs: set[DocJob] = set()
        self._client_docs: collections.Counter[str] = collections.Counter()  # queued docs per client
        self._served: dict[str, int] = {}  # client -> the last batch it had spans in
        self._batches = 0
        # Anticipation: the clients of the last batch with nothing else queued, when they were
        # answered, how many times in a row each came back later than rearrival_s (a client not
        # yet seen coming back quickly counts as LATE_RETURNS), and whom the model is waiting for
        # now, until when.
        self._taken_at = 0.0
        self._returning: set[str] = set()
        self._answered_at: dict[str, float] = {}
        self._late: dict[str, int] = {}
        self._expected: set[str] = set()
        self._expect_until = 0.0
        self._closed = False
        # The idle path: whether the model's thread waits with nothing queued, and the work
        # handed to it meanwhile (see offer).
        self._idle = False
        self._direct: Callable[[], None] | None = None
        # What makes a scan for dead docs worth its O(queue) cost: a cancel, or the soonest expiry.
        self._cancelled = False
        self._soonest_deadline = math.inf
        self.dropped = {"cancelled": 0, "deadline": 0, "queue_timeout": 0, "overloaded": 0}
        self.admitted = 0  # docs ever taken into the queue

    @property
    def queued(self) -> tuple[int, int]:
        """(docs, pieces) waiting."""
        with self._cond:
            return len(self._queued_docs), self._queued_pieces

    def check_room(self, n_docs: int, client: str = "") -> None:
        """A cheap refusal before any tokenizing, when the docs alone would pass max_queued_docs."""
        with self._cond:
            self._check_docs(n_docs, client)

    def _check_docs(self, n_docs: int, client: str) -> None:
        """Past max_queued_docs, a client is refused only once it holds its share of the queue
        (the bound over the clients with docs queued): a flooding client fills the queue, but a
        light one is still let in."""
        total = len(self._queued_docs) + n_docs
        if not self._queued_docs or total <= self.max_queued_docs:
            return
        holders = len(self._client_docs) + (client not in self._client_docs)
        if self._client_docs[client] + n_docs <= self.max_queued_docs // holders:
            return
        self.dropped["overloaded"] += n_docs
        raise Overloaded(f"queued docs: {total} > max_queued_docs ({self.max_queued_docs})")

    def _forget(self, jobs: Iterable[DocJob]) -> None:
        """These docs left the queue."""
        for job in jobs:
            self._client_docs[job.client] -= 1
            if self._client_docs[job.client] <= 0:
                del self._client_docs[job.client]

    def submit(self, jobs: list[DocJob]) -> None:
        """Queue every span of these docs, or none of them (RESOURCE_EXHAUSTED naming the limit)."""
        spans = [span for job in jobs for span in job.spans()]
        pieces = sum(len(s.ids) for s in spans)
        with self._cond:
            if (
                self._queued_pieces + pieces > self.max_queued_pieces
                or len(self._queued_docs) + len(jobs) > self.max_queued_docs
            ):
                self._drop_dead(scan=True)  # cancelled work must not hold places that live callers need
            if self._pending and self._queued_pieces + pieces > self.max_queued_pieces:
                self.dropped["overloaded"] += len(jobs)
                raise Overloaded(
                    f"queued pieces: {self._queued_pieces + pieces} > max_queued_pieces ({self.max_queued_pieces})"
                )
            for client, n in collections.Counter(job.client for job in jobs).items():
                self._check_docs(n, client)
            now = time.monotonic()
            for client in {job.client for job in jobs}:
                if client in self._returning:  # back before its batch was even handed back
                    self._late[client] = 0
                elif (answered := self._answered_at.pop(client, None)) is not None:
                    late = 0 if now - answered <= self.rearrival_s else self._late.get(client, LATE_RETURNS) + 1
                    self._late[client] = min(late, LATE_RETURNS)
            self._pending.extend(spans)
            self._queued_pieces += pieces
            self._queued_docs.update(jobs)
            self.admitted += len(jobs)
            self._client_docs.update(job.client for job in jobs)
            self._soonest_deadline = min([self._soonest_deadline, *(job.deadline for job in jobs)])
            self._cond.notify_all()

    def offer(self, work: Callable[[], None]) -> bool:
        """Run ``work`` on the model's thread next, if that thread is idle: waiting for a batch,
        nothing queued, no other work handed to it. False (and nothing done) otherwise. ``work``
        must not raise; it runs without the lock held, and usually ends with a ``submit``."""
        with self._cond:
            if not self._idle or self._pending or self._direct is not None or self._closed:
                return False
            self._direct = work
            self._idle = False
            self._cond.notify_all()
            return True

    def cost(self, lengths: list[int]) -> int:
        """What a batch of spans of these lengths costs the runner, in pieces."""
        return sum(lengths) if self.ragged else len(lengths) * max(lengths, default=0)

    def count_drop(self, reason: str) -> None:
        """A doc that the consumer dropped after taking it (its deadline passed before its forward)."""
        with self._cond:
            self.dropped[reason] += 1

    def wake(self) -> None:
        """Re-check the queue now (a doc was cancelled)."""
        with self._cond:
            self._cancelled = True
            self._cond.notify_all()

    def close(self) -> None:
        """No more batches once the queue is empty; next_batch then returns None."""
        with self._cond:
            self._closed = True
            self._cond.notify_all()

    def reap(self) -> None:
        """Until closed, free cancelled and expired docs the moment they are. A thread of its own
        runs this: the model's thread, busy with a forward, is not in next_batch to do it."""
        with self._cond:
            while not self._closed:
                self._drop_dead()
                self._cond.wait(self._next_expiry())

    def next_batch(self) -> list[SpanJob] | None:
        """Block until a batch is due; None once closed and drained. The model's thread calls
        this when it is free."""
        with self._cond:
            self._batch_done()
            while True:
                self._drop_dead()
                if self._direct is not None:
                    work, self._direct = self._direct, None
                    # Unlocked: the event loop's check_room and submit must not wait for it.
                    self._cond.release()
                    try:
                        work()
                    finally:
                        self._cond.acquire()
                    continue
                if not self._pending:
                    if self._closed:
                        return None
                    self._idle = True
                    self._cond.wait(self._next_expiry())
                    self._idle = False
                    continue
                now = time.monotonic()
                # A full budget goes at once, but for an expected client: a flood fills every
                # budget, and a light caller it would shut out is the one worth waiting for.
                due = self._pending[0].queued_at + self.max_wait_s - now
                awaited = self._awaited_until() - now
                ready = due <= 0 or self._queued_pieces >= self.max_batch_items
                if self._closed or (ready and awaited <= 0):
                    self._drop_dead(scan=True)  # a batch is O(queue) to form anyway
                    if self._pending:
                        return self._take()
                    continue
                wait = awaited if ready else max(due, awaited)
                expiry = self._next_expiry()
                self._cond.wait(wait if expiry is None else min(wait, expiry))

    def _batch_done(self) -> None:
        """The model is free again: the last batch's docs were just handed back. Expect those of
        its clients that come back quickly, for REARRIVAL_SHARE of that batch's time at most."""
        now = time.monotonic()
        for client in self._returning - self._client_docs.keys():
            self._answered_at[client] = now
        self._expected = {c for c in self._returning if self._late.get(c, LATE_RETURNS) < LATE_RETURNS}
        self._expect_until = now + min(self.rearrival_s, REARRIVAL_SHARE * (now - self._taken_at))
        self._returning = set()
        if len(self._answered_at) > 4096:  # clients that never came back
            self._answered_at = {c: t for c, t in self._answered_at.items() if now - t < 60}

    def _awaited_until(self) -> float:
        """Until when the next batch waits for expected clients still missing (0: for none)."""
        if self._expected <= self._client_docs.keys():
            return 0.0
        return self._expect_until

    def _soonest_expiry(self) -> float:
        # Spans are in arrival order: the first one has waited longest.
        return min(self._soonest_deadline, self._pending[0].queued_at + self.max_queue_s) if self._pending else math.inf

    def _next_expiry(self) -> float | None:
        """Seconds until the next deadline or queue timeout; None when there is none."""
        soonest = self._soonest_expiry()
        return max(0.0, soonest - time.monotonic()) if soonest != math.inf else None

    def _drop_dead(self, scan: bool = False) -> None:
        """Cancelled docs leave quietly; expired ones are told why. Neither reaches the model.
        Without a cancel or an expiry due, only ``scan`` looks (for docs that ended elsewhere)."""
        now = time.monotonic()
        if not (scan or self._cancelled or now >= self._soonest_expiry()):
            return
        self._cancelled = False
        dead: dict[DocJob, str] = {}
        for s in self._pending:
            job = s.job
            if job in dead:
                continue
            if job.done:
                dead[job] = "cancelled"
            elif now >= job.deadline:
                dead[job] = "deadline"
            elif now - s.queued_at >= self.max_queue_s:
                dead[job] = "queue_timeout"
        if not dead:
            return
        for job, reason in dead.items():
            self.dropped[reason] += 1
            if reason == "deadline":
                job.fail(DeadlineExceeded("the deadline passed while the doc was queued"))
            elif reason == "queue_timeout":
                job.fail(Overloaded(f"queued longer than max_queue_ms ({self.max_queue_s * 1000:.0f})"))
        self._pending = [s for s in self._pending if s.job not in dead]
        self._queued_pieces = sum(len(s.ids) for s in self._pending)
        self._queued_docs.difference_update(dead)
        self._forget(dead)
        self._soonest_deadline = min((s.job.deadline for s in self._pending), default=math.inf)

    def _anchor(self) -> int:
        """The oldest span of the client that was served least recently."""
        firsts: dict[str, int] = {}
        for i, s in enumerate(self._pending):
            firsts.setdefault(s.job.client, i)
        return firsts[min(firsts, key=lambda c: (self._served.get(c, -1), firsts[c]))]

    def _take(self) -> list[SpanJob]:
        self._batches += 1
        lengths = np.fromiter((len(s.ids) for s in self._pending), dtype=np.int64, count=len(self._pending))
        if self.ragged:
            chosen = share(lengths, [s.job.client for s in self._pending], self.max_batch_items, self._served)
        else:
            chosen = pack(lengths, self.max_batch_items, self._anchor(), self.min_padding_efficiency)
        self._taken_at = time.monotonic()
        for i in chosen:
            self._served[self._pending[i].job.client] = self._batches
        taken = set(chosen.tolist())
        batch = [self._pending[i] for i in chosen]
        self._pending = [s for i, s in enumerate(self._pending) if i not in taken]
        self._queued_pieces -= int(lengths[chosen].sum())
        still = {s.job for s in self._pending}
        self._forget(self._queued_docs - still)
        self._queued_docs &= still
        self._soonest_deadline = min((job.deadline for job in still), default=math.inf)
        self._returning = {s.job.client for s in batch} - self._client_docs.keys()
        if len(self._served) > 4096:  # forget clients long gone
            self._served = {c: t for c, t in self._served.items() if t > self._batches - 1024}
            self._late = {c: n for c, n in self._late.items() if c in self._served}
        return batch
