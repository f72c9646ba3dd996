"""The server's core, free of protobuf: validate and plan docs off the event loop, queue their
spans, and hand back one awaitable result per doc, in order. One pipeline for every runner: the
runner plans its own docs (wordpieces for a transformer, the tokens themselves for a spaCy
tok2vec) and the rest (queue, model thread, deadlines, out of memory, collection) is shared."""

from __future__ import annotations

import asyncio
import functools
import logging
import math
import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

from tokvec_server import validation
from tokvec_server.alignment import DocPlan
from tokvec_server.batching import collect
from tokvec_server.batching.jobs import Deliver, DocJob, DocOutput
from tokvec_server.batching.queue import Scheduler
from tokvec_server.batching.worker import ModelWorker, job_layers
from tokvec_server.errors import InvalidInput, TokvecError
from tokvec_server.outbox import Outbox
from tokvec_server.runners import Runner
from tokvec_server.settings import Limits, ModelSettings
from tokvec_server.threads import lower_priority
from tokvec_server.types import DocInput, EmbedOptions, SpanSpec, Tokens

log = logging.getLogger("tokvec.engine")

Prepared = tuple[Tokens, DocPlan] | TokvecError

# The largest request (in words) prepared on an idle model's thread. Preparing takes about
# 14 us a word here (0.55 ms for 40 words); while the model's thread prepares, a doc that another
# caller queues waits for it, so only small requests take the idle path: at this size, about
# 3.5 ms at most, and under load the model is rarely idle anyway.
IDLE_PATH_MAX_WORDS = 256


