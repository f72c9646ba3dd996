"""The model's own threads: one pads and uploads the next batch while the other runs the current
one through the model and collects the docs it completes (CPU prep overlaps device work)."""

from __future__ import annotations

import logging
import queue
import threading
import uuid
from typing import Callable

import numpy as np
import torch

from tokvec_server.batching.jobs import DocJob, SpanJob
from tokvec_server.batching.queue import Scheduler
from tokvec_server.errors import ModelFailure
from tokvec_server.runners.base import Runner, pad

log = logging.getLogger("tokvec.worker")

Prepared = tuple[list[SpanJob], torch.Tensor, torch.Tensor, tuple[int, ...]]


class ModelWorker:
    def __init__(self, runner: Runner, scheduler: Scheduler, on_fatal: Callable[[BaseException], None]) -> None:
        self.runner = runner
        self.scheduler = scheduler
        self.on_fatal = on_fatal
        self.pad_id = int(runner.tokenizer.pad_token_id or 0)
        # One prepared batch waits while the model runs another: enough to hide the prep.
        self._handoff: queue.Queue[Prepared | None] = queue.Queue(maxsize=1)
        self._threads = [
            threading.Thread(target=self._guard, args=(self._prepare_loop,), name="tokvec-prep", daemon=True),
            threading.Thread(target=self._guard, args=(self._device_loop,), name="tokvec-model", daemon=True),
        ]
        self.batches = 0

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
                self._run(*item)

    def _run(self, batch: list[SpanJob], ids: torch.Tensor, mask: torch.Tensor, layers: tuple[int, ...]) -> None:
        live = [s for s in batch if not s.job.cancelled.is_set()]
        if not live:
            return
        try:
            hidden, chosen = self.runner.forward(ids, mask, layers)
        except Exception:
            error_id = uuid.uuid4().hex[:12]
            log.exception("forward failed (error id %s)", error_id)
            for span in live:
                span.job.fail(ModelFailure(f"model failure (error id {error_id})"))
            return
        self.batches += 1
        lengths = np.fromiter((len(s.ids) for s in batch), dtype=np.int64, count=len(batch))
        for row, span in enumerate(batch):
            if span.job.cancelled.is_set():
                continue
            n = int(lengths[row])
            doc_layers = [chosen[layers.index(layer)][row, :n] for layer in span.job.layers]
            if span.job.add(span.index, hidden[row, :n], doc_layers):
                span.job.finish(self.runner.info.width, self.runner.device)


def job_layers(requested: tuple[int, ...], n_layers: int) -> tuple[int, ...]:
    """Hidden layer indices as non-negative positions in hidden_states (0 = embeddings)."""
    return tuple(layer if layer >= 0 else n_layers + 1 + layer for layer in requested)


__all__ = ["ModelWorker", "DocJob", "job_layers"]
