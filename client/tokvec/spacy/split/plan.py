"""What ``tokvec split`` changes in a pipeline's config: the component whose encoder is served
(spacy-transformers' ``transformer``, or spaCy's shared CNN ``tok2vec``) and every listener that
follows it. Read from config.cfg alone, so that neither torch nor spacy-transformers is needed.

The spacy-transformers 1.x settings read here (its config format, documented by its registry):

- ``[components.NAME] factory = "transformer"``; ``model.get_spans`` is a ``@span_getters``
  block: ``spacy-transformers.strided_spans.v1`` (``window``, ``stride``), ``doc_spans.v1`` or
  ``sent_spans.v1``; ``set_extra_annotations`` an ``@annotation_setters`` block, by default
  ``spacy-transformers.null_annotation_setter.v1`` (it sets nothing).
- A listener: ``@architectures = "spacy-transformers.TransformerListener.v1"`` with
  ``upstream`` (a component name or "*"), ``grad_factor`` and a ``pooling`` ``@layers`` block
  (thinc's ``reduce_mean.v1`` and its siblings).

spaCy's own: ``factory = "tok2vec"`` with listeners ``spacy.Tok2VecListener.v1`` (``width``,
``upstream``).
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

from tokvec.spacy.errors import SplitError

TRANSFORMER_LISTENER = "spacy-transformers.TransformerListener.v1"
TOK2VEC_LISTENER = "spacy.Tok2VecListener.v1"
REMOTE_LISTENER = "tokvec.RemoteListener.v1"
# The listener architectures each served factory feeds.
LISTENERS = {"transformer": TRANSFORMER_LISTENER, "tok2vec": TOK2VEC_LISTENER}
POOLINGS = {
    "reduce_mean.v1": "mean",
    "reduce_max.v1": "max",
    "reduce_first.v1": "first",
    "reduce_last.v1": "last",
    "reduce_sum.v1": "sum",
}
NULL_SETTER = "spacy-transformers.null_annotation_setter.v1"
# Registries whose functions need torch (or spacy-transformers) to load: left anywhere in the
# split pipeline, they would defeat it.
HEAVY_PREFIXES = (
    "spacy-transformers.",
    "spacy-curated-transformers.",
    "spacy_transformers.",
    "spacy_curated_transformers.",
)


@dataclass(frozen=True)
class Listener:
    component: str  # the component whose model holds it
    path: tuple[str, ...]  # its block's keys under [components.COMPONENT]
    architecture: str  # TRANSFORMER_LISTENER or TOK2VEC_LISTENER
    pooling: str  # "mean", ...; "" for a tok2vec listener (its rows are per token already)
    width: int | None  # a Tok2VecListener's declared width

    @property
    def setting(self) -> str:
        return ".".join(("components", self.component, *self.path))


@dataclass(frozen=True)
class Plan:
    source: str  # the component whose encoder is served
    factory: str  # "transformer" or "tok2vec"
    spans: str  # tokvec's spans: tokens:W:S, doc or sents
    listeners: tuple[Listener, ...]

    @property
    def pooling(self) -> str:
        """The component's own pooling: the first listener's (the others ask for theirs too)."""
        return next((lst.pooling for lst in self.listeners if lst.pooling), "mean")

    @property
    def backends(self) -> tuple[str, ...]:
        """Server backends that can serve this encoder."""
        return ("tok2vec",) if self.factory == "tok2vec" else ("torch", "onnx")


def plan(config: dict[str, Any]) -> Plan:
    """Find the served component and its listeners in an interpolated config; SplitError for
    anything that cannot be mapped, naming the component and the setting."""
    pipeline: list[str] = list(config["nlp"]["pipeline"])
    components: dict[str, Any] = config["components"]
    sources = [name for name in pipeline if components.get(name, {}).get("factory") in LISTENERS]
    if not sources:
        raise SplitError(
            "the pipeline has no `transformer` (spacy-transformers) or shared `tok2vec` component to serve"
        )
    if len(sources) > 1:
        raise SplitError(
            f"the pipeline has {len(sources)} components to serve ({', '.join(sources)}); tokvec split serves one encoder a pipeline"
        )
    source = sources[0]
    factory = components[source]["factory"]
    listeners = []
    for name in (n for n in pipeline if n != source):
        for path, block in _blocks(components.get(name, {}), ()):
            architecture = str(block.get("@architectures", ""))
            listener = _listener(name, path, block, architecture, source, factory, pipeline)
            if listener is not None:
                listeners.append(listener)
            elif architecture.startswith(HEAVY_PREFIXES) or "listener" in architecture.lower():
                where = ".".join(("components", name, *path))
                raise SplitError(
                    f"component {name!r}: {where}.@architectures = {architecture!r} is not a listener tokvec split can map "
                    f"(it maps {TRANSFORMER_LISTENER} and {TOK2VEC_LISTENER} that follow {source!r})"
                )
        _check_heavy(name, components.get(name, {}), source)
    spans = _spans(source, components[source]) if factory == "transformer" else "doc"
    return Plan(source, factory, spans, tuple(listeners))


def _blocks(node: dict[str, Any], path: tuple[str, ...]) -> Iterator[tuple[tuple[str, ...], dict[str, Any]]]:
    for key, value in node.items():
        if isinstance(value, dict):
            yield (*path, key), value
            yield from _blocks(value, (*path, key))


def _listener(
    name: str,
    path: tuple[str, ...],
    block: dict[str, Any],
    architecture: str,
    source: str,
    factory: str,
    pipeline: list[str],
) -> Listener | None:
    if architecture not in (TRANSFORMER_LISTENER, TOK2VEC_LISTENER):
        return None
    where = ".".join(("components", name, *path))
    upstream = str(block.get("upstream", "*"))
    if architecture != LISTENERS[factory] or upstream not in ("*", source):
        raise SplitError(
            f"component {name!r}: {where} ({architecture}, upstream = {upstream!r}) listens to no component of this "
            f"pipeline that tokvec split can serve (it serves {source!r}, a {factory!r})"
        )
    if pipeline.index(name) < pipeline.index(source):
        raise SplitError(f"component {name!r}: {where} comes before {source!r} in the pipeline, so it never hears it")
    if architecture == TOK2VEC_LISTENER:
        width = block.get("width")
        return Listener(name, path, architecture, "", int(width) if width is not None else None)
    pooling_block = block.get("pooling") or {}
    layer = str(pooling_block.get("@layers", ""))
    if layer not in POOLINGS:
        raise SplitError(
            f"component {name!r}: {where}.pooling.@layers = {layer!r} is not a pooling tokvec serves "
            f"({', '.join(POOLINGS)})"
        )
    return Listener(name, path, architecture, POOLINGS[layer], None)


def _check_heavy(name: str, component: dict[str, Any], source: str) -> None:
    """Anything else that would need spacy-transformers (and torch) in the split pipeline."""
    for path, block in _blocks(component, ()):
        for key, value in block.items():
            if key.startswith("@") and str(value).startswith(HEAVY_PREFIXES) and value not in (TRANSFORMER_LISTENER,):
                where = ".".join(("components", name, *path))
                raise SplitError(
                    f"component {name!r}: {where}.{key} = {value!r} needs spacy-transformers: tokvec split maps only "
                    f"the shared {source!r} and its listeners"
                )
    factory = str(component.get("factory", ""))
    if factory in ("transformer", "curated_transformer"):
        raise SplitError(
            f"component {name!r}: factory = {factory!r} is a second transformer; tokvec split serves one encoder"
        )


def _spans(source: str, component: dict[str, Any]) -> str:
    where = f"components.{source}"
    setter = component.get("set_extra_annotations") or {}
    if setter and setter.get("@annotation_setters") != NULL_SETTER:
        raise SplitError(
            f"component {source!r}: {where}.set_extra_annotations = {setter.get('@annotation_setters')!r} is an annotation "
            "setter other components may read; tokvec split cannot keep it (only null_annotation_setter.v1)"
        )
    getter = (component.get("model") or {}).get("get_spans") or {}
    kind = str(getter.get("@span_getters", ""))
    if kind == "spacy-transformers.strided_spans.v1":
        return f"tokens:{int(getter['window'])}:{int(getter['stride'])}"
    if kind == "spacy-transformers.doc_spans.v1":
        return "doc"
    if kind == "spacy-transformers.sent_spans.v1":
        return "sents"
    raise SplitError(
        f"component {source!r}: {where}.model.get_spans = {kind!r} is a span getter tokvec split cannot map "
        "(strided_spans.v1 -> tokens:W:S, doc_spans.v1 -> doc, sent_spans.v1 -> sents)"
    )


def rewrite(
    raw: dict[str, Any], plan: Plan, *, address: str, width: int, fingerprint: str, model: str
) -> dict[str, Any]:
    """The split pipeline's config, from the uninterpolated original: the served component
    becomes ``tokvec_transformer`` (same name), each listener ``tokvec.RemoteListener.v1``."""
    out = _copy(raw)
    out["components"][plan.source] = {
        "factory": "tokvec_transformer",
        "address": address,
        "pooling": plan.pooling,
        "spans": plan.spans,
        "fingerprint": fingerprint,
        "model": model,
    }
    for listener in plan.listeners:
        parent = out["components"][listener.component]
        for key in listener.path[:-1]:
            parent = parent[key]
        block: dict[str, Any] = {"@architectures": REMOTE_LISTENER, "width": width, "upstream": plan.source}
        if listener.pooling:
            block["pooling"] = listener.pooling
        parent[listener.path[-1]] = block
    return out


def _copy(node: dict[str, Any]) -> dict[str, Any]:
    return {k: _copy(v) if isinstance(v, dict) else v for k, v in node.items()}
