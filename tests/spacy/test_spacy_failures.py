"""Failures are loud: each names the component, the server and the cause, and says what to do."""

from __future__ import annotations

import socket
from collections.abc import Iterator
from typing import Any

import grpc
import pytest
from serving import ServerProcess

from tokvec.spacy import PipelineError


def closed_port() -> str:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return f"127.0.0.1:{s.getsockname()[1]}"


def test_unreachable_server(blank_en: Any) -> None:
    address = closed_port()
    blank_en.add_pipe("tokvec_transformer", name="tokvec", config={"address": address, "timeout": 10})
    with pytest.raises(PipelineError) as caught:
        blank_en("Is anyone there?")
    message = str(caught.value)
    assert caught.value.code == grpc.StatusCode.UNAVAILABLE and caught.value.target == address
    assert message.startswith(f"tokvec_transformer 'tokvec': tokvec server {address} failed the call: UNAVAILABLE")
    assert "change address" in message


def test_deadline_passed(minilm: Any, blank_en: Any) -> None:
    blank_en.add_pipe("tokvec_transformer", config={"address": minilm.address, "timeout": 0.001})
    with pytest.raises(PipelineError, match="DEADLINE_EXCEEDED.*raise timeout") as caught:
        blank_en("This takes longer than a millisecond. " * 50)
    assert minilm.address in str(caught.value)


def test_a_dead_address_in_the_list_is_skipped(minilm: Any, blank_en: Any, texts: list[str]) -> None:
    blank_en.add_pipe("tokvec_transformer", config={"address": [closed_port(), minilm.address]})
    docs = list(blank_en.pipe(texts[:12], batch_size=2))  # six calls, round robin over the live one
    assert all(doc._.tokvec.shape == (len(doc), 384) for doc in docs)


def test_a_refused_doc_names_the_doc_and_the_limit(minilm: Any, blank_en: Any) -> None:
    blank_en.add_pipe("tokvec_transformer", config={"address": minilm.address})
    with pytest.raises(PipelineError, match=r"refused doc 0.*max_tokens_per_doc \(16384\)") as caught:
        blank_en("a " * 16385)
    assert caught.value.code == grpc.StatusCode.INVALID_ARGUMENT


@pytest.fixture(scope="module")
def guarded(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    """A server that wants a bearer token (fake model: auth is what is tested)."""
    tokens = tmp_path_factory.mktemp("auth") / "tokens"
    tokens.write_text("s3cret-token\n")
    server = ServerProcess("--backend", "fake", "--token-file", str(tokens))
    yield server
    server.stop()


def test_token_from_the_environment(guarded: Any, blank_en: Any, monkeypatch: Any) -> None:
    blank_en.add_pipe("tokvec_transformer", name="without", config={"address": guarded.address})
    with pytest.raises(PipelineError, match="UNAUTHENTICATED.*set token_env") as caught:
        blank_en("Let me in.")
    assert guarded.address in str(caught.value)
    blank_en.remove_pipe("without")
    monkeypatch.setenv("TOKVEC_TEST_TOKEN", "s3cret-token")
    blank_en.add_pipe(
        "tokvec_transformer", name="with", config={"address": guarded.address, "token_env": "TOKVEC_TEST_TOKEN"}
    )
    assert blank_en("Let me in.")._.tokvec.shape == (4, 384)
    assert "s3cret" not in blank_en.config.to_str()


def test_missing_token_variable(minilm: Any, blank_en: Any, monkeypatch: Any) -> None:
    monkeypatch.delenv("TOKVEC_TEST_TOKEN", raising=False)
    blank_en.add_pipe("tokvec_transformer", config={"address": minilm.address, "token_env": "TOKVEC_TEST_TOKEN"})
    with pytest.raises(PipelineError, match="token_env = 'TOKVEC_TEST_TOKEN'"):
        blank_en("Who am I?")


def test_no_token_over_plaintext_off_loopback(blank_en: Any, monkeypatch: Any) -> None:
    monkeypatch.setenv("TOKVEC_TEST_TOKEN", "s3cret-token")
    blank_en.add_pipe("tokvec_transformer", config={"address": "10.255.255.1:50051", "token_env": "TOKVEC_TEST_TOKEN"})
    with pytest.raises(PipelineError, match="refusing to send a bearer token over plaintext.*tls"):
        blank_en("Over the wire.")


def test_bad_settings_fail_when_the_pipeline_is_built(blank_en: Any) -> None:
    with pytest.raises(ValueError, match="pooling"):
        blank_en.add_pipe("tokvec_transformer", config={"pooling": "median"})
    with pytest.raises(ValueError, match="spans"):
        blank_en.add_pipe("tokvec_transformer", config={"spans": "tokens:128"})
