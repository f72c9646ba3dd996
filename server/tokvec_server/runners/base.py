"""What every runner provides: a tokenizer, a forward over a batch of spans, and facts about the model."""

from __future__ import annotations

import functools
import hashlib
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

import torch

from tokvec_server import validation
from tokvec_server.alignment import DocPlan, Specials, plan_docs
from tokvec_server.runners.batch import Batch
from tokvec_server.types import DType, EmbedOptions, SpanSpec, Tokens

# Files that decide what a row means: the weights and everything the tokenizer reads.
_FINGERPRINTED = (
    "*.safetensors",
    "*.bin",
    "*.onnx",
    "tokenizer.json",
    "vocab.txt",
    "vocab.json",
    "merges.txt",
    "*.model",
    "config.json",
    "tokenizer_config.json",
)


class StartupError(Exception):
    """The model cannot be served; the message names the path or setting and the cause."""


class OutOfMemory(Exception):
    """A runner without torch's own OOM error (or a test's fault hook) ran out of memory."""


def one_line(exc: BaseException, limit: int = 200) -> str:
    """An exception as one short line, for the single line a failed start prints."""
    text = " ".join(str(exc).split())
    return f"{type(exc).__name__}: {text[:limit]}{'...' if len(text) > limit else ''}"


@dataclass(frozen=True)
class ModelInfo:
    name: str
    fingerprint: str
    width: int
    max_length: int
    n_layers: int
    backend: str
    device: str
    dtype: DType
    # A spaCy pipeline's encoder: the pipeline (folder or package name) and its component; "" else.
    pipeline: str = ""
    component: str = ""


class Runner(Protocol):
    """A model behind the engine's queue. Its docs are planned (cut into spans of "pieces", and
    aligned back to the caller's tokens) in the engine's prep pool, batched by the scheduler, run
    by the model's thread, and pooled into token rows by batching/collect.py."""

    info: ModelInfo
    tokenizer: Any  # the wordpiece tokenizer the Tokenize RPC shows; None for a model without one
    device: torch.device  # where forward's rows are
    # True: a forward costs the batch's pieces (it runs them ragged). False: it pads the batch to
    # a rectangle, and costs rows x longest. The scheduler packs batches by this cost.
    ragged: bool

    def check_options(self, options: EmbedOptions) -> None:
        """Raise InvalidInput, naming the field, for options this model cannot honour."""
        ...

    def plan(self, docs: list[Tokens], spans: SpanSpec) -> list[DocPlan]:
        """Each doc's spans and alignment. Called from the engine's prep threads, never the
        model's; ``docs`` are validated and ``spans`` passed ``check_options``."""
        ...

    def enter_thread(self) -> None:
        """Called once by the model's thread before its first forward."""
        ...

    def forward(self, batch: Batch, layers: tuple[int, ...]) -> tuple[torch.Tensor, list[torch.Tensor]]:
        """Last hidden state and the chosen hidden layers, on the device, in the batch's flat
        layout. Shape: (n_pieces, width) each."""
        ...


class WordpieceRunner:
    """What the transformer runners share: docs cut into spans of wordpieces by the model's
    fast tokenizer (alignment/), options checked against its max_length and hidden layers."""

    info: ModelInfo
    tokenizer: Any

    @functools.cached_property
    def specials(self) -> Specials:
        return Specials.of(self.tokenizer)

    def check_options(self, options: EmbedOptions) -> None:
        n_special = len(self.specials.prefix) + len(self.specials.suffix)
        validation.check_options(options, self.info.max_length, n_special, self.info.n_layers)

    def plan(self, docs: list[Tokens], spans: SpanSpec) -> list[DocPlan]:
        return plan_docs(docs, spans, self.tokenizer, self.info.max_length, self.specials)


def fingerprint(folder: Path, width: int) -> str:
    """sha256 over the weights and tokenizer files, and the width: two servers agree on rows only
    when their fingerprints are equal."""
    digest = hashlib.sha256()
    files = sorted({p for pattern in _FINGERPRINTED for p in folder.glob(pattern) if p.is_file()})
    if not files:
        raise StartupError(f"--model {folder.name}: no weight or tokenizer files found")
    for path in files:
        digest.update(path.name.encode())
        with path.open("rb") as f:
            for block in iter(lambda: f.read(1 << 20), b""):
                digest.update(block)
    return f"{digest.hexdigest()[:16]}-{width}"


def resolve_device(device: str) -> torch.device:
    if device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if device.startswith("cuda") and not torch.cuda.is_available():
        raise StartupError(f"--device {device}: CUDA is not available on this machine")
    return torch.device(device)


def resolve_dtype(dtype: str, device: torch.device) -> DType:
    if dtype == "auto":
        return DType.FLOAT16 if device.type == "cuda" else DType.FLOAT32
    if dtype != "float32" and device.type != "cuda":
        raise StartupError(f"--dtype {dtype}: half precision needs a CUDA device (device is {device})")
    return DType(dtype)


TORCH_DTYPES = {DType.FLOAT32: torch.float32, DType.FLOAT16: torch.float16, DType.BFLOAT16: torch.bfloat16}
