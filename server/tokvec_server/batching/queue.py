"""The span queue shared by every request and stream, packed into batches by a padded-piece budget.

Spans are tokenized before they are queued, so the packer knows every length. A batch starts from
the oldest span (so nobody starves) and grows over its neighbours in length order (so padding
stays small), while batch rows x longest row fits ``max_batch_items``. The first span waits at
most ``max_wait_s`` for batch-mates; a full budget goes at once.
"""

from __future__ import annotations

import threading
import time

import numpy as np

from tokvec_server.batching.jobs import SpanJob
from tokvec_server.errors import Overloaded


def pack(lengths: np.ndarray, budget: int) -> np.ndarray:
    """Positions (into ``lengths``, arrival order) of the next batch; position 0 is always in it."""
    order = np.argsort(lengths, kind="stable")
    sorted_lengths = lengths[order]
    anchor = int(np.flatnonzero(order == 0)[0])
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
    def __init__(self, max_batch_items: int, max_wait_s: float, max_queued_pieces: int) -> None:
        self.max_batch_items = max_batch_items
        self.max_wait_s = max_wait_s
        self.max_queued_pieces = max_queued_pieces
        self._cond = threading.Condition()
        self._pending: list[SpanJob] = []  # arrival order
        self._queued_pieces = 0
        self._closed = False

    @property
    def queued(self) -> tuple[int, int]:
        """(spans, pieces) waiting."""
        with self._cond:
            return len(self._pending), self._queued_pieces

    def submit(self, spans: list[SpanJob]) -> None:
        pieces = sum(len(s.ids) for s in spans)
        with self._cond:
            if self._queued_pieces + pieces > self.max_queued_pieces and self._pending:
                raise Overloaded(f"queued pieces: {self._queued_pieces + pieces} > max_queued_pieces ({self.max_queued_pieces})")
            self._pending.extend(spans)
            self._queued_pieces += pieces
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
                self._drop_cancelled()
                if not self._pending:
                    if self._closed:
                        return None
                    self._cond.wait()
                    continue
                due = self._pending[0].queued_at + self.max_wait_s - time.monotonic()
                if due <= 0 or self._closed or self._queued_pieces >= self.max_batch_items:
                    return self._take()
                self._cond.wait(due)

    def _drop_cancelled(self) -> None:
        if any(s.job.cancelled.is_set() for s in self._pending):
            kept = [s for s in self._pending if not s.job.cancelled.is_set()]
            self._queued_pieces = sum(len(s.ids) for s in kept)
            self._pending = kept

    def _take(self) -> list[SpanJob]:
        lengths = np.fromiter((len(s.ids) for s in self._pending), dtype=np.int64, count=len(self._pending))
        chosen = pack(lengths, self.max_batch_items)
        taken = set(chosen.tolist())
        batch = [self._pending[i] for i in chosen]
        self._pending = [s for i, s in enumerate(self._pending) if i not in taken]
        self._queued_pieces -= int(lengths[chosen].sum())
        return batch
