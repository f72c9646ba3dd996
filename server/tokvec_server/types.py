"""Plain request types shared by every stage; protobuf never reaches past rpc/convert.py."""

from __future__ import annotations

import enum
from dataclasses import dataclass, field

import numpy as np


class Pooling(str, enum.Enum):
    MEAN = "mean"
    MAX = "max"
    FIRST = "first"
    LAST = "last"
    SUM = "sum"


class DType(str, enum.Enum):
    FLOAT32 = "float32"
    FLOAT16 = "float16"
    BFLOAT16 = "bfloat16"


class Output(str, enum.Enum):
    TOKENS = "tokens"
    PIECES = "pieces"
    DOC_VECTOR = "doc_vector"
    CHUNK_VECTORS = "chunk_vectors"


@dataclass(frozen=True)
class SpanSpec:
    """How a doc is cut into model inputs: ``doc``, ``sents``, ``tokens:W:S`` or ``pieces:W:S``."""

    kind: str = "tokens"
    window: int = 128
    stride: int = 96

    @classmethod
    def parse(cls, text: str) -> SpanSpec:
        kind, *numbers = text.split(":")
        if kind in ("doc", "sents") and not numbers:
            return cls(kind, 0, 0)
        if kind in ("tokens", "pieces") and len(numbers) == 2 and all(n.isdigit() for n in numbers):
            return cls(kind, int(numbers[0]), int(numbers[1]))
        raise ValueError(f"spans: {text!r} is not doc, sents, tokens:W:S or pieces:W:S")

    def __str__(self) -> str:
        return self.kind if self.kind in ("doc", "sents") else f"{self.kind}:{self.window}:{self.stride}"


@dataclass(frozen=True)
class EmbedOptions:
    model: str = ""
    pooling: Pooling = Pooling.MEAN
    spans: SpanSpec = SpanSpec()
    dtype: DType = DType.FLOAT32
    outputs: frozenset[Output] = frozenset({Output.TOKENS})
    hidden_layers: tuple[int, ...] = ()
    more_poolings: tuple[Pooling, ...] = ()  # further poolings of the token rows, from the same forward
    chunk_poolings: tuple[Pooling, ...] = ()  # empty: (pooling,)

    @property
    def chunk_pooling_list(self) -> tuple[Pooling, ...]:
        """The poolings of the chunk vectors, one tensor each."""
        return self.chunk_poolings or (self.pooling,)


@dataclass
class DocInput:
    """One caller doc as received: words + spaces, or text for the server to tokenize."""

    id: str = ""
    words: list[str] = field(default_factory=list)
    spaces: list[bool] = field(default_factory=list)
    text: str = ""
    sent_starts: list[bool] = field(default_factory=list)
    lang: str = ""
    # The caller's chunks, ranges to pool one vector each over: [start, end) in ``chunk_unit``.
    chunk_starts: list[int] = field(default_factory=list)
    chunk_ends: list[int] = field(default_factory=list)
    chunk_unit: str = "tokens"  # or "chars"


@dataclass
class Tokens:
    """A validated doc: the caller's tokens (or the server's, for text docs)."""

    id: str
    words: list[str]
    spaces: list[bool]
    sent_starts: list[bool] | None
    from_text: bool = False
    # The doc's chunks as token ranges [start, end), validated. Shape: (n_chunks, 2)
    chunks: np.ndarray | None = None
