"""Read a spaCy pipeline's config.cfg without spaCy: which components it has, and what its
spacy-transformers ``transformer`` and listeners are set to (span getter, poolings).

The server reads pipelines whose transformer it serves, and may run a newer transformers than
spacy-transformers allows, so it never imports spaCy or spacy-transformers for this. config.cfg is
an INI file (thinc's Config): a section per dotted path, values in JSON (strings quoted, null,
true, lists, objects); a ``${section.key}`` reference is kept here as its text.
"""

from __future__ import annotations

import configparser
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

TRANSFORMER_ARCHITECTURES = (
    "spacy-transformers.TransformerModel.v1",
    "spacy-transformers.TransformerModel.v2",
    "spacy-transformers.TransformerModel.v3",
)
LISTENER_ARCHITECTURE = "spacy-transformers.TransformerListener.v1"


class PipelineConfigError(ValueError):
    """The pipeline's config cannot be read or holds what tokvec cannot serve; the message names
    the pipeline, the component and the setting."""


def _value(text: str) -> Any:
    try:
        return json.loads(text)
    except ValueError:
        return text  # an unquoted string or a ${...} reference


def read_config(pipeline: Path) -> dict[str, dict[str, Any]]:
    """config.cfg as {section: {key: value}}; sections keep their dotted names."""
    path = pipeline / "config.cfg"
    parser = configparser.ConfigParser(interpolation=None, delimiters=("=",))
    parser.optionxform = str  # type: ignore[assignment,method-assign]  # keys keep their case (@architectures, nO)
    try:
        parser.read_string(path.read_text(encoding="utf-8"), source=str(path))
    except (OSError, UnicodeDecodeError, configparser.Error) as exc:
        raise PipelineConfigError(f"{path}: not a readable spaCy config ({' '.join(str(exc).split())[:200]})") from None
    return {name: {k: _value(v) for k, v in parser.items(name)} for name in parser.sections()}


def components(config: dict[str, dict[str, Any]]) -> dict[str, str]:
    """The pipeline's components in order: name -> factory ("" where it is sourced or unknown)."""
    names = config.get("nlp", {}).get("pipeline", [])
    if not isinstance(names, list):
        return {}
    return {n: str(config.get(f"components.{n}", {}).get("factory", "")) for n in names}


@dataclass(frozen=True)
class Listener:
    """A TransformerListener inside a component's model."""

    component: str
    section: str  # its config section, e.g. components.tagger.model.tok2vec
    pooling: str  # the thinc layer, e.g. reduce_mean.v1
    upstream: str  # "*" or the transformer component's name
    grad_factor: float


@dataclass(frozen=True)
class TransformerConfig:
    """What a pipeline's spacy-transformers component is set to."""

    pipeline: Path
    component: str
    architecture: str
    span_getter: dict[
        str, Any
    ]  # e.g. {"@span_getters": "spacy-transformers.strided_spans.v1", "window": 128, "stride": 96}
    listeners: tuple[Listener, ...]


def listeners(config: dict[str, dict[str, Any]], transformer: str) -> tuple[Listener, ...]:
    """Every TransformerListener that listens to ``transformer`` (by name or by "*")."""
    found: list[Listener] = []
    for section, values in config.items():
        if values.get("@architectures") != LISTENER_ARCHITECTURE or not section.startswith("components."):
            continue
        upstream = str(values.get("upstream", "*"))
        if upstream not in ("*", transformer):
            continue
        pooling = config.get(f"{section}.pooling", {}).get("@layers", "")
        found.append(
            Listener(section.split(".")[1], section, str(pooling), upstream, float(values.get("grad_factor", 1.0)))
        )
    return tuple(found)


def transformer_config(pipeline: Path, component: str) -> TransformerConfig:
    """The span getter, architecture and listeners of the spacy-transformers ``component``."""
    config = read_config(pipeline)
    model = config.get(f"components.{component}.model", {})
    architecture = str(model.get("@architectures", ""))
    if architecture not in TRANSFORMER_ARCHITECTURES:
        raise PipelineConfigError(
            f"{pipeline}: component {component!r}: components.{component}.model.@architectures is {architecture!r}; "
            f"tokvec reads {', '.join(TRANSFORMER_ARCHITECTURES)}"
        )
    spans = dict(config.get(f"components.{component}.model.get_spans", {}))
    return TransformerConfig(pipeline, component, architecture, spans, listeners(config, component))
