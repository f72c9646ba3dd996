"""Real servers for tests: a `tokvec serve` subprocess, or an in-process Server on its own loop
thread (so a test can reach the fake runner's fault hooks). Both bind 127.0.0.1:0."""

from __future__ import annotations

import asyncio
import json
import os
import re
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

from tokvec_server.rpc.server import Server
from tokvec_server.settings import Settings

ROOT = Path(__file__).resolve().parents[1]
DATA = ROOT / "data" / "ewt"
# What a command-line tool under test runs with: offline, unbuffered.
ENV = dict(os.environ, HF_HUB_OFFLINE="1", TRANSFORMERS_OFFLINE="1", PYTHONUNBUFFERED="1")


def corpus(path: Path, docs: list[dict[str, Any]], copies: int = 1) -> list[dict[str, Any]]:
    """``copies`` of ``docs`` with ids made unique (``ID#copy``), written as JSONL; the docs written."""
    out = [dict(d, id=f"{d['id']}#{k}") for k in range(copies) for d in docs]
    path.write_text("".join(json.dumps(d) + "\n" for d in out))
    return out


class ServerProcess:
    """``tokvec serve`` in a child process; ``address`` once it printed that it is ready."""

    # A start (model load + warmup) took 136 s on a 2-core machine busy with other work: allow for
    # that, inside pytest's 300 s per test.
    def __init__(self, *args: str, ready_timeout: float = 240.0) -> None:
        env = dict(os.environ, HF_HUB_OFFLINE="1", TRANSFORMERS_OFFLINE="1", PYTHONUNBUFFERED="1")
        cmd = [sys.executable, "-m", "tokvec", "serve", "--address", "127.0.0.1:0", *args]
        self.proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=env)
        self.lines: list[str] = []
        self.address = ""
        deadline = time.monotonic() + ready_timeout
        assert self.proc.stdout is not None
        while time.monotonic() < deadline:
            line = self.proc.stdout.readline()
            if not line:
                raise RuntimeError("server exited before ready:\n" + "".join(self.lines))
            self.lines.append(line)
            if m := re.search(r"listening on (\S+)", line):
                self.address = m.group(1)
            if "tokvec: ready" in line:
                threading.Thread(target=self._drain, daemon=True).start()
                return
        raise RuntimeError("server not ready in time:\n" + "".join(self.lines))

    def _drain(self) -> None:
        assert self.proc.stdout is not None
        try:
            for line in self.proc.stdout:
                self.lines.append(line)
        except ValueError:  # closed by stop()
            pass

    def stop(self, timeout: float = 15.0) -> int:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        if self.proc.stdout is not None:
            self.proc.stdout.close()
        return self.proc.returncode


class ServerThread:
    """An in-process Server on a private event loop thread."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings.replace(address="127.0.0.1:0")
        self.loop = asyncio.new_event_loop()
        self.server = Server(self.settings, say=lambda _line: None)
        started = threading.Event()
        self._error: BaseException | None = None

        def main() -> None:
            asyncio.set_event_loop(self.loop)
            try:
                try:
                    self.loop.run_until_complete(self.server.start())
                except BaseException as exc:
                    self._error = exc
                    started.set()
                    return
                started.set()
                self.exit_code = self.loop.run_until_complete(self.server.wait())
            finally:
                # A loop left open leaks its self-pipe sockets: ResourceWarnings in a later test.
                self.loop.run_until_complete(self.loop.shutdown_asyncgens())
                self.loop.close()

        self.thread = threading.Thread(target=main, name="test-server", daemon=True)
        self.thread.start()
        started.wait(120)
        if self._error is not None:
            raise self._error
        self.address = f"127.0.0.1:{self.server.port}"

    @property
    def runner(self) -> Any:
        return self.server.engines[0].runner

    def stop(self) -> None:
        self.loop.call_soon_threadsafe(self.server.request_stop)
        self.thread.join(30)
