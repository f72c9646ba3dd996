"""The span queue shared by every request and stream, packed into batches by a padded-piece budget.

Spans are tokenized before they are queued, so the packer knows every length. A batch starts from
an anchor span and grows over its neighbours in length order (so padding stays small) while
batch rows x longest row fits ``max_batch_items``. The anchor is the oldest span of the client
served least recently, so a flooding client cannot starve a light one. The first span waits at
most ``max_wait_s`` for batch-mates; a full budget goes at once. Spans of cancelled docs, and of
docs past their deadline or queued too long, leave the queue without reaching the model.

A consumer may bound how many batches it takes ahead of its model (``limit_ahead``). A batch is
then formed only when the model has room for it, so docs wait in this queue, not in a prepared
batch: a cancelled or expired doc is freed here at once, even while the model is busy (R3, R4).
"""

from __future__ import annotations

import math
import threading
import time

import numpy as np

from tokvec_server.batching.jobs import DocJob, SpanJob
from tokvec_server.errors import DeadlineExceeded, Overloaded


def pack(lengths: np.ndarray, budget: int, first: int = 0) -> np.ndarray:
    """Positions (into ``lengths``, arrival order) of the next batch; ``first`` is always in it."""
    order = np.argsort(lengths, kind="stable")
    sorted_lengths = lengths[order]
    anchor = int(np.flatnonzero(order == first)[0])
    lo = hi = anchor
    n = len(lengths)
    while True:
        count = hi - lo + 2
        # Grow towards the neighbour whose length is closest to the anchor's.
        grow_lo = lo > 0 and count * sorted_lengths[hi] <= budget
        grow_hi = hi < n - 1 and count * sorted_lengths[hi + 1] <= budget
        if grow_lo and grow_hi:
            if sorted_lengths[anchor] - sorted_lengths[lo - 1] <= sorted_lengths[hi + 1] - sorted_lengths[anchor]:
                lo -= 1
            else:
                hi += 1
        elif grow_lo:
            lo -= 1
        elif grow_hi:
            hi += 1
        else:
            return np.sort(order[lo : hi + 1])


