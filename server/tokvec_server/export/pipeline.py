"""``tokvec export-onnx PIPELINE OUT_DIR``: the encoder of a spaCy pipeline's spacy-transformers
component, written out as a HuggingFace folder (trf_model.py) and exported like one. The export's
fingerprint is the encoder's, as ``tokvec serve --model PIPELINE`` reports it: a pipeline split
against the torch server is served as well by the ONNX one."""

from __future__ import annotations

import tempfile
from pathlib import Path

from tokvec_server.export.metadata import ExportMeta
from tokvec_server.sources import TRANSFORMER_PIPELINE, SourceError, detect
from tokvec_server.spacy_config import PipelineConfigError, transformer_config
from tokvec_server.trf_model import TrfModelError, hf_folder, read_encoder


def is_pipeline(model: str) -> bool:
    """A spaCy pipeline folder, or an installed pipeline package's name."""
    try:
        source = detect(model)
    except SourceError:
        return True  # a pipeline, though one with nothing to export: export_pipeline says why
    return source is not None and source.component != ""


def export_pipeline(model: str, out_dir: Path, *, opset: int, optimize: bool, quantize: str) -> ExportMeta:
    from tokvec_server.export import ExportError, export_onnx

    try:
        source = detect(model)
        if source is None or not source.component:
            raise ExportError(f"MODEL_DIR {model}: not a spaCy pipeline")
        if source.kind != TRANSFORMER_PIPELINE:
            raise ExportError(
                f"MODEL_DIR {model}: component {source.component!r} is a spaCy tok2vec, not a transformer; "
                "serve it with tokvec serve --model (no export needed)"
            )
        transformer_config(source.folder, source.component)
        encoder = read_encoder(source.folder, source.component)
        with tempfile.TemporaryDirectory(prefix="tokvec-pipeline-") as tmp:
            folder = hf_folder(encoder, Path(tmp), f"MODEL_DIR {model}: component {source.component!r}")
            return export_onnx(
                folder,
                out_dir,
                opset=opset,
                optimize=optimize,
                quantize=quantize,
                source=(f"{source.folder.resolve()} (component {source.component})", encoder.fingerprint()),
            )
    except (SourceError, PipelineConfigError, TrfModelError) as exc:
        raise ExportError(str(exc)) from None
