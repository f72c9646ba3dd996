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

import torch

from tokvec_server.runners.base import ModelInfo, OutOfMemory, fingerprint
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
    nan_id: int | None = None  # a row holding this piece id comes out NaN
    oom_above: int | None = None  # a batch of more padded pieces raises OutOfMemory
    calls: list[list[int]] = field(default_factory=list)  # the first piece after [CLS] of each row, per call


class FakeRunner:
    def __init__(self, folder: Path, name: str, width: int = 384, n_layers: int = 2) -> None:
        from transformers import AutoTokenizer

        self.tokenizer = AutoTokenizer.from_pretrained(folder, use_fast=True, local_files_only=True)
        self.device = torch.device("cpu")
        generator = torch.Generator().manual_seed(0)
        self.table = torch.randn(len(self.tokenizer), width, generator=generator)
        self.faults = Faults()
        self.info = ModelInfo(name, "fake-" + fingerprint(folder, width), width, 512, n_layers, "fake", "cpu", DType.FLOAT32)

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor, layers: tuple[int, ...]) -> tuple[torch.Tensor, list[torch.Tensor]]:
        self.faults.gate.wait()
        self.faults.calls.append(input_ids[:, 1].tolist())
        if self.faults.delay_s:
            time.sleep(self.faults.delay_s)
        faults = self.faults
        if faults.oom_above is not None and input_ids.numel() > faults.oom_above:
            raise OutOfMemory(f"{input_ids.numel()} padded pieces > {faults.oom_above}")
        if faults.poison_id is not None and bool((input_ids == faults.poison_id).any()):
            raise RuntimeError("poisoned batch")
        emb = self.table[input_ids]
        mask = attention_mask.unsqueeze(-1).to(emb.dtype)
        context = (emb * mask).sum(1) / mask.sum(1).clamp(min=1)
        hidden = emb + 0.1 * context.unsqueeze(1)
        if faults.nan_id is not None:
            hidden[(input_ids == faults.nan_id).any(1)] = float("nan")
        return hidden, [hidden * (1 + i) for i, _ in enumerate(layers)]
