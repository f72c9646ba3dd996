"""A doc in flight: its spans go through the model (perhaps in different batches); when the last
one is back, the doc's piece rows are pooled on the device and copied to host once."""

from __future__ import annotations

import math
import threading
import time
from dataclasses import dataclass, field
from typing import Callable

import numpy as np
import torch

from tokvec_server.alignment import DocPlan
from tokvec_server.errors import ModelFailure, TokvecError
from tokvec_server.pooling import pool
from tokvec_server.runners.base import TORCH_DTYPES
from tokvec_server.types import DType, EmbedOptions, Output, Tokens


@dataclass
class DocOutput:
    """Host arrays in the wire dtype (bfloat16 travels as its uint16 bit pattern)."""

    doc: Tokens
    plan: DocPlan
    rows: np.ndarray | None  # pooled token rows. Shape: (n_tokens, width)
    layers: list[np.ndarray]  # Shape: (n_tokens, width) each
    pieces: np.ndarray | None  # Shape: (n_pieces, width)
    doc_vector: np.ndarray | None  # Shape: (width,)


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
    parts: list[torch.Tensor | None] = field(init=False)
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

    def add(self, index: int, hidden: torch.Tensor, layers: list[torch.Tensor]) -> bool:
        """Store one span's rows (device tensors); True when the doc has all of them."""
        self.parts[index] = hidden
        self.layer_parts[index] = layers
        self._left -= 1
        return self._left == 0

    @property
    def done(self) -> bool:
        return self._delivered or self.cancelled.is_set()

    def fail(self, error: TokvecError) -> None:
        if not self._delivered:
            self._delivered = True
            self.deliver(error)

    def finish(self, width: int, device: torch.device) -> None:
        if self._delivered:
            return
        self._delivered = True
        try:
            self.deliver(_collect(self, width, device))
        except TokvecError as exc:
            self.deliver(exc)


@dataclass(eq=False)
class SpanJob:
    job: DocJob
    index: int
    ids: np.ndarray
    queued_at: float


def _to_host(rows: torch.Tensor, dtype: DType) -> np.ndarray:
    # Cast on the device so only the final bytes cross to host (half of them for fp16/bf16).
    rows = rows.to(TORCH_DTYPES[dtype])
    if dtype is DType.BFLOAT16:
        return rows.view(torch.int16).cpu().numpy().view(np.uint16)
    return rows.cpu().numpy()


def _collect(job: DocJob, width: int, device: torch.device) -> DocOutput:
    plan, options = job.plan, job.options
    if plan.span_ids:
        pieces = torch.cat([p for p in job.parts if p is not None])
    else:
        pieces = torch.zeros((0, width), device=device)
    wanted = options.outputs
    # Every output comes from these rows, special pieces included: a NaN only in the [CLS] row
    # pools into no token row, yet would reach the caller through the doc vector or the pieces.
    rows_run = [pieces, *(part for parts in job.layer_parts for part in parts)]
    if not all(bool(torch.isfinite(r).all()) for r in rows_run):
        raise ModelFailure("the model produced non-finite values for this doc")
    tokens = pool(pieces, plan.align_lengths, plan.align_indices, options.pooling)
    layers = []
    for k in range(len(job.layers)):
        layer = torch.cat([parts[k] for parts in job.layer_parts]) if plan.span_ids else pieces
        layers.append(_to_host(pool(layer, plan.align_lengths, plan.align_indices, options.pooling), options.dtype))
    doc_vector = pieces.float().mean(0) if len(pieces) else pieces.new_zeros(width, dtype=torch.float32)
    return DocOutput(
        doc=job.doc,
        plan=plan,
        rows=_to_host(tokens, options.dtype) if Output.TOKENS in wanted else None,
        layers=layers,
        pieces=_to_host(pieces, options.dtype) if Output.PIECES in wanted else None,
        doc_vector=_to_host(doc_vector, options.dtype) if Output.DOC_VECTOR in wanted else None,
    )
