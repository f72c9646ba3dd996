"""Fixtures for the spaCy integration: a second server on another model, EWT as spaCy Examples,
pipelines built from the shipped example config, and fresh Python processes."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import spacy
from ewt_examples import ewt_examples
from serving import DATA, ServerProcess
from spacy.language import Language
from spacy_support import example_pipeline


@pytest.fixture(scope="session")
def other_model() -> Iterator[ServerProcess]:
    """A server on another model: the fake backend (same name and width, another fingerprint)."""
    server = ServerProcess("--backend", "fake")
    yield server
    server.stop()


@pytest.fixture(scope="session")
def trained(minilm: ServerProcess, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """tokvec + tagger + parser from the example config, briefly trained on EWT, saved."""
    nlp = example_pipeline(minilm.address)
    examples = ewt_examples(nlp, "train", 100)
    optimizer = nlp.initialize(lambda: examples)
    for _ in range(2):
        for start in range(0, len(examples), 5):
            batch = examples[start : start + 5]
            nlp.update(batch, sgd=optimizer)
    path = tmp_path_factory.mktemp("pipelines") / "tagger_parser"
    nlp.to_disk(path)
    return path


@pytest.fixture(scope="session")
def texts() -> list[str]:
    """40 short EWT test texts (under 80 words each)."""
    with (DATA / "ewt-test.jsonl").open() as f:
        docs = [json.loads(line) for line in f]
    return [d["text"] for d in docs if len(d["words"]) < 80][:40]


@pytest.fixture
def run_python(tmp_path: Path) -> Callable[..., dict[str, Any]]:
    """Run ``code`` in a fresh interpreter, outside the repository (no `import tokvec` there);
    it prints one JSON object as its last line, which is returned."""

    def run(code: str, *args: str, timeout: float = 180) -> dict[str, Any]:
        script = tmp_path / "script.py"
        script.write_text(code)
        env = dict(os.environ, HF_HUB_OFFLINE="1", TRANSFORMERS_OFFLINE="1")
        done = subprocess.run(
            [sys.executable, str(script), *args], capture_output=True, text=True, timeout=timeout, cwd=tmp_path, env=env
        )
        assert done.returncode == 0, done.stderr[-4000:]
        result: dict[str, Any] = json.loads(done.stdout.strip().splitlines()[-1])
        return result

    return run


@pytest.fixture
def blank_en() -> Language:
    return spacy.blank("en")
