"""`tokvec embed` sends again the docs a server refuses for now (RESOURCE_EXHAUSTED in-band: they
waited past max_queue_ms), and every doc still comes back once."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from serving import ENV, ServerThread, corpus

from tokvec_server.settings import Batching, ModelSettings, Settings


def test_docs_refused_for_now_are_sent_again(tmp_path: Path, ewt_docs: list[dict[str, Any]]) -> None:
    server = ServerThread(Settings(models=(ModelSettings(backend="fake", batching=Batching(max_queue_ms=300)),)))
    scheduler = server.server.engines[0].scheduler
    docs = corpus(tmp_path / "in.jsonl", ewt_docs[:100])
    try:
        server.runner.faults.gate.clear()  # the model holds its first batch: the rest stays queued
        cli = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "tokvec",
                "embed",
                str(tmp_path / "in.jsonl"),
                "--server",
                server.address,
                "--output",
                str(tmp_path / "rows"),
            ],
            stderr=subprocess.PIPE,
            text=True,
            env=ENV,
        )
        deadline = time.monotonic() + 120
        while scheduler.queued[0] == 0 and time.monotonic() < deadline:
            time.sleep(0.02)
        time.sleep(0.6)  # past max_queue_ms: once the model is free, the queued docs are refused
        server.runner.faults.gate.set()
        _, err = cli.communicate(timeout=300)
        expired = scheduler.dropped["queue_timeout"]
    finally:
        server.runner.faults.gate.set()
        server.stop()
    assert cli.returncode == 0, err
    assert expired > 0, "no doc was refused: the test did not test the retry"
    ids = [json.loads(line)["id"] for line in (tmp_path / "rows" / "index.jsonl").read_text().splitlines()]
    assert len(ids) == len(set(ids)) == len(docs)
