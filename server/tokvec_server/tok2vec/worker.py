"""The tok2vec's own thread: take a batch of docs from the scheduler, run the model once, hand
each doc its rows. A failed batch is split in two and retried, so a poison doc fails alone."""

from __future__ import annotations

import logging
import threading
import time
import uuid
from typing import Any, Callable

import numpy as np
import torch

from tokvec_server.alignment import DocPlan
from tokvec_server.batching.jobs import DocOutput, SpanJob
from tokvec_server.batching.queue import Scheduler
from tokvec_server.batching.worker import observe
from tokvec_server.errors import ModelFailure
from tokvec_server.tok2vec.jobs import Tok2VecJob
from tokvec_server.threads import lower_priority
from tokvec_server.tok2vec.runner import Tok2VecRunner
from tokvec_server.types import DType, Output

log = logging.getLogger("tokvec.tok2vec")


class Tok2VecWorker:
    def __init__(self, runner: Tok2VecRunner, scheduler: Scheduler, on_fatal: Callable[[BaseException], None]) -> None:
        self.runner = runner
        self.scheduler = scheduler
        self.on_fatal = on_fatal
        self.metrics: Any = None  # the tokvec_server.metrics module, once metrics are served
        # The keys the metrics endpoint reads; nothing is padded, so padded == real.
        self.stats = {"batches": 0, "bisections": 0, "oom_splits": 0, "padded_pieces": 0, "real_pieces": 0}
        # The model's thread, and a reaper that frees cancelled and expired docs while it is busy.
        self._threads = [threading.Thread(target=self._guard, args=(loop,), name=name, daemon=True)
                         for loop, name in ((self._model_loop, "tokvec-tok2vec"), (scheduler.reap, "tokvec-tok2vec-reaper"))]

    def start(self) -> None:
        for thread in self._threads:
            thread.start()

    def join(self, timeout: float | None = None) -> None:
        for thread in self._threads:
            thread.join(timeout)

    def alive(self) -> bool:
        return all(t.is_alive() for t in self._threads)

    def _guard(self, loop: Callable[[], None]) -> None:
        try:
            loop()
        except BaseException as exc:  # a dead worker must end the process, never hang callers
            log.exception("tok2vec worker died")
            self.on_fatal(exc)

    def _model_loop(self) -> None:
        lower_priority()  # the event loop answers first (threads.py)
        self.runner.enter_thread()
        while (batch := self.scheduler.next_batch()) is not None:
            jobs: list[Tok2VecJob] = [s.job for s in batch]  # type: ignore[misc]
            self._attempt([job for job in jobs if not job.done], batch)

    def _attempt(self, jobs: list[Tok2VecJob], spans: list[SpanJob]) -> None:
        if not jobs:
            return
        taken, started = time.monotonic(), time.perf_counter()
        try:
            rows = self.runner.predict([job.doc for job in jobs])
        except Exception as exc:
            if len(jobs) > 1:
                self.stats["bisections"] += 1
                half = len(jobs) // 2
                self._attempt(jobs[:half], spans)
                self._attempt(jobs[half:], [])
                return
            error_id = uuid.uuid4().hex[:12]
            log.error("tok2vec forward failed for doc %r alone (error id %s)", jobs[0].tokens.id[:64], error_id, exc_info=exc, extra={"error_id": error_id})
            jobs[0].fail(ModelFailure(f"model failure (error id {error_id})"))
            return
        tokens = sum(job.n_tokens for job in jobs)
        self.stats["batches"] += 1
        self.stats["padded_pieces"] += tokens
        self.stats["real_pieces"] += tokens
        observe(self.metrics, self.runner.info.name, spans, taken, started)
        for job, doc_rows in zip(jobs, rows):
            if not job.done:
                job.settle(collect(job, doc_rows))


def collect(job: Tok2VecJob, rows: np.ndarray) -> DocOutput | ModelFailure:
    """The doc's outputs in the wire dtype. Rows are already one per token: nothing to pool.
    Shape: rows (n_tokens, width); the doc vector is their mean, (width,)."""
    if not bool(np.isfinite(rows).all()):
        return ModelFailure("the model produced non-finite values for this doc")
    wanted, dtype = job.options.outputs, job.options.dtype
    doc_vector = rows.mean(0) if len(rows) else np.zeros(rows.shape[1], np.float32)
    return DocOutput(
        doc=job.tokens,
        plan=identity_plan(len(rows)),
        rows=to_wire(rows, dtype) if Output.TOKENS in wanted else None,
        layers=[],
        pieces=None,
        doc_vector=to_wire(doc_vector, dtype) if Output.DOC_VECTOR in wanted else None,
    )


def identity_plan(n_tokens: int) -> DocPlan:
    """Token i is its own (only) row: nothing is cut, no token goes without a row."""
    return DocPlan(
        n_tokens=n_tokens,
        span_ids=[],
        span_tokens=np.zeros((0, 2), np.int64),
        piece_offsets=np.zeros((0, 2), np.int64),
        align_lengths=np.ones(n_tokens, np.int64),
        align_indices=np.arange(n_tokens, dtype=np.int64),
        truncated=np.zeros(0, np.int64),
    )


def to_wire(rows: np.ndarray, dtype: DType) -> np.ndarray:
    """float32 rows in the wire dtype; bfloat16 travels as its uint16 bit pattern."""
    if dtype is DType.FLOAT32:
        return rows
    if dtype is DType.FLOAT16:
        return rows.astype(np.float16)
    # torch rounds to nearest-even, as the transformer path does.
    return torch.from_numpy(np.ascontiguousarray(rows)).to(torch.bfloat16).view(torch.int16).numpy().view(np.uint16)
