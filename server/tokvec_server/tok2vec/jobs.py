"""A tok2vec doc in flight. It goes through the shared Scheduler (batching/queue.py) as one span
whose "pieces" are its tokens: a CNN tok2vec cuts nothing, so a whole doc is one model input, and
the scheduler's fairness, deadlines, queue timeouts and admission limits apply unchanged."""

from __future__ import annotations

import math
import threading
import time
from dataclasses import dataclass, field
from typing import Any, Callable

import numpy as np

from tokvec_server.batching.jobs import SpanJob
from tokvec_server.errors import TokvecError
from tokvec_server.types import EmbedOptions, Tokens

Deliver = Callable[[Any], None]  # DocOutput | TokvecError; thread-safe, called once


@dataclass(eq=False)
class Tok2VecJob:
    tokens: Tokens
    doc: Any  # the spaCy Doc made from ``tokens`` on the runner's vocab
    options: EmbedOptions
    deliver: Deliver
    client: str = ""  # who asked (the peer): the scheduler shares batches fairly between clients
    deadline: float = math.inf  # time.monotonic() after which the caller no longer waits
    cancelled: threading.Event = field(default_factory=threading.Event)
    # The model's thread may settle a doc while the reaper fails it (its deadline passed).
    _lock: threading.Lock = field(default_factory=threading.Lock)
    _delivered: bool = False

    @property
    def n_tokens(self) -> int:
        return len(self.tokens.words)

    def spans(self) -> list[SpanJob]:
        # The scheduler reads only the length of ``ids``: here, one entry per token.
        return [SpanJob(self, 0, np.zeros(self.n_tokens, np.int8), time.monotonic())]  # type: ignore[arg-type]

    @property
    def done(self) -> bool:
        return self._delivered or self.cancelled.is_set()

    def settle(self, result: Any) -> None:
        with self._lock:
            claimed, self._delivered = not self._delivered, True
        if claimed:
            self.deliver(result)

    def fail(self, error: TokvecError) -> None:
        self.settle(error)
