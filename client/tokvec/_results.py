"""Info and Tokenize responses as plain dataclasses."""

from __future__ import annotations

from dataclasses import dataclass, field

from tokvec.errors import DocError, status_code
from tokvec.v1 import tokvec_pb2 as pb

_DTYPE_NAMES = {
    pb.DTYPE_FLOAT32: "float32",
    pb.DTYPE_FLOAT16: "float16",
    pb.DTYPE_BFLOAT16: "bfloat16",
    pb.DTYPE_UNSPECIFIED: "float32",
}


@dataclass(frozen=True)
class ModelInfo:
    name: str
    fingerprint: str
    width: int
    max_length: int
    backend: str
    device: str
    dtype: str
    n_layers: int
    is_default: bool
    pipeline: str = ""  # a spaCy pipeline's encoder: the pipeline and its component; "" else
    component: str = ""


@dataclass(frozen=True)
class ServerInfo:
    version: str
    models: list[ModelInfo]
    limits: dict[str, int]

    @property
    def model(self) -> ModelInfo:
        """The default model."""
        return next((m for m in self.models if m.is_default), self.models[0])


def server_info(msg: pb.InfoResponse) -> ServerInfo:
    models = [
        ModelInfo(
            m.name,
            m.fingerprint,
            m.width,
            m.max_length,
            m.backend,
            m.device,
            _DTYPE_NAMES.get(m.dtype, "?"),
            m.n_layers,
            m.is_default,
            m.pipeline,
            m.component,
        )
        for m in msg.models
    ]
    limits = {f.name: getattr(msg.limits, f.name) for f in msg.limits.DESCRIPTOR.fields}
    return ServerInfo(msg.version, models, limits)


@dataclass
class SpanPieces:
    token_start: int
    token_end: int
    pieces: list[str]
    ids: list[int]
    char_starts: list[int]
    char_ends: list[int]


@dataclass
class TokenizedDoc:
    id: str
    words: list[str]
    spaces: list[bool]
    spans: list[SpanPieces] = field(default_factory=list)
    align_lengths: list[int] = field(default_factory=list)
    align_indices: list[int] = field(default_factory=list)
    no_piece: list[int] = field(default_factory=list)
    truncated: list[int] = field(default_factory=list)
    error: DocError | None = None

    def pieces_of(self, token: int) -> list[str]:
        """The pieces aligned to one token, e.g. ``['can']`` or ``['[UNK]']``."""
        flat = [p for span in self.spans for p in span.pieces]
        start = sum(self.align_lengths[:token])
        return [flat[i] for i in self.align_indices[start : start + self.align_lengths[token]]]


def tokenized(msg: pb.TokenizeResponse) -> list[TokenizedDoc]:
    out = []
    for i, d in enumerate(msg.docs):
        error = DocError(d.error.message, status_code(d.error.code), i, d.id) if d.HasField("error") else None
        out.append(
            TokenizedDoc(
                d.id,
                list(d.words),
                list(d.spaces),
                [
                    SpanPieces(
                        s.token_start, s.token_end, list(s.pieces), list(s.ids), list(s.char_starts), list(s.char_ends)
                    )
                    for s in d.spans
                ],
                list(d.align_lengths),
                list(d.align_indices),
                list(d.no_piece),
                list(d.truncated),
                error,
            )
        )
    return out
