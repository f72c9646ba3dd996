"""How the server's threads share the CPU (tokvec_server/threads.py)."""

from __future__ import annotations

import os

import pytest

from tokvec_server.threads import serial_tokenizers


def test_tokenizers_run_serially_by_default(monkeypatch: pytest.MonkeyPatch) -> None:
    # setenv first so that monkeypatch restores the variable's absence, not the value set here
    monkeypatch.setenv("TOKENIZERS_PARALLELISM", "unset")
    monkeypatch.delenv("TOKENIZERS_PARALLELISM")
    serial_tokenizers()
    assert os.environ["TOKENIZERS_PARALLELISM"] == "false"


def test_an_operators_tokenizers_parallelism_wins(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TOKENIZERS_PARALLELISM", "true")
    serial_tokenizers()
    assert os.environ["TOKENIZERS_PARALLELISM"] == "true"
