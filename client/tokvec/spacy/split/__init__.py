"""``tokvec split``: a trained pipeline whose listeners follow a shared encoder (spacy-transformers'
``transformer``, or spaCy's CNN ``tok2vec``) becomes a pipeline that listens to that encoder on a
tokvec server, with every other component and trained weight as it was.

Written to a temporary folder beside OUT, checked by loading it (which also asks the server for
its fingerprint), and renamed to OUT at the end: nothing is written on failure.
"""

from __future__ import annotations

import shutil
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import srsly
from thinc.api import Config

from tokvec._results import ModelInfo
from tokvec.spacy.errors import SplitError
from tokvec.spacy.remote import Remote, RemoteSettings
from tokvec.spacy.split.plan import Listener, Plan, plan, rewrite

__all__ = ["Split", "SplitError", "split"]


@dataclass(frozen=True)
class Split:
    """What was done: the served component, its listeners, and the model the rows must come from."""

    out: Path
    plan: Plan
    fingerprint: str
    width: int


def pipeline_folder(pipeline: str | Path) -> Path:
    """A pipeline folder, or the data folder of an installed pipeline package."""
    from spacy import util

    path = Path(pipeline)
    if (path / "config.cfg").is_file():
        return path
    if isinstance(pipeline, str) and util.is_package(pipeline):
        found = sorted(util.get_package_path(pipeline).glob("*/config.cfg"))
        if found:
            return found[0].parent
    raise SplitError(
        f"PIPELINE {str(pipeline)!r} is neither a pipeline folder (with config.cfg) nor an installed pipeline package"
    )


def split(
    pipeline: str | Path, out: str | Path, address: str | Sequence[str], *, model: str = "", timeout: float = 60.0
) -> Split:
    """Write the split pipeline to ``out`` (which must not exist); the server at ``address``
    must serve the pipeline's encoder (its fingerprint is stored, so another model is refused)."""
    from spacy import util

    source = pipeline_folder(pipeline)
    out = Path(out)
    if out.exists():
        raise SplitError(f"OUT {str(out)!r} exists: tokvec split writes a new folder")
    raw = util.load_config(source / "config.cfg", interpolate=False)
    the_plan = plan(raw.interpolate())
    remote = Remote(RemoteSettings.build(address, model=model, timeout=timeout))
    who = "tokvec split"
    try:
        info = remote.model_info(who)
    finally:
        remote.close()
    if info.backend not in the_plan.backends:
        raise SplitError(
            f"the server at {remote.target} serves model {info.name!r} on the {info.backend!r} backend, but the listeners of "
            f"{the_plan.source!r} follow a {the_plan.factory!r}: serve the pipeline's encoder (tokvec serve --model PIPELINE)"
        )
    _check_served(info, source, the_plan, remote.target)
    for listener in the_plan.listeners:
        if listener.width is not None and listener.width != info.width:
            raise SplitError(
                f"component {listener.component!r}: {listener.setting}.width = {listener.width}, but the server's model "
                f"{info.name!r} is {info.width} wide: it serves another encoder than this pipeline's"
            )
    addresses = [address] if isinstance(address, str) else list(address)
    config = rewrite(
        raw,
        the_plan,
        address=addresses[0] if len(addresses) == 1 else addresses,  # type: ignore[arg-type]
        width=info.width,
        fingerprint=info.fingerprint,
        model=model,
    )
    out.parent.mkdir(parents=True, exist_ok=True)
    partial = Path(tempfile.mkdtemp(prefix=f".{out.name}.partial-", dir=out.parent))
    try:
        _write(source, partial, Config(config), the_plan, info.fingerprint, info.width)
        util.load_model(partial)  # the whole pipeline loads, weights fit, the server is the right one
        partial.rename(out)
    except BaseException:
        shutil.rmtree(partial, ignore_errors=True)
        raise
    return Split(out, the_plan, info.fingerprint, info.width)


