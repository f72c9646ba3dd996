from __future__ import annotations

import json
from typing import Any, Iterator

import pytest

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
