"""tokvec_onnx.json: what an export folder holds and where it came from, checked at every start."""

from __future__ import annotations

import dataclasses
import hashlib
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

META_FILE = "tokvec_onnx.json"
MODEL_FILE = "model.onnx"
FORMAT = 1  # bump when the folder layout or the graph's inputs/outputs change


@dataclass(frozen=True)
class ExportMeta:
    source: str  # the HF folder it was exported from (informational)
    source_fingerprint: str  # runners.base.fingerprint of that folder: torch and onnx servers agree
    fingerprint: str  # what the onnx server reports: the source's, plus "-int8" when quantized
    opset: int
    ir_version: int
    n_hidden_states: int  # outputs hidden_state_0 .. hidden_state_{n-1}
    fusions: dict[str, int]  # fused operator -> count; empty when exported with --no-optimize
    quantize: str  # "" | "int8"
    check_max_abs_diff: float  # the export's own parity check against torch on a small padded batch
    versions: dict[str, str]  # torch, transformers, onnx, onnxruntime at export time
    files: dict[str, str] = field(default_factory=dict)  # every file in the folder but this one -> sha256
    format: int = FORMAT

    def write(self, folder: Path) -> None:
        (folder / META_FILE).write_text(json.dumps(dataclasses.asdict(self), indent=2, sort_keys=True) + "\n")


def sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def is_export(folder: Path) -> bool:
    return (folder / META_FILE).is_file()


def read(folder: Path) -> ExportMeta:
    """The folder's metadata, after checking every recorded file is there and unchanged: the
    fingerprint it reports is only true of the files it was written for. ValueError names the cause."""
    try:
        raw: dict[str, Any] = json.loads((folder / META_FILE).read_text())
        meta = ExportMeta(**raw)
    except (OSError, ValueError, TypeError) as exc:
        raise ValueError(f"{META_FILE} does not read: {exc}") from None
    if meta.format != FORMAT:
        raise ValueError(f"{META_FILE}: export format {meta.format}, this tokvec reads {FORMAT}; export again")
    if MODEL_FILE not in meta.files:
        raise ValueError(f"{META_FILE}: records no {MODEL_FILE}")
    for name, digest in sorted(meta.files.items()):
        path = folder / name
        if not path.is_file():
            raise ValueError(f"{name}: missing (recorded in {META_FILE})")
        if sha256(path) != digest:
            raise ValueError(f"{name}: changed since export (sha256 differs from {META_FILE}); export again")
    return meta
