"""Structured logs: with ``--log-format json`` every line the server writes is one JSON object,
an unexpected error carries the id its caller was given, and the traceback stays in the log."""

from __future__ import annotations

import io
import json
import logging
import re

import pytest
from load import tokvec_serve
from serving import ServerThread

import tokvec
from tokvec_server.logs import JsonFormatter


def test_a_record_is_one_json_object_with_its_extras_and_traceback() -> None:
    out = io.StringIO()
    handler = logging.StreamHandler(out)
    handler.setFormatter(JsonFormatter())
    log = logging.getLogger("tokvec.test-logs")
    log.addHandler(handler)
    try:
        try:
            raise RuntimeError("boom")
        except RuntimeError as exc:
            log.error("unexpected error %s", "abc123", exc_info=exc, extra={"error_id": "abc123"})
    finally:
        log.removeHandler(handler)
    (line,) = out.getvalue().splitlines()
    record = json.loads(line)
    assert record["level"] == "ERROR" and record["logger"] == "tokvec.test-logs"
    assert record["message"] == "unexpected error abc123" and record["error_id"] == "abc123"
    assert record["ts"].endswith("+00:00") and "RuntimeError: boom" in record["exc"]


def test_the_server_writes_only_json_lines() -> None:
    server = tokvec_serve("--backend", "fake", "--log-format", "json")
    try:
        with tokvec.Client(server.address) as client:
            assert len(client.embed([{"words": ["Hello", "world"], "spaces": [True, False]}])) == 1
    finally:
        code = server.stop()
    records = [json.loads(line) for line in server.lines]  # raises on any line that is not JSON
    messages = [r["message"] for r in records]
    print(f"logs: {len(records)} JSON lines, e.g. {server.lines[0].strip()}")
    assert code == 0
    assert any(m.startswith("tokvec: ready") for m in messages) and messages[-1] == "tokvec: stopped"
    assert all({"ts", "level", "logger", "message"} <= r.keys() for r in records)


def test_a_model_failure_is_logged_with_the_id_its_caller_got(
    fake_server: ServerThread, caplog: pytest.LogCaptureFixture
) -> None:
    tokenizer = fake_server.runner.tokenizer
    fake_server.runner.faults.poison_id = tokenizer.convert_tokens_to_ids("poison")
    with tokvec.Client(fake_server.address) as client, caplog.at_level(logging.ERROR, logger="tokvec"):
        (result,) = client.embed_results([{"words": ["a", "poison", "doc"], "spaces": [True, True, False]}])
    assert result.error is not None
    given = re.fullmatch(r"model failure \(error id ([0-9a-f]{12})\)", result.error.reason)
    logged = [r for r in caplog.records if getattr(r, "error_id", None)]
    assert given and [r.error_id for r in logged] == [given.group(1)]  # type: ignore[attr-defined]
    assert logged[0].exc_info is not None  # the traceback stays here; the caller got only the id
