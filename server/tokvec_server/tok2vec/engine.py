"""The tok2vec engine: the same interface as ``tokvec_server.engine.Engine`` (embed, plan, info,
start/stop/warmup), for a model whose rows are one per caller token by construction.

There is nothing to align and no wordpiece tokenizer: ``options.pooling`` and ``options.spans``
do not apply and are ignored (a whole doc is one model input, as in spaCy, and a row is already
per token); pieces and hidden layers do not exist and are refused by name.
"""

from __future__ import annotations

import asyncio
import functools
import math
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from typing import Any, Callable

import numpy as np

from tokvec_server import validation
from tokvec_server.batching.jobs import DocOutput
from tokvec_server.batching.queue import Scheduler
from tokvec_server.errors import InvalidInput, TokvecError
from tokvec_server.outbox import Outbox
from tokvec_server.settings import Limits, ModelSettings
from tokvec_server.threads import lower_priority
from tokvec_server.tok2vec.jobs import Tok2VecJob
from tokvec_server.tok2vec.runner import Tok2VecRunner
from tokvec_server.tok2vec.worker import Tok2VecWorker, collect
from tokvec_server.types import DocInput, EmbedOptions, Output, Tokens

Prepared = tuple[Tokens, Any] | TokvecError


class Tok2VecEngine:
    """One served tok2vec: its runner, its queue and its model thread."""

    def __init__(self, model: ModelSettings, limits: Limits, runner: Tok2VecRunner, words: validation.SpacyWords, on_fatal: Callable[[BaseException], None]) -> None:
        self.model = model
        self.limits = limits
        self.runner = runner
        self.info = runner.info
        self.words = words
        b = model.batching
        # The shared scheduler, with a doc's tokens as its pieces: budgets count tokens here.
        # spaCy's tok2vec runs docs as they are (ragged): a batch costs its tokens.
        self.scheduler = Scheduler(b.max_batch_items, b.max_wait_ms / 1000, b.max_queued_pieces, b.max_queued_docs, b.max_queue_ms / 1000, ragged=True, rearrival_s=b.rearrival_ms / 1000)
        self.worker = Tok2VecWorker(runner, self.scheduler, on_fatal)
        self.metrics: Any = None  # the tokvec_server.metrics module, once metrics are served
        # One thread validates and makes the spaCy Docs: the pipeline's Vocab is not safe to grow
        # from two. It runs beside the model thread, so doc n+1 is made while batch n runs.
        self._prep = ThreadPoolExecutor(max_workers=1, thread_name_prefix="tokvec-tok2vec-docs", initializer=lower_priority)

    def start(self) -> None:
        self.worker.start()

    def stop(self) -> None:
        self.scheduler.close()
        self.worker.join(timeout=5)
        self._prep.shutdown(wait=False, cancel_futures=True)

    def warmup(self) -> float:
        """Run one full-budget batch so the first caller pays no allocation cost; seconds taken."""
        started = time.perf_counter()
        words = ["warm"] * 64
        tokens = [Tokens(f"warmup-{i}", words, [True] * 64, None) for i in range(max(1, self.model.batching.max_batch_items // 64))]
        docs = self._prep.submit(self.runner.docs, tokens).result()
        left = [len(tokens)]
        done = threading.Event()

        def count(_result: object) -> None:
            left[0] -= 1
            if not left[0]:
                done.set()

        self.scheduler.submit([Tok2VecJob(t, d, EmbedOptions(), count) for t, d in zip(tokens, docs)])  # type: ignore[misc]
        done.wait()
        return time.perf_counter() - started

    def check_options(self, options: EmbedOptions) -> None:
        if Output.PIECES in options.outputs:
            raise InvalidInput(f"options.outputs: model {self.info.name!r} is a spaCy tok2vec: it has no pieces (its rows are per token already)")
        if options.hidden_layers:
            raise InvalidInput(f"options.hidden_layers: model {self.info.name!r} is a spaCy tok2vec: it has no hidden layers to choose from")

    def _prepare(self, docs: list[DocInput], first_index: int = 0) -> list[Prepared]:
        checked: list[Tokens | TokvecError] = []
        for i, doc in enumerate(docs, first_index):
            try:
                checked.append(validation.check_doc(doc, i, self.limits, self.words, need_sents=False))
            except TokvecError as exc:
                checked.append(exc)
        made = iter(self.runner.docs([t for t in checked if isinstance(t, Tokens)]))
        return [(t, next(made)) if isinstance(t, Tokens) else t for t in checked]

    async def plan(self, docs: list[DocInput], options: EmbedOptions) -> list[Any]:
        """The Tokenize RPC: a tok2vec has no wordpieces, so there is nothing to show."""
        raise InvalidInput(f"model: {self.info.name!r} is a spaCy tok2vec: it has no wordpieces to show (one row per token by construction)")

    def check_room(self, n_docs: int, client: str = "") -> None:
        """Raises Overloaded when this many more docs from ``client`` would pass the queue's bound."""
        self.scheduler.check_room(n_docs, client)

    async def embed(self, docs: list[DocInput], options: EmbedOptions, client: str = "", deadline: float = math.inf, first_index: int = 0) -> list[asyncio.Future[DocOutput]]:
        """Queue every valid doc; one future per doc, in order. A bad doc's future holds its error,
        naming doc k as ``docs[first_index + k]``.

        Raises Overloaded, before any spaCy Doc is made, when the docs would pass the queue's
        bound. Cancelling a future takes its doc out of the queue before it reaches the model."""
        self.check_options(options)
        self.check_room(len(docs), client)
        loop = asyncio.get_running_loop()
        started = time.perf_counter()
        prepared = await loop.run_in_executor(self._prep, self._prepare, docs, first_index)
        if self.metrics is not None:
            self.metrics.PREP.labels(self.info.name).observe(time.perf_counter() - started)
        futures: list[asyncio.Future[DocOutput]] = []
        jobs: list[Tok2VecJob] = []
        for item in prepared:
            future: asyncio.Future[DocOutput] = loop.create_future()
            futures.append(future)
            if isinstance(item, TokvecError):
                future.set_exception(item)
                continue
            job = Tok2VecJob(item[0], item[1], options, Outbox.of(loop).resolver(future), client, deadline)
            future.add_done_callback(functools.partial(self._on_done, job))
            if job.n_tokens:
                jobs.append(job)
            else:  # empty doc: (0, width), no model call
                job.settle(collect(job, np.zeros((0, self.info.width), np.float32)))
        if jobs:
            try:
                self.scheduler.submit(jobs)  # type: ignore[arg-type]
            except TokvecError as exc:
                for job in jobs:
                    job.fail(exc)
        return futures

    def _on_done(self, job: Tok2VecJob, future: asyncio.Future[DocOutput]) -> None:
        if future.cancelled():
            job.cancelled.set()
            self.scheduler.wake()