def _check_served(info: ModelInfo, source: Path, the_plan: Plan, target: str) -> None:
    """Refuse a server that says it serves another pipeline's encoder. The stored fingerprint is
    the server's: without this check a split against the wrong server would pin the wrong model.
    A server of a plain model folder says nothing (ModelInfo.pipeline empty); one on another
    machine names a folder this one may not have: then the fingerprint is taken as given."""
    if not info.pipeline:
        return
    if info.component and info.component != the_plan.source:
        raise SplitError(
            f"the server at {target} serves component {info.component!r} of {info.pipeline}, but this pipeline's "
            f"listeners follow {the_plan.source!r}"
        )
    try:
        served = pipeline_folder(info.pipeline)
    except SplitError:
        return  # not on this machine
    mine, theirs = source / the_plan.source / "model", served / (info.component or the_plan.source) / "model"
    if mine.is_file() and theirs.is_file() and not _same_file(mine, theirs):
        raise SplitError(
            f"the server at {target} serves the encoder of {info.pipeline}, not this pipeline's ({theirs} and {mine} differ): "
            "serve this pipeline (tokvec serve --model PIPELINE)"
        )


def _same_file(a: Path, b: Path) -> bool:
    if a.stat().st_size != b.stat().st_size:
        return False
    return a.read_bytes() == b.read_bytes()


def _write(source: Path, dest: Path, config: Any, the_plan: Plan, fingerprint: str, width: int) -> None:
    from spacy import util

    for item in source.iterdir():
        if item.name in (the_plan.source, "config.cfg", "meta.json"):
            continue
        (shutil.copytree if item.is_dir() else shutil.copy2)(item, dest / item.name)
    config.to_disk(dest / "config.cfg")
    meta = srsly.read_json(source / "meta.json") if (source / "meta.json").is_file() else {}
    # The split pipeline needs tokvec, not spacy-transformers (nor torch).
    meta["requirements"] = [
        r
        for r in meta.get("requirements", [])
        if not r.replace("_", "-").startswith(("spacy-transformers", "spacy-curated-transformers"))
    ]
    meta["tokvec_split"] = {
        "from": f"{meta.get('lang', '')}_{meta.get('name', '')}-{meta.get('version', '')}",
        "component": the_plan.source,
        "fingerprint": fingerprint,
    }
    srsly.write_json(dest / "meta.json", meta)
    (dest / the_plan.source).mkdir()
    srsly.write_json(dest / the_plan.source / "cfg", {"fingerprint": fingerprint, "width": width, "pieces": False})
    # Build the split pipeline's components (no weights, no server call) to get the layout of
    # each listening component's model, then carry its trained weights over.
    nlp = util.load_model_from_config(config, auto_fill=False, validate=True)
    by_component: dict[str, list[Listener]] = {}
    for listener in the_plan.listeners:
        by_component.setdefault(listener.component, []).append(listener)
    from tokvec.spacy.listener import RemoteListener
    from tokvec.spacy.split.weights import carry_over

    for name, listeners in by_component.items():
        model = nlp.get_pipe(name).model
        for node in model.walk():
            if isinstance(node, RemoteListener):
                node.attrs["fingerprint"] = fingerprint
        saved = source / name / "model"
        if not saved.is_file():
            raise SplitError(f"component {name!r}: {saved} is missing: was the pipeline saved after training?")
        (dest / name / "model").write_bytes(
            carry_over(saved.read_bytes(), model, _in_walk_order(model, listeners), name)
        )


def _in_walk_order(model: Any, listeners: list[Listener]) -> list[Listener]:
    """The listeners of one component in the order its model walks their RemoteListeners. Each
    was built from its block with its own pooling; listeners pooling alike have the same layout,
    so their order among themselves does not matter."""
    from tokvec.spacy.listener import RemoteListener

    left = list(listeners)
    ordered = []
    for node in model.walk():
        if isinstance(node, RemoteListener):
            match = next((lst for lst in left if lst.pooling == node.pooling), None)
            if match is None:
                raise SplitError(
                    f"component {listeners[0].component!r}: its model has a listener pooling {node.pooling!r} that its config does not"
                )
            left.remove(match)
            ordered.append(match)
    return ordered + left
