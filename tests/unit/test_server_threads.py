"""How the server's threads share the CPU (tokvec_server/threads.py)."""

from __future__ import annotations

import os
from collections.abc import Coroutine
from typing import Any

import pytest

from tokvec_server.rpc import server
from tokvec_server.settings import Settings
from tokvec_server.threads import serial_tokenizers


@pytest.fixture
def no_parallelism_set(monkeypatch: pytest.MonkeyPatch) -> None:
    """TOKENIZERS_PARALLELISM absent, as an operator who never set it leaves it."""
    # setenv first so that monkeypatch restores the variable's absence, not the value set here
    monkeypatch.setenv("TOKENIZERS_PARALLELISM", "unset")
    monkeypatch.delenv("TOKENIZERS_PARALLELISM")


@pytest.mark.usefixtures("no_parallelism_set")
def test_tokenizers_run_serially_by_default() -> None:
    serial_tokenizers()
    assert os.environ["TOKENIZERS_PARALLELISM"] == "false"


def test_an_operators_tokenizers_parallelism_wins(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TOKENIZERS_PARALLELISM", "true")
    serial_tokenizers()
    assert os.environ["TOKENIZERS_PARALLELISM"] == "true"


@pytest.mark.usefixtures("no_parallelism_set")
def test_serve_runs_the_tokenizers_serially(monkeypatch: pytest.MonkeyPatch) -> None:
    # run() is what `tokvec serve` calls: the variable must be set before the server's coroutine
    # (and with it the first tokenizer) starts. The coroutine is recorded, not run, and the
    # process-wide logging and malloc settings run() also makes are left as the test suite has them.
    seen: list[str | None] = []

    def fake_asyncio_run(coroutine: Coroutine[Any, Any, int]) -> int:
        seen.append(os.environ.get("TOKENIZERS_PARALLELISM"))
        coroutine.close()
        return 0

    monkeypatch.setattr(server.asyncio, "run", fake_asyncio_run)
    monkeypatch.setattr(server.logs, "configure", lambda log_format: None)
    monkeypatch.setattr(server, "limit_malloc_arenas", lambda: None)
    assert server.run(Settings()) == 0
    assert seen == ["false"]
