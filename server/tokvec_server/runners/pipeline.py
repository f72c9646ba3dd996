"""The fine-tuned encoder of a spaCy pipeline's spacy-transformers component, on the torch runner.

The component's model file (trf_model.py documents the format) is written out as a HuggingFace
folder in a temporary directory, loaded by the torch runner like any folder, and removed: the
runner keeps the weights and tokenizer in memory. Info names the pipeline and the component; the
fingerprint is the encoder's own (TrfEncoder.fingerprint), so ``tokvec split`` can store it.
"""

from __future__ import annotations

import dataclasses
import tempfile
from pathlib import Path

from tokvec_server.runners.base import Runner, StartupError
from tokvec_server.settings import ModelSettings
from tokvec_server.sources import TRANSFORMER_PIPELINE, SourceError, detect
from tokvec_server.spacy_config import PipelineConfigError, transformer_config
from tokvec_server.trf_model import TrfModelError, hf_folder, read_encoder


def load_pipeline_runner(settings: ModelSettings, folder: Path) -> Runner:
    from tokvec_server.runners.torch_runner import TorchRunner

    try:
        source = detect(str(folder))
        if source is None or source.kind != TRANSFORMER_PIPELINE:
            what = f"a {source.kind} (component {source.component!r})" if source else "not a spaCy pipeline"
            raise StartupError(
                f"--model {folder} --backend {settings.backend}: {what}; the torch backend serves a pipeline's spacy-transformers component"
            )
        transformer_config(folder, source.component)  # refuses an architecture it does not know
        encoder = read_encoder(folder, source.component)
    except (SourceError, PipelineConfigError, TrfModelError) as exc:
        raise StartupError(str(exc)) from None
    where = f"--model {folder}: component {source.component!r}"
    with tempfile.TemporaryDirectory(prefix="tokvec-pipeline-") as tmp:
        try:
            hf = hf_folder(encoder, Path(tmp), where)
            runner = TorchRunner(hf, settings.name or folder.name, settings.device, settings.dtype, settings.ragged)
        except TrfModelError as exc:
            raise StartupError(str(exc)) from None
        except StartupError as exc:
            # The torch runner names the temporary folder; name the component instead.
            raise StartupError(f"{where}: {str(exc).replace(tmp, 'its model file')}") from None
    runner.info = dataclasses.replace(
        runner.info, fingerprint=encoder.fingerprint(), pipeline=str(folder), component=source.component
    )
    return runner
