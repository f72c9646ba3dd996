from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import trained_pipelines
from serving import DATA, ServerProcess, ServerThread

from tokvec_server.settings import ModelSettings, Settings


@pytest.fixture(scope="session")
def ewt_docs() -> list[dict[str, Any]]:
    """The UD English EWT test split: 316 real docs with gold tokens."""
    with (DATA / "ewt-test.jsonl").open() as f:
        return [json.loads(line) for line in f]


@pytest.fixture(scope="session")
def minilm() -> Iterator[ServerProcess]:
    """The real server on the real all-MiniLM-L6-v2, in its own process, shared by the session."""
    server = ServerProcess()
    yield server
    server.stop()


@pytest.fixture
def fake_server() -> Iterator[ServerThread]:
    """An in-process server on the deterministic fake runner; ``.runner.faults`` has the hooks."""
    server = ServerThread(Settings(models=(ModelSettings(backend="fake"),)))
    yield server
    server.stop()


def pytest_collection_finish(session: pytest.Session) -> None:
    """Build the trained pipelines (minutes, once per cache) before the first test that needs
    them, outside any test's timeout."""
    if session.config.option.collectonly:
        return
    if any(trained_pipelines.FIXTURES & set(getattr(item, "fixturenames", ())) for item in session.items):
        trained_pipelines.built()


@pytest.fixture(scope="session")
def trained_pipeline() -> Path:
    """A real spacy-transformers 1.4 pipeline: fine-tuned all-MiniLM-L6-v2 transformer, tagger
    (listener pooling reduce_mean), parser (reduce_max); built once by tests/trained_pipelines.py."""
    return trained_pipelines.built() / "trained"


@pytest.fixture(scope="session")
def untuned_pipeline() -> Path:
    """The same pipeline never updated: its transformer is the stock all-MiniLM-L6-v2."""
    return trained_pipelines.built() / "untuned"


@pytest.fixture(scope="session")
def trained_server(trained_pipeline: Path) -> Iterator[ServerProcess]:
    """`tokvec serve --model PIPELINE`: the fine-tuned encoder read from the pipeline itself."""
    server = ServerProcess("--model", str(trained_pipeline))
    yield server
    server.stop()


@pytest.fixture(scope="session")
def untuned_server(untuned_pipeline: Path) -> Iterator[ServerProcess]:
    server = ServerProcess("--model", str(untuned_pipeline))
    yield server
    server.stop()


@pytest.fixture(scope="session")
def trained_reference() -> trained_pipelines.Reference:
    """What spacy-transformers computes in-process with ``trained_pipeline``: every listener's
    rows and the annotations, on EWT test docs."""
    return trained_pipelines.reference("trained")


@pytest.fixture(scope="session")
def untuned_reference() -> trained_pipelines.Reference:
    return trained_pipelines.reference("untuned")
