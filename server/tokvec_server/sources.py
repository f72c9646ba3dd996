"""What ``--model`` names, and so which backend serves it.

A folder (or an installed spaCy pipeline package's name) holds one of:

- a HuggingFace encoder (config.json + weights + tokenizer): backend torch;
- an ONNX export (model.onnx, made by tokvec export-onnx): backend onnx;
- a spaCy pipeline with a spacy-transformers ``transformer`` component: its fine-tuned encoder,
  read from the component's model file (trf_model.py), on backend torch;
- a spaCy pipeline with a ``tok2vec`` component: backend tok2vec.

``--backend`` overrides what the folder suggests. No torch, spaCy or transformers here: a bad
``--model`` fails before anything starts.
"""

from __future__ import annotations

import dataclasses
import importlib.util
from dataclasses import dataclass
from pathlib import Path

from tokvec_server.settings import ModelSettings
from tokvec_server.spacy_config import PipelineConfigError, components, read_config

HF = "huggingface"
ONNX = "onnx"
TRANSFORMER_PIPELINE = "spacy-transformers pipeline"
TOK2VEC_PIPELINE = "tok2vec pipeline"

# The factories whose encoder tokvec serves, and the backend each one runs on.
_FACTORIES = {"transformer": TRANSFORMER_PIPELINE, "tok2vec": TOK2VEC_PIPELINE}
# Encoders that look like ours but are not read (yet): named in the error.
_UNREAD_FACTORIES = ("curated_transformer",)


class SourceError(ValueError):
    """``--model`` names nothing tokvec can serve; the message names the path, component and setting."""


@dataclass(frozen=True)
class Source:
    kind: str  # HF | ONNX | TRANSFORMER_PIPELINE | TOK2VEC_PIPELINE
    folder: Path  # the folder that holds it (a package's data folder for a package name)
    component: str = ""  # the pipeline's encoder component; "" for HF and ONNX folders

    @property
    def backend(self) -> str:
        return {HF: "torch", ONNX: "onnx", TRANSFORMER_PIPELINE: "torch", TOK2VEC_PIPELINE: "tok2vec"}[self.kind]


def package_folder(name: str) -> Path | None:
    """An installed spaCy pipeline package's data folder (NAME/NAME-VERSION/ with config.cfg), found
    without importing it (importing a pipeline package imports spaCy)."""
    if not name.isidentifier():
        return None
    try:
        spec = importlib.util.find_spec(name)
    except (ImportError, ValueError):
        return None
    if spec is None or not spec.submodule_search_locations:
        return None
    root = Path(next(iter(spec.submodule_search_locations)))
    if (root / "config.cfg").is_file():
        return root
    data = sorted(p for p in root.glob(f"{name}-*") if (p / "config.cfg").is_file())
    return data[-1] if data else None


def detect(model: str) -> Source | None:
    """What ``model`` (a folder or an installed pipeline package's name) holds; None where it is
    none of the four (the backend's own loader then says what is missing, as it always has).
    Raises SourceError for a spaCy pipeline with nothing tokvec serves."""
    folder = Path(model)
    if not folder.is_dir():
        found = package_folder(model)
        if found is None:
            return None
        folder = found
    if (folder / "config.cfg").is_file():
        return _pipeline(folder)
    if (folder / "model.onnx").is_file():
        return Source(ONNX, folder)
    if (folder / "config.json").is_file():
        return Source(HF, folder)
    return None


def _pipeline(folder: Path) -> Source:
    try:
        factories = components(read_config(folder))
    except PipelineConfigError as exc:
        raise SourceError(f"--model {exc}") from None
    for name, factory in factories.items():
        if factory in _FACTORIES:
            return Source(_FACTORIES[factory], folder, name)
    unread = [f"{n} ({f})" for n, f in factories.items() if f in _UNREAD_FACTORIES]
    if unread:
        raise SourceError(
            f"--model {folder}: component {', '.join(unread)}: tokvec does not read this factory's models (yet)"
        )
    listed = ", ".join(f"{n} ({f or 'sourced'})" for n, f in factories.items()) or "none"
    raise SourceError(
        f"--model {folder}: a spaCy pipeline with no 'transformer' (spacy-transformers) or 'tok2vec' component to serve "
        f"(its components: {listed})"
    )


def resolve(settings: ModelSettings) -> ModelSettings:
    """``settings`` with backend "auto" made concrete, and a pipeline package's name made its folder
    where the torch runner reads it. The default model (path "") and the fake backend pass as they are."""
    if not settings.path or settings.backend == "fake":
        return settings if settings.backend != "auto" else dataclasses.replace(settings, backend="torch")
    try:
        source = detect(settings.path)
    except SourceError:
        if settings.backend == "auto":
            raise
        return settings  # a backend named: its loader judges the folder (tok2vec finds its own component)
    if source is None:
        return settings if settings.backend != "auto" else dataclasses.replace(settings, backend="torch")
    backend = source.backend if settings.backend == "auto" else settings.backend
    if source.kind in (TRANSFORMER_PIPELINE, TOK2VEC_PIPELINE) and backend == "onnx":
        raise SourceError(
            f"--model {settings.path} --backend onnx: a spaCy pipeline is not an ONNX export; "
            f"run tokvec export-onnx {settings.path} OUT_DIR and serve OUT_DIR"
        )
    if source.kind == TOK2VEC_PIPELINE and backend == "torch":
        raise SourceError(
            f"--model {settings.path} --backend torch: component {source.component!r} is a spaCy tok2vec; use --backend tok2vec"
        )
    # tok2vec loads the pipeline with spacy.load, which takes a package's name as given.
    path = settings.path if backend == "tok2vec" else str(source.folder)
    return dataclasses.replace(settings, backend=backend, path=path)