class Scheduler:
    def __init__(self, max_batch_items: int, max_wait_s: float, max_queued_pieces: int, max_queued_docs: int = 1 << 30, max_queue_s: float = math.inf) -> None:
        self.max_batch_items = max_batch_items
        self.max_wait_s = max_wait_s
        self.max_queued_pieces = max_queued_pieces
        self.max_queued_docs = max_queued_docs
        self.max_queue_s = max_queue_s
        self._cond = threading.Condition()
        self._pending: list[SpanJob] = []  # arrival order
        self._queued_pieces = 0
        self._queued_docs: set[DocJob] = set()
        self._served: dict[str, int] = {}  # client -> batch count when it was last an anchor
        self._batches = 0
        self._closed = False
        self._room = math.inf  # batches the consumer can take now (see limit_ahead)
        self.dropped = {"cancelled": 0, "deadline": 0, "queue_timeout": 0, "overloaded": 0}

    @property
    def queued(self) -> tuple[int, int]:
        """(docs, pieces) waiting."""
        with self._cond:
            return len(self._queued_docs), self._queued_pieces

    def check_room(self, n_docs: int) -> None:
        """A cheap refusal before any tokenizing, when the docs alone would pass max_queued_docs."""
        with self._cond:
            if self._queued_docs and len(self._queued_docs) + n_docs > self.max_queued_docs:
                self.dropped["overloaded"] += n_docs
                raise Overloaded(f"queued docs: {len(self._queued_docs) + n_docs} > max_queued_docs ({self.max_queued_docs})")

    def submit(self, jobs: list[DocJob]) -> None:
        """Queue every span of these docs, or none of them (RESOURCE_EXHAUSTED naming the limit)."""
        spans = [span for job in jobs for span in job.spans()]
        pieces = sum(len(s.ids) for s in spans)
        with self._cond:
            self._drop_dead()  # cancelled work must not hold places that live callers need
            if self._pending and self._queued_pieces + pieces > self.max_queued_pieces:
                self.dropped["overloaded"] += len(jobs)
                raise Overloaded(f"queued pieces: {self._queued_pieces + pieces} > max_queued_pieces ({self.max_queued_pieces})")
            if self._queued_docs and len(self._queued_docs) + len(jobs) > self.max_queued_docs:
                self.dropped["overloaded"] += len(jobs)
                raise Overloaded(f"queued docs: {len(self._queued_docs) + len(jobs)} > max_queued_docs ({self.max_queued_docs})")
            self._pending.extend(spans)
            self._queued_pieces += pieces
            self._queued_docs.update(jobs)
            self._cond.notify()

    def limit_ahead(self, n: int) -> None:
        """The consumer takes at most n batches before it calls ``made_room``."""
        with self._cond:
            self._room = n
            self._cond.notify()

    def made_room(self) -> None:
        """The consumer started on a batch it took: one more may be formed."""
        with self._cond:
            self._room += 1
            self._cond.notify()

    def count_drop(self, reason: str) -> None:
        """A doc that the consumer dropped after taking it (a deadline passed in a prepared batch)."""
        with self._cond:
            self.dropped[reason] += 1

    def wake(self) -> None:
        """Re-check the queue now (a doc was cancelled)."""
        with self._cond:
            self._cond.notify()

    def close(self) -> None:
        """No more batches once the queue is empty; next_batch then returns None."""
        with self._cond:
            self._closed = True
            self._cond.notify_all()

    def next_batch(self) -> list[SpanJob] | None:
        """Block until a batch is due; None once closed and drained."""
        with self._cond:
            while True:
                self._drop_dead()
                if not self._pending:
                    if self._closed:
                        return None
                    self._cond.wait(self._next_expiry())
                    continue
                if self._room < 1:
                    # The model is busy and a batch already waits for it. Keep the docs here,
                    # where a cancel or an expiry frees them (this loop wakes for both).
                    self._cond.wait(self._next_expiry())
                    continue
                due = self._pending[0].queued_at + self.max_wait_s - time.monotonic()
                if due <= 0 or self._closed or self._queued_pieces >= self.max_batch_items:
                    return self._take()
                expiry = self._next_expiry()
                self._cond.wait(due if expiry is None else min(due, expiry))

    def _next_expiry(self) -> float | None:
        if not self._pending:
            return None
        now = time.monotonic()
        soonest = min(min(s.job.deadline, s.queued_at + self.max_queue_s) for s in self._pending)
        return max(0.0, soonest - now) if soonest != math.inf else None

    def _drop_dead(self) -> None:
        """Cancelled docs leave quietly; expired ones are told why. Neither reaches the model."""
        now = time.monotonic()
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

    def _anchor(self) -> int:
        """The oldest span of the client that was served least recently."""
        firsts: dict[str, int] = {}
        for i, s in enumerate(self._pending):
            firsts.setdefault(s.job.client, i)
        client = min(firsts, key=lambda c: (self._served.get(c, -1), firsts[c]))
        self._served[client] = self._batches
        return firsts[client]

    def _take(self) -> list[SpanJob]:
        self._batches += 1
        self._room -= 1
        lengths = np.fromiter((len(s.ids) for s in self._pending), dtype=np.int64, count=len(self._pending))
        chosen = pack(lengths, self.max_batch_items, self._anchor())
        taken = set(chosen.tolist())
        batch = [self._pending[i] for i in chosen]
        self._pending = [s for i, s in enumerate(self._pending) if i not in taken]
        self._queued_pieces -= int(lengths[chosen].sum())
        still = {s.job for s in self._pending}
        self._queued_docs = {j for j in self._queued_docs if j in still}
        if len(self._served) > 4096:  # forget clients long gone
            self._served = {c: t for c, t in self._served.items() if t > self._batches - 1024}
        return batch
