"""bench/peer.py's own logic, end to end on a small scale, so that it cannot rot between the real
runs (a documented command, not CI: it needs .venv-peer): a stand-in peer speaking infinity-emb's
/embeddings API (keep-alive, some replies chunked, one vector per input), tokvec on the fake
backend, the raw forward on the real model; every load, every system, every figure."""

from __future__ import annotations

import json
import subprocess
import sys
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
from serving import ROOT

WIDTH = 384


class StandIn(BaseHTTPRequestHandler):
    """infinity-emb's API as bench/peer.py uses it: GET /health, GET /models, POST /embeddings."""

    protocol_version = "HTTP/1.1"
    posts: list[int] = []  # inputs per POST

    def _reply(self, payload: Any, chunked: bool = False) -> None:
        body = json.dumps(payload).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        if chunked:
            self.send_header("Transfer-Encoding", "chunked")
            self.end_headers()
            half = len(body) // 2
            for part in (body[:half], body[half:], b""):
                self.wfile.write(f"{len(part):x}\r\n".encode() + part + b"\r\n")
        else:
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

    def do_GET(self) -> None:  # noqa: N802 - http.server's name
        self._reply(
            {"unix": 0.0}
            if self.path == "/health"
            else {"object": "list", "data": [{"id": "stand-in", "object": "model"}]}
        )

    def do_POST(self) -> None:  # noqa: N802
        request = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
        assert self.path == "/embeddings" and request["model"] == "stand-in", (self.path, request)
        self.posts.append(len(request["input"]))
        data = [{"object": "embedding", "embedding": [0.5] * WIDTH, "index": i} for i in range(len(request["input"]))]
        self._reply({"object": "list", "data": data[::-1], "model": "stand-in"}, chunked=len(self.posts) % 2 == 0)

    def log_message(self, *args: Any) -> None:
        pass


@pytest.fixture()
def stand_in() -> Iterator[str]:
    StandIn.posts = []
    server = ThreadingHTTPServer(("127.0.0.1", 0), StandIn)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    server.server_close()


def test_peer_bench_runs_every_load_on_every_system(stand_in: str, tmp_path: Path) -> None:
    done = subprocess.run(
        [
            sys.executable,
            str(ROOT / "bench" / "peer.py"),
            "--docs",
            "20",
            "--rounds",
            "2",
            "--peer-url",
            stand_in,
            "--serve-args",
            "--backend fake",
            "--out",
            str(tmp_path),
        ],
        capture_output=True,
        text=True,
        timeout=600,
        cwd=ROOT,
    )
    assert done.returncode == 0, done.stderr[-4000:]
    res = json.loads((tmp_path / "peer.json").read_text())
    assert [r["order"] for r in res["rounds"]] == [["tokvec", "peer", "raw"], ["raw", "peer", "tokvec"]]
    for rnd in res["rounds"]:
        for name, per_request in (("1x1", 1), ("8x1", 1), ("8x16", 16)):
            for system, got in rnd["results"][name].items():
                assert got["words_per_s"] > 0 and got["p99_ms"] >= got["p50_ms"] > 0, (name, system, got)
                assert got["requests"] == -(-20 // per_request), (name, system, got)
    # The stand-in saw every doc once per load and round, after a one-input warm-up per client
    # (and the run's warm-up: one input, then 16 docs).
    assert sorted(set(StandIn.posts)) == [1, 4, 16] and sum(StandIn.posts) == (1 + 16) + 2 * ((1 + 8 + 8) + 3 * 20)
    summary = res["summary"]["8x16"]
    assert len(summary["tokvec_vs_peer"]["rounds"]) == 2 and summary["tokvec_vs_peer"]["median"] > 0
    assert res["settings"]["words"] > 0 and 0 <= res["settings"]["peer_pieces_cut"] < res["settings"]["pieces"]
    report = (tmp_path / "PEER.md").read_text()
    assert "per-token rows" in report and "pooled" in report and "| 8x16 |" in report
