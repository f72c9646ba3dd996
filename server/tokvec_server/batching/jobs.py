"""A doc in flight: its spans go through the model (perhaps in different batches); when the last
one is back, batching/collect.py turns its piece rows into the doc's outputs."""

from __future__ import annotations

import math
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch

from tokvec_server.alignment import DocPlan
from tokvec_server.errors import TokvecError
from tokvec_server.types import EmbedOptions, Tokens


@dataclass
class DocOutput:
    """Host arrays in the wire dtype (bfloat16 travels as its uint16 bit pattern)."""

    doc: Tokens
    plan: DocPlan
    rows: np.ndarray | None  # pooled token rows. Shape: (n_tokens, width)
    layers: list[np.ndarray]  # Shape: (n_tokens, width) each
    pieces: np.ndarray | None  # Shape: (n_pieces, width)
    doc_vector: np.ndarray | None  # Shape: (width,)
    # The token rows under each of options.more_poolings, in order (empty: none asked, or a model
    # whose rows are per token already, where every pooling is ``rows``). Shape: (n_tokens, width) each
    pooled: list[np.ndarray] = field(default_factory=list)
    # One per chunk pooling (OUTPUT_CHUNK_VECTORS), in order. Shape: (n_chunks, width) each
    chunk_vectors: list[np.ndarray] = field(default_factory=list)
    chunk_no_piece: np.ndarray = field(default_factory=lambda: np.zeros(0, np.int64))  # Shape: (k,)


Deliver = Callable[["DocOutput | TokvecError"], None]


@dataclass(eq=False)
class DocJob:
    doc: Tokens
    plan: DocPlan
    options: EmbedOptions
    layers: tuple[int, ...]  # requested hidden layers as non-negative indices
    deliver: Deliver  # thread-safe; called exactly once
    client: str = ""  # who asked (the peer): the scheduler shares batches fairly between clients
    deadline: float = math.inf  # time.monotonic() after which the caller no longer waits
    cancelled: threading.Event = field(default_factory=threading.Event)
    # The model's thread may finish a doc while the reaper fails it (its deadline passed).
    _lock: threading.Lock = field(default_factory=threading.Lock)
    # Per span: its batch's rows (device memory) and where the span's rows start in them.
    parts: list[tuple[torch.Tensor, int] | None] = field(init=False)
    layer_parts: list[list[torch.Tensor]] = field(init=False)
    _left: int = field(init=False)
    _delivered: bool = False

    def __post_init__(self) -> None:
        self.parts = [None] * len(self.plan.span_ids)
        self.layer_parts = [[] for _ in self.plan.span_ids]
        self._left = len(self.plan.span_ids)

    def spans(self) -> list[SpanJob]:
        now = time.monotonic()
        return [SpanJob(self, i, ids, now) for i, ids in enumerate(self.plan.span_ids)]

    def add(self, index: int, rows: torch.Tensor, start: int, layers: list[torch.Tensor]) -> bool:
        """One span is back: its rows are ``rows[start : start + len(span)]``, its chosen hidden
        layers ``layers``. True when the doc has all of its spans."""
        self.parts[index] = (rows, start)
        self.layer_parts[index] = layers
        self._left -= 1
        return self._left == 0

    @property
    def done(self) -> bool:
        return self._delivered or self.cancelled.is_set()

    def claim(self) -> bool:
        """True for the one caller that gets to deliver."""
        with self._lock:
            claimed, self._delivered = not self._delivered, True
            return claimed

    def fail(self, error: TokvecError) -> None:
        if self.claim():
            self.deliver(error)


@dataclass(eq=False)
class SpanJob:
    job: DocJob
    index: int
    ids: np.ndarray
    queued_at: float

    @property
    def input(self) -> Any:
        """The runner's own input for this span (DocPlan.inputs), or None."""
        inputs = self.job.plan.inputs
        return inputs[self.index] if inputs else None