class Engine:
    """One served model: its runner, its queue and its worker threads."""

    def __init__(
        self,
        model: ModelSettings,
        limits: Limits,
        runner: Runner,
        words: validation.SpacyWords,
        on_fatal: Callable[[BaseException], None],
    ) -> None:
        self.model = model
        self.limits = limits
        self.runner = runner
        self.info = runner.info
        b = model.batching
        self.scheduler = Scheduler(
            b.max_batch_items,
            b.max_wait_ms / 1000,
            b.max_queued_pieces,
            b.max_queued_docs,
            b.max_queue_ms / 1000,
            runner.ragged,
            b.min_padding_efficiency,
            b.rearrival_ms / 1000,
        )
        self.worker = ModelWorker(runner, self.scheduler, on_fatal)
        self.metrics: Any = None  # the tokvec_server.metrics module, once metrics are served
        self.words = words
        # Tokenizing is CPU work: it runs here, never on the event loop, and below it (threads.py).
        self._prep = ThreadPoolExecutor(max_workers=2, thread_name_prefix="tokvec-tokenize", initializer=lower_priority)

    def start(self) -> None:
        self.worker.start()

    def stop(self) -> None:
        self.scheduler.close()
        self.worker.join(timeout=5)
        self._prep.shutdown(wait=False, cancel_futures=True)

    def warmup(self) -> float:
        """Run one full-budget batch so the first caller pays no allocation cost; seconds taken."""
        started = time.perf_counter()
        window = min(self.info.max_length or 128, 128)  # max_length 0: no piece limit
        rows = max(1, self.model.batching.max_batch_items // window)
        words = ["warm"] * (window - 2)
        docs = [Tokens(f"warmup-{i}", words, [True] * len(words), None) for i in range(rows)]
        plans = self.runner.plan(docs, SpanSpec("doc", 0, 0))
        done = [False] * rows
        for i, plan in enumerate(plans):
            job = DocJob(docs[i], plan, EmbedOptions(), (), functools.partial(_mark_done, done, i))
            self.scheduler.submit([job])
        while not all(done):
            time.sleep(0.01)
        return time.perf_counter() - started

    def check_options(self, options: EmbedOptions) -> None:
        self.runner.check_options(options)

    def _prepare(self, docs: list[DocInput], options: EmbedOptions, first_index: int = 0) -> list[Prepared]:
        need_sents = options.spans.kind == "sents"
        checked: list[Tokens | TokvecError] = []
        for i, doc in enumerate(docs, first_index):
            try:
                tokens = validation.check_doc(doc, i, self.limits, self.words, need_sents)
                checked.append(validation.check_chunks(doc, tokens, i, self.limits, options))
            except TokvecError as exc:
                checked.append(exc)
        valid = [t for t in checked if isinstance(t, Tokens)]
        plans = iter(self.runner.plan(valid, options.spans))
        return [(t, next(plans)) if isinstance(t, Tokens) else t for t in checked]

    async def plan(self, docs: list[DocInput], options: EmbedOptions, first_index: int = 0) -> list[Prepared]:
        """Validate and tokenize in the prep pool: per doc, its tokens and plan, or its error.
        Errors name doc k as ``docs[first_index + k]``."""
        self.check_options(options)
        loop = asyncio.get_running_loop()
        started = time.perf_counter()
        prepared = await loop.run_in_executor(self._prep, self._prepare, docs, options, first_index)
        self._observe_prep(started)
        return prepared

    async def tokenize(self, docs: list[DocInput], options: EmbedOptions) -> list[Prepared]:
        """The Tokenize RPC: ``plan``, for a model with wordpieces to show."""
        if self.runner.tokenizer is None:
            raise InvalidInput(
                f"model: {self.info.name!r} ({self.info.backend}) has no wordpieces to show (one row per token by construction)"
            )
        return await self.plan(docs, options)

    def check_room(self, n_docs: int, client: str = "") -> None:
        """Raises Overloaded when this many more docs from ``client`` would pass the queue's bound."""
        self.scheduler.check_room(n_docs, client)

    async def embed(
        self,
        docs: list[DocInput],
        options: EmbedOptions,
        client: str = "",
        deadline: float = math.inf,
        first_index: int = 0,
    ) -> list[asyncio.Future[DocOutput]]:
        """Queue every valid doc; one future per doc, in order. A bad doc's future holds its error,
        naming doc k as ``docs[first_index + k]`` (a stream's docs by their place in the stream).

        Raises Overloaded, before any tokenizing, when the docs would pass the queue's bound: the
        request is refused as a whole, and a unary call ends with that status at once rather than
        streaming one refusal per doc. Cancelling a future takes its doc out of the queue before
        it reaches the model.

        A small request that finds the model idle is prepared on the model's thread (the idle
        path: two thread hops, loop -> model -> loop, instead of four through the prep pool);
        any other goes through the prep pool while the model runs."""
        loop = asyncio.get_running_loop()
        self.check_room(len(docs), client)
        self.check_options(options)
        futures: list[asyncio.Future[DocOutput]] = [loop.create_future() for _ in docs]
        # Made here, on the loop, so that a cancel reaches the doc whichever thread queues it.
        cancels = [threading.Event() for _ in docs]
        for future, cancelled in zip(futures, cancels):
            future.add_done_callback(functools.partial(self._on_done, cancelled))
        resolve = Outbox.of(loop).resolver
        request = _Request(docs, options, first_index, [resolve(f) for f in futures], cancels, client, deadline)
        if _words(docs) <= IDLE_PATH_MAX_WORDS:
            started = time.perf_counter()
            if self.scheduler.offer(functools.partial(self._prepare_and_queue, request, started)):
                return futures
        self._queue(request, await self.plan(docs, options, first_index))
        return futures

    def _prepare_and_queue(self, request: _Request, started: float) -> None:
        """The idle path, on the model's thread: prepare and queue, never raise (an unexpected
        error fails this request's docs, as it would fail the call on the pool path)."""
        try:
            prepared = self._prepare(request.docs, request.options, request.first_index)
        except Exception as exc:  # noqa: BLE001 - handed to the caller, whose handler logs it
            for deliver in request.delivers:
                deliver(exc)  # type: ignore[arg-type]
            return
        self._observe_prep(started)
        self._queue(request, prepared)

    def _observe_prep(self, started: float) -> None:
        if self.metrics is not None:  # the stage as a call sees it: the wait for the preparing thread counts
            self.metrics.PREP.labels(self.info.name).observe(time.perf_counter() - started)

    def _queue(self, request: _Request, prepared: list[Prepared]) -> None:
        """Each prepared doc becomes a queued job (an empty one is answered at once, with no model
        call); each bad doc gets its error. Thread-safe: the loop and the model's thread call it."""
        layers = job_layers(request.options.hidden_layers, self.info.n_layers)
        jobs: list[DocJob] = []
        for item, deliver, cancelled in zip(prepared, request.delivers, request.cancels):
            if isinstance(item, TokvecError):
                deliver(item)
                continue
            tokens, plan = item
            job = DocJob(tokens, plan, request.options, layers, deliver, request.client, request.deadline, cancelled)
            if plan.span_ids:
                jobs.append(job)
            else:
                collect.finish([job], self.info.width, self.runner.device)  # empty doc: (0, width), no model call
        if jobs:
            try:
                self.scheduler.submit(jobs)
            except TokvecError as exc:
                for job in jobs:
                    job.fail(exc)

    def _on_done(self, cancelled: threading.Event, future: asyncio.Future[DocOutput]) -> None:
        if future.cancelled():
            cancelled.set()
            self.scheduler.wake()


def _mark_done(done: list[bool], i: int, _result: object) -> None:
    done[i] = True


@dataclass(frozen=True)
class _Request:
    """One embed call's docs, and per doc: its thread-safe deliver and its cancel flag."""

    docs: list[DocInput]
    options: EmbedOptions
    first_index: int
    delivers: list[Deliver]
    cancels: list[threading.Event]
    client: str
    deadline: float


def _words(docs: list[DocInput]) -> int:
    """A request's size before tokenizing: its words, text counted at ~5 characters a word."""
    return sum(len(d.words) + len(d.text) // 5 for d in docs)
