"""The model's own thread: take a batch from the scheduler whenever the model is free, run it,
and hand each doc that it completes its rows. CPU work for the next batch (tokenizing and
aligning its docs) is done by the requests' prep pool meanwhile. Beside it, a reaper thread
frees cancelled and expired docs from the queue while the model is busy."""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from typing import Any

import torch

from tokvec_server.batching import collect
from tokvec_server.batching.jobs import DocJob, SpanJob
from tokvec_server.batching.queue import Scheduler
from tokvec_server.errors import DeadlineExceeded, ModelFailure, TooLargeForDevice, log_error_id
from tokvec_server.runners.base import OutOfMemory, Runner
from tokvec_server.runners.batch import Batch
from tokvec_server.threads import lower_priority

log = logging.getLogger("tokvec.worker")


class ModelWorker:
    def __init__(self, runner: Runner, scheduler: Scheduler, on_fatal: Callable[[BaseException], None]) -> None:
        self.runner = runner
        self.scheduler = scheduler
        self.on_fatal = on_fatal
        self._threads = [
            threading.Thread(target=self._guard, args=(self._model_loop,), name="tokvec-model", daemon=True),
            threading.Thread(target=self._guard, args=(scheduler.reap,), name="tokvec-reaper", daemon=True),
        ]
        self.min_batch_items = 512
        self.metrics: Any = None  # the tokvec_server.metrics module, once metrics are served
        self.stats = {"batches": 0, "bisections": 0, "oom_splits": 0, "padded_pieces": 0, "real_pieces": 0}

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
            log.exception("model worker died")
            self.on_fatal(exc)

    def _model_loop(self) -> None:
        lower_priority()  # the event loop answers first (threads.py)
        self.runner.enter_thread()
        # inference_mode is thread-local: it must be entered in the thread that runs the model.
        with torch.inference_mode():
            while (batch := self.scheduler.next_batch()) is not None:
                self._run(batch)

    def _run(self, batch: list[SpanJob]) -> None:
        # A doc may have been cancelled, or its deadline passed, since the scheduler let it go
        # (while the first half of a split batch ran, say). The caller has stopped waiting for
        # it, so it costs no forward (R4).
        now = time.monotonic()
        for job in {s.job for s in batch if not s.job.done and now >= s.job.deadline}:
            job.fail(DeadlineExceeded("the deadline passed while the doc was queued"))
            self.scheduler.count_drop("deadline")
        live = [s for s in batch if not s.job.done]
        if live:
            self._attempt(live)

    def _attempt(self, spans: list[SpanJob]) -> None:
        """Run a batch; when it fails, split it in two and run each half, so one poison doc or one
        out-of-memory fails only the doc that cannot run alone (docs/reliability.md R8, R9)."""
        batch = Batch.of([s.ids for s in spans], [s.input for s in spans])
        layers = tuple(sorted({layer for s in spans for layer in s.job.layers}))
        cost = self.scheduler.cost([len(s.ids) for s in spans])
        taken, started = time.monotonic(), time.perf_counter()
        try:
            hidden, chosen = self.runner.forward(batch, layers)
        except Exception as exc:
            oom = is_out_of_memory(exc)
            if len(spans) == 1:
                self._fail_alone(spans[0], exc, oom, len(spans[0].ids))
                return
            if oom:
                # Smaller batches from now on: the budget that just failed, halved.
                self.scheduler.max_batch_items = max(
                    self.min_batch_items, min(self.scheduler.max_batch_items, cost // 2)
                )
                self.stats["oom_splits"] += 1
                log.warning(
                    "out of memory on %d spans (%d pieces): split, batch budget now %d",
                    len(spans),
                    cost,
                    self.scheduler.max_batch_items,
                )
            else:
                self.stats["bisections"] += 1
            half = len(spans) // 2
            self._run(spans[:half])
            self._run(spans[half:])
            return
        observe(self.metrics, self.runner.info.name, spans, taken, started)
        self.stats["batches"] += 1
        self.stats["padded_pieces"] += cost
        self.stats["real_pieces"] += len(batch.ids)
        complete = []
        for span, a, b in zip(spans, batch.starts[:-1], batch.starts[1:]):
            if span.job.done:
                continue
            doc_layers = [chosen[layers.index(layer)][a:b] for layer in span.job.layers]
            if span.job.add(span.index, hidden, int(a), doc_layers):
                complete.append(span.job)
        collect.finish(complete, self.runner.info.width, self.runner.device)

    def _fail_alone(self, span: SpanJob, exc: Exception, oom: bool, pieces: int) -> None:
        if oom:
            span.job.fail(
                TooLargeForDevice(
                    f"a span of {pieces} pieces does not fit in device memory, even in a batch of its own: "
                    "ask for shorter spans (a smaller window in options.spans), or send shorter docs"
                )
            )
            return
        error_id = log_error_id(log, f"forward failed for doc {span.job.doc.id[:64]!r} alone", exc)
        span.job.fail(ModelFailure(f"model failure (error id {error_id})"))


def observe(metrics: Any, name: str, batch: list[SpanJob], taken: float, started: float) -> None:
    """A batch's stage timings for the metrics endpoint (no-op until it is served, ``metrics``
    None). A span's queue wait ends when its forward starts: ``taken`` (monotonic, the clock of
    ``queued_at``); ``started`` is the perf_counter at that moment."""
    if metrics is None or not batch:
        return
    metrics.FORWARD.labels(name).observe(time.perf_counter() - started)
    metrics.BATCH_SPANS.labels(name).observe(len(batch))
    wait = metrics.QUEUE_WAIT.labels(name)
    for span in batch:
        wait.observe(taken - span.queued_at)


def is_out_of_memory(exc: BaseException) -> bool:
    return isinstance(exc, (MemoryError, OutOfMemory, torch.OutOfMemoryError))


def job_layers(requested: tuple[int, ...], n_layers: int) -> tuple[int, ...]:
    """Hidden layer indices as non-negative positions in hidden_states (0 = embeddings)."""
    return tuple(layer if layer >= 0 else n_layers + 1 + layer for layer in requested)


__all__ = ["ModelWorker", "DocJob", "job_layers"]
