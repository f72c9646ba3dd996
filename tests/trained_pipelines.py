"""The trained spacy-transformers pipelines of the pipeline tests, built once and cached.

tests/pipelines/build_trained.py makes them with the real spacy-transformers 1.4 in .venv-ref
(scripts/setup.sh makes it; spacy-transformers pins transformers<4.53.3, so it cannot live in
.venv). The result goes to CACHE/trained-KEY, KEY a hash of the builder (which holds the configs),
CACHE = $TOKVEC_TEST_CACHE or .cache/tokvec-tests in the repository. A second pytest process
waiting on the same build blocks on a lock instead of building it again.

Importable from any test folder (tests/ is on sys.path); tests/conftest.py makes fixtures of it.
"""

from __future__ import annotations

import fcntl
import hashlib
import json
import os
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from serving import ROOT

BUILDER = ROOT / "tests" / "pipelines" / "build_trained.py"
VARIANTS = ("trained", "untuned")
# The components whose listeners the reference recorded, and the pooling each one uses.
LISTENERS = {"tagger": "reduce_mean.v1", "parser": "reduce_max.v1"}
# The fixtures (tests/conftest.py) that need the build: it runs once, before the first of them.
FIXTURES = {"trained_pipeline", "untuned_pipeline", "trained_reference", "untuned_reference"}


def ref_python() -> Path:
    """The reference environment's interpreter ($TOKVEC_REF_PYTHON overrides)."""
    return Path(os.environ.get("TOKVEC_REF_PYTHON") or ROOT / ".venv-ref" / "bin" / "python")


def cache_root() -> Path:
    return Path(os.environ.get("TOKVEC_TEST_CACHE") or ROOT / ".cache" / "tokvec-tests")


def build_key() -> str:
    return hashlib.sha256(BUILDER.read_bytes()).hexdigest()[:16]


def built() -> Path:
    """The folder with trained/, untuned/, reference/ and meta.json; built on first use."""
    folder = cache_root() / f"trained-{build_key()}"
    if (folder / "meta.json").is_file():
        return folder
    python = ref_python()
    if not python.is_file():
        raise RuntimeError(f"{python}: the reference environment is missing; run scripts/setup.sh (it makes .venv-ref)")
    folder.parent.mkdir(parents=True, exist_ok=True)
    with (folder.parent / f"{folder.name}.lock").open("w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if (folder / "meta.json").is_file():
            return folder  # another process built it while this one waited
        partial = folder.with_name(folder.name + ".partial")
        shutil.rmtree(partial, ignore_errors=True)
        env = dict(os.environ, HF_HUB_OFFLINE="1", TRANSFORMERS_OFFLINE="1", PYTHONPATH="")
        done = subprocess.run(
            [str(python), str(BUILDER), "--out", str(partial)], capture_output=True, text=True, env=env, timeout=1800
        )
        if done.returncode != 0:
            raise RuntimeError(f"{BUILDER.name} failed (rc {done.returncode}):\n{done.stderr[-4000:]}")
        partial.rename(folder)  # whole or not at all: meta.json is written last
    return folder


@dataclass(frozen=True)
class Reference:
    """What spacy-transformers computed in-process with one pipeline, on the reference docs."""

    pipeline: Path
    docs: list[dict[str, Any]]  # id, words, spaces
    rows: dict[str, dict[str, np.ndarray]]  # component -> doc id -> (n_words, 384) float32
    annotations: dict[str, dict[str, list[Any]]]  # doc id -> tags, heads, deps, sent_starts
    meta: dict[str, Any]


def reference(variant: str) -> Reference:
    folder = built()
    ref = folder / "reference"
    docs = [json.loads(line) for line in (ref / "docs.jsonl").read_text().splitlines()]
    rows: dict[str, dict[str, np.ndarray]] = {}
    for component in LISTENERS:
        with np.load(ref / variant / f"{component}.npz") as npz:
            rows[component] = {k: npz[k] for k in npz.files}
    annotations = json.loads((ref / variant / "annotations.json").read_text())
    return Reference(folder / variant, docs, rows, annotations, json.loads((folder / "meta.json").read_text()))
