"""``tokvec export-onnx``: a HuggingFace encoder folder -> a folder the onnx runner serves.

The folder holds ``model.onnx`` (fused, optionally int8), the tokenizer and config files copied
from the source, and ``tokvec_onnx.json`` (export/metadata.py). Steps: trace (export/trace.py)
-> fuse, quantize (export/optimize.py) -> check against torch -> write, atomically.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from pathlib import Path

from tokvec_server.export.metadata import META_FILE, MODEL_FILE, ExportMeta, is_export, read, sha256

DEFAULT_OPSET = 17
MIN_OPSET = 14  # ORT's BERT fusions expect at least this
MAX_OPSET = 20  # the TorchScript exporter's highest (torch.onnx warns past it and emits untested graphs)
QUANTIZE = ("", "int8")
# Everything the tokenizer and config loaders read; never weights.
_COPIED = (
    "config.json",
    "tokenizer.json",
    "tokenizer_config.json",
    "special_tokens_map.json",
    "added_tokens.json",
    "vocab.txt",
    "vocab.json",
    "merges.txt",
    "*.model",
)
# The export's own check: fp32 graph vs torch on a small padded batch (tests check the whole corpus).
_FP32_TOLERANCE = 1e-4


class ExportError(Exception):
    """The export cannot be made; the message names the path or option and the cause."""


def ir_version_for(opset: int) -> int:
    """The lowest ONNX IR version that carries ``opset``: the oldest file format any ORT that
    runs the opset reads."""
    import onnx

    for _release, ir, ai_onnx, *_ in onnx.helper.VERSION_TABLE:
        if ai_onnx >= opset:
            return int(ir)
    raise ExportError(f"--opset {opset}: unknown to onnx {onnx.__version__}")


def export_onnx(
    model_dir: Path,
    out_dir: Path,
    *,
    opset: int = DEFAULT_OPSET,
    optimize: bool = True,
    quantize: str = "",
    source: tuple[str, str] | None = None,
) -> ExportMeta:
    """Export ``model_dir`` into ``out_dir`` (replaced if it is an earlier export). ``model_dir``
    may be a spaCy pipeline (folder or package name): its spacy-transformers encoder is exported
    (export/pipeline.py). ``source``: (what, fingerprint) the metadata names as the source, for a
    folder written from another one; default: ``model_dir`` and its own fingerprint."""
    from tokvec_server.export.pipeline import export_pipeline, is_pipeline

    if source is None and is_pipeline(str(model_dir)):
        return export_pipeline(str(model_dir), Path(out_dir), opset=opset, optimize=optimize, quantize=quantize)
    model_dir, out_dir = Path(model_dir), Path(out_dir)
    if not (model_dir / "config.json").is_file():
        raise ExportError(f"MODEL_DIR {model_dir}: no config.json (not a HuggingFace model folder)")
    if quantize not in QUANTIZE:
        raise ExportError(f"--quantize {quantize}: only int8 is supported")
    if out_dir.exists() and not (out_dir.is_dir() and (is_export(out_dir) or not any(out_dir.iterdir()))):
        raise ExportError(f"OUT_DIR {out_dir}: exists and is not an empty folder or an earlier export")
    if not MIN_OPSET <= opset <= MAX_OPSET:
        raise ExportError(f"--opset {opset}: outside [{MIN_OPSET}, {MAX_OPSET}]")
    out_dir.parent.mkdir(parents=True, exist_ok=True)
    work = Path(tempfile.mkdtemp(prefix=f".{out_dir.name}.", dir=out_dir.parent))
    try:
        meta = _export_into(model_dir, work, opset, optimize, quantize, source)
        _replace(work, out_dir)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    return meta


def _export_into(
    model_dir: Path, work: Path, opset: int, optimize: bool, quantize: str, source: tuple[str, str] | None = None
) -> ExportMeta:
    import onnx
    import onnxruntime
    import torch
    import transformers

    from tokvec_server.export import optimize as rewrite
    from tokvec_server.export import trace
    from tokvec_server.runners.base import StartupError, fingerprint, one_line

    try:
        model = trace.load_encoder(model_dir)
    except Exception as exc:  # transformers raises many kinds; all mean "cannot export this"
        raise ExportError(f"MODEL_DIR {model_dir}: weights do not load: {one_line(exc)}") from None
    config = model.config
    width = int(config.hidden_size)
    try:
        source_name, source_fp = source or (str(model_dir.resolve()), fingerprint(model_dir, width))
    except StartupError as exc:
        raise ExportError(str(exc)) from None
    ir_version = ir_version_for(opset)
    staged = work / "stage"
    staged.mkdir()
    raw = staged / "traced.onnx"
    try:
        n_hidden = trace.trace_to_onnx(model, raw, opset, ir_version)
    except Exception as exc:
        raise ExportError(f"MODEL_DIR {model_dir}: torch.onnx.export failed: {one_line(exc)}") from None
    current, fusions = raw, {}
    if optimize:
        fused = staged / "fused.onnx"
        fusions = rewrite.fuse(current, fused, int(config.num_attention_heads), width)
        current = fused
    if quantize == "int8":
        quantized = staged / "int8.onnx"
        rewrite.quantize_int8(current, quantized)
        current = quantized
    current.replace(work / MODEL_FILE)
    shutil.rmtree(staged)
    for pattern in _COPIED:
        for path in model_dir.glob(pattern):
            if path.is_file():
                shutil.copy2(path, work / path.name)
    graph = onnx.load(str(work / MODEL_FILE), load_external_data=False)
    diff = _check(model, work, quantize)
    meta = ExportMeta(
        source=source_name,
        source_fingerprint=source_fp,
        fingerprint=source_fp + ("-int8" if quantize else ""),
        opset=next(o.version for o in graph.opset_import if o.domain in ("", "ai.onnx")),
        ir_version=int(graph.ir_version),
        n_hidden_states=n_hidden,
        fusions=fusions,
        quantize=quantize,
        check_max_abs_diff=diff,
        versions={
            "torch": torch.__version__,
            "transformers": transformers.__version__,
            "onnx": onnx.__version__,
            "onnxruntime": onnxruntime.__version__,
        },
        files={p.name: sha256(p) for p in sorted(work.iterdir()) if p.is_file()},
    )
    meta.write(work)
    return meta


def _check(model: object, folder: Path, quantize: str) -> float:
    """Max |ORT - torch| over the last hidden state of a small padded batch of text: proves the
    installed onnxruntime loads the file (opset, IR version) and that the graph is the model."""
    import numpy as np
    import onnxruntime
    import torch
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(folder, use_fast=True, local_files_only=True)
    texts = ["The quick brown fox jumps over the lazy dog.", "Padding rows must not change the others."] * 2
    batch = tokenizer(texts[:3] + ["Short."], padding=True, return_tensors="np")
    feed = {
        "input_ids": batch["input_ids"].astype(np.int64),
        "attention_mask": batch["attention_mask"].astype(np.int64),
    }
    try:
        session = onnxruntime.InferenceSession(str(folder / MODEL_FILE), providers=["CPUExecutionProvider"])
        (got,) = session.run(["last_hidden_state"], feed)
    except Exception as exc:
        raise ExportError(f"onnxruntime {onnxruntime.__version__} cannot run the exported graph: {exc}") from None
    with torch.no_grad():
        want = model(
            input_ids=torch.from_numpy(feed["input_ids"]), attention_mask=torch.from_numpy(feed["attention_mask"])
        ).last_hidden_state.numpy()  # type: ignore[operator]
    real = feed["attention_mask"].astype(bool)  # padded positions carry no meaning
    diff = float(np.abs(got[real] - want[real]).max())
    if not quantize and diff > _FP32_TOLERANCE:
        raise ExportError(f"export check: max |onnx - torch| = {diff:.2e} > {_FP32_TOLERANCE:.0e} on the fp32 graph")
    return diff


def _replace(work: Path, out_dir: Path) -> None:
    """Move the finished export into place; an earlier export there is swapped out, then removed."""
    old = None
    if out_dir.exists():
        old = out_dir.with_name(f".{out_dir.name}.old-{os.getpid()}")
        out_dir.rename(old)
    work.rename(out_dir)
    if old is not None:
        shutil.rmtree(old, ignore_errors=True)


def default_cache_dir() -> Path:
    """Where ``--backend onnx`` on a plain HF folder keeps its export: $XDG_CACHE_HOME/tokvec/onnx,
    else ~/.cache/tokvec/onnx."""
    root = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(root) / "tokvec" / "onnx"


def cached_export(model_dir: Path, quantize: str, cache_dir: Path | None = None) -> Path:
    """An export of ``model_dir`` made once and reused, keyed by the source fingerprint, the
    quantization, the opset and the onnxruntime version (its fusions change between versions)."""
    import onnxruntime

    from tokvec_server.runners.base import fingerprint

    config = json.loads((model_dir / "config.json").read_text())
    key = f"{fingerprint(model_dir, int(config.get('hidden_size', 0)))}-{quantize or 'fp32'}-opset{DEFAULT_OPSET}-ort{onnxruntime.__version__}"
    target = (cache_dir or default_cache_dir()) / key
    if is_export(target):
        return target
    target.parent.mkdir(parents=True, exist_ok=True)
    work = Path(tempfile.mkdtemp(prefix=f".{key}.", dir=target.parent))
    try:
        _export_into(model_dir, work, DEFAULT_OPSET, True, quantize)
        try:
            work.rename(target)
        except OSError:
            if not is_export(target):  # another server finished the same export first: use it
                raise
    finally:
        shutil.rmtree(work, ignore_errors=True)
    return target


__all__ = [
    "DEFAULT_OPSET",
    "ExportError",
    "ExportMeta",
    "META_FILE",
    "MODEL_FILE",
    "cached_export",
    "default_cache_dir",
    "export_onnx",
    "is_export",
    "read",
]
