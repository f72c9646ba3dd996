"""The model's own threads: one pads and uploads the next batch while the other runs the current
one through the model and collects the docs it completes (CPU prep overlaps device work)."""

from __future__ import annotations

import logging
import queue
import threading
import time
import uuid
from typing import Any, Callable

import torch

from tokvec_server.batching.jobs import DocJob, SpanJob
from tokvec_server.batching.queue import Scheduler
from tokvec_server.errors import DeadlineExceeded, ModelFailure, Overloaded
from tokvec_server.runners.base import OutOfMemory, Runner, pad

log = logging.getLogger("tokvec.worker")

Prepared = tuple[list[SpanJob], torch.Tensor, torch.Tensor, tuple[int, ...]]


class ModelWorker:
    def __init__(self, runner: Runner, scheduler: Scheduler, on_fatal: Callable[[BaseException], None]) -> None:
        self.runner = runner
        self.scheduler = scheduler
        self.on_fatal = on_fatal
        self.pad_id = int(runner.tokenizer.pad_token_id or 0)
        # One prepared batch waits while the model runs another: enough to hide the prep. The
        # scheduler forms that batch only once the slot is free, so the prep thread never holds a
        # batch it cannot hand off, and queued docs stay where a cancel or deadline frees them.
        self._handoff: queue.Queue[Prepared | None] = queue.Queue(maxsize=1)
        scheduler.limit_ahead(1)
        self._threads = [
            threading.Thread(target=self._guard, args=(self._prepare_loop,), name="tokvec-prep", daemon=True),
            threading.Thread(target=self._guard, args=(self._device_loop,), name="tokvec-model", daemon=True),
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

    def _prepare_loop(self) -> None:
        device = self.runner.device
        while (batch := self.scheduler.next_batch()) is not None:
            ids, mask = pad([s.ids for s in batch], self.pad_id)
            ids_t, mask_t = torch.from_numpy(ids), torch.from_numpy(mask)
            if device.type == "cuda":
                # Pinned memory lets the upload run asynchronously beside the current forward.
                ids_t, mask_t = ids_t.pin_memory(), mask_t.pin_memory()
            layers = tuple(sorted({layer for s in batch for layer in s.job.layers}))
            self._handoff.put((batch, ids_t.to(device, non_blocking=True), mask_t.to(device, non_blocking=True), layers))
        self._handoff.put(None)

    def _device_loop(self) -> None:
        # inference_mode is thread-local: it must be entered in the thread that runs the model.
        with torch.inference_mode():
            while (item := self._handoff.get()) is not None:
                self.scheduler.made_room()
                self._run(*item)

    def _run(self, batch: list[SpanJob], ids: torch.Tensor, mask: torch.Tensor, layers: tuple[int, ...]) -> None:
        # A prepared batch waited for the model: its docs may have expired meanwhile. The caller
        # has stopped waiting for them, so they cost no forward (R4).
        now = time.monotonic()
        for job in {s.job for s in batch if not s.job.done and now >= s.job.deadline}:
            job.fail(DeadlineExceeded("the deadline passed while the doc was queued"))
            self.scheduler.count_drop("deadline")
        live = [i for i, s in enumerate(batch) if not s.job.done]
        if not live:
            return
        if len(live) < len(batch):  # a doc was cancelled while its batch was being prepared
            keep = torch.tensor(live, device=ids.device)
            batch, ids, mask = [batch[i] for i in live], ids.index_select(0, keep), mask.index_select(0, keep)
        self._attempt(batch, ids, mask, layers)

    def _attempt(self, batch: list[SpanJob], ids: torch.Tensor, mask: torch.Tensor, layers: tuple[int, ...]) -> None:
        """Run a batch; when it fails, split it in two and run each half, so one poison doc or one
        out-of-memory fails only the doc that cannot run alone (RELIABILITY.md R8, R9)."""
        started = time.perf_counter()
        try:
            hidden, chosen = self.runner.forward(ids, mask, layers)
        except Exception as exc:
            oom = is_out_of_memory(exc)
            if len(batch) == 1:
                self._fail_alone(batch[0], exc, oom, int(mask.sum()))
                return
            if oom:
                # Smaller batches from now on: the budget that just failed, halved.
                self.scheduler.max_batch_items = max(self.min_batch_items, min(self.scheduler.max_batch_items, ids.numel() // 2))
                self.stats["oom_splits"] += 1
                log.warning("out of memory on %d x %d pieces: split, batch budget now %d", *ids.shape, self.scheduler.max_batch_items)
            else:
                self.stats["bisections"] += 1
            half = len(batch) // 2
            for part in (slice(0, half), slice(half, None)):
                part_mask = mask[part]
                longest = int(part_mask.sum(1).max())
                self._attempt(batch[part], ids[part, :longest], part_mask[:, :longest], layers)
            return
        self.observe(batch, started)
        self.stats["batches"] += 1
        self.stats["padded_pieces"] += ids.numel()
        self.stats["real_pieces"] += sum(len(s.ids) for s in batch)
        for row, span in enumerate(batch):
            if span.job.done:
                continue
            n = len(span.ids)
            doc_layers = [chosen[layers.index(layer)][row, :n] for layer in span.job.layers]
            if span.job.add(span.index, hidden[row, :n], doc_layers):
                span.job.finish(self.runner.info.width, self.runner.device)

    def observe(self, batch: list[SpanJob], started: float) -> None:
        """Stage timings for the metrics endpoint (no-op until it is served)."""
        if self.metrics is None:
            return
        name = self.runner.info.name
        self.metrics.FORWARD.labels(name).observe(time.perf_counter() - started)
        self.metrics.BATCH_SPANS.labels(name).observe(len(batch))
        now = time.monotonic()
        wait = self.metrics.QUEUE_WAIT.labels(name)
        for span in batch:
            wait.observe(now - span.queued_at)

    def _fail_alone(self, span: SpanJob, exc: Exception, oom: bool, pieces: int) -> None:
        if oom:
            span.job.fail(Overloaded(f"a span of {pieces} pieces does not fit in device memory"))
            return
        error_id = uuid.uuid4().hex[:12]
        log.error("forward failed for doc %r alone (error id %s)", span.job.doc.id[:64], error_id, exc_info=exc)
        span.job.fail(ModelFailure(f"model failure (error id {error_id})"))


def is_out_of_memory(exc: BaseException) -> bool:
    return isinstance(exc, (MemoryError, OutOfMemory, torch.OutOfMemoryError))


def job_layers(requested: tuple[int, ...], n_layers: int) -> tuple[int, ...]:
    """Hidden layer indices as non-negative positions in hidden_states (0 = embeddings)."""
    return tuple(layer if layer >= 0 else n_layers + 1 + layer for layer in requested)


__all__ = ["ModelWorker", "DocJob", "job_layers"]
