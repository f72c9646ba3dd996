"""A deterministic stand-in model for batching, transport and fault tests.

It uses the real tokenizer of a model folder, and a seeded random embedding table plus a little
context (the mean of the span's embeddings), so rows depend on the whole span but never on
padding or batch-mates. Fault hooks let tests gate, slow down or break the forward.
"""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

from tokvec_server.runners.base import ModelInfo, OutOfMemory, WordpieceRunner, fingerprint, resolve_device
from tokvec_server.runners.batch import Batch
from tokvec_server.types import DType


def _open_gate() -> threading.Event:
    gate = threading.Event()
    gate.set()
    return gate


@dataclass
class Faults:
    delay_s: float = 0.0
    gate: threading.Event = field(default_factory=_open_gate)  # clear() holds every forward
    poison_id: int | None = None  # a batch holding this piece id raises
    nan_id: int | None = None  # a span holding this piece id comes out NaN
    oom_above: int | None = None  # a batch of more pieces raises OutOfMemory
    calls: list[list[int]] = field(default_factory=list)  # the first piece after [CLS] of each span, per call


class FakeRunner(WordpieceRunner):
    def __init__(self, folder: Path, name: str, width: int = 384, n_layers: int = 2, device: str = "cpu") -> None:
        from transformers import AutoTokenizer

        self.tokenizer = AutoTokenizer.from_pretrained(folder, use_fast=True, local_files_only=True)
        self.device = resolve_device(device)
        generator = torch.Generator().manual_seed(0)
        self.table = torch.randn(len(self.tokenizer), width, generator=generator).to(self.device)
        self.faults = Faults()
        self.ragged = True
        self.info = ModelInfo(
            name, "fake-" + fingerprint(folder, width), width, 512, n_layers, "fake", str(self.device), DType.FLOAT32
        )

    def enter_thread(self) -> None:
        """Nothing to set up: the fake computes on the calling thread."""

    def forward(self, batch: Batch, layers: tuple[int, ...]) -> tuple[torch.Tensor, list[torch.Tensor]]:
        self.faults.gate.wait()
        ids = torch.from_numpy(batch.ids).to(self.device)
        self.faults.calls.append(batch.ids[np.minimum(batch.starts[:-1] + 1, batch.starts[1:] - 1)].tolist())
        if self.faults.delay_s:
            time.sleep(self.faults.delay_s)
        faults = self.faults
        if faults.oom_above is not None and len(batch.ids) > faults.oom_above:
            raise OutOfMemory(f"{len(batch.ids)} pieces > {faults.oom_above}")
        if faults.poison_id is not None and bool((ids == faults.poison_id).any()):
            raise RuntimeError("poisoned batch")
        emb = self.table[ids]
        span = batch.span_index()
        # A little context: each span's mean embedding, added to its pieces.
        span_t = torch.from_numpy(span).to(self.device)
        context = torch.zeros((batch.n_spans, emb.shape[1]), device=self.device).index_add_(0, span_t, emb)
        context /= torch.from_numpy(np.maximum(batch.lengths, 1)).to(self.device).unsqueeze(1)
        hidden = emb + 0.1 * context[span_t]
        if faults.nan_id is not None:
            poisoned = np.isin(span, span[batch.ids == faults.nan_id])
            hidden[torch.from_numpy(poisoned).to(self.device)] = float("nan")
        return hidden, [hidden * (1 + i) for i, _ in enumerate(layers)]
