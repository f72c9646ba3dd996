"""The server under test: a ``tokvec serve`` child process, or one already running; and a sampler of
its resident memory."""

from __future__ import annotations

import os
import re
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import psutil


def _serve_supports(flag: str) -> bool:
    done = subprocess.run([sys.executable, "-m", "tokvec", "serve", "--help"], capture_output=True, text=True)
    return flag in done.stdout


class ServerProcess:
    """``tokvec serve`` on 127.0.0.1:0 with the default settings (and its /metrics endpoint where
    this version has one); ready once it says so."""

    def __init__(self, *args: str, ready_timeout: float = 300.0) -> None:
        # The environment scripts/serve.sh and the image give the server.
        env = dict(os.environ, HF_HUB_OFFLINE="1", TRANSFORMERS_OFFLINE="1", PYTHONUNBUFFERED="1")
        cmd = [sys.executable, "-m", "tokvec", "serve", "--address", "127.0.0.1:0", *args]
        if _serve_supports("--metrics-address"):
            cmd += ["--metrics-address", "127.0.0.1:0"]
        fd, log = tempfile.mkstemp(
            prefix="tokvec-bench-server-", suffix=".log"
        )  # one per server: replicas run side by side
        os.close(fd)
        self.log = Path(log)
        self._log = self.log.open("w")
        self.proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=self._log, text=True, env=env)
        self.pid = self.proc.pid
        self.address = ""
        self.metrics_url = ""
        self.startup: list[str] = []  # what it printed until ready
        deadline = time.monotonic() + ready_timeout
        assert self.proc.stdout is not None
        while time.monotonic() < deadline:
            line = self.proc.stdout.readline()
            if not line:
                raise RuntimeError(
                    f"tokvec serve exited before ready (log: {self.log}):\n{self.log.read_text()[-2000:]}"
                )
            if m := re.search(r"listening on (\S+)", line):
                self.address = m.group(1)
            if m := re.search(r"metrics on (\S+)", line):
                self.metrics_url = m.group(1)
            self.startup.append(line.strip())
            if "tokvec: ready" in line:
                return
        self.stop()
        raise RuntimeError(f"tokvec serve not ready in {ready_timeout:.0f}s (log: {self.log})")

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self._log.close()


def local_pid(address: str) -> int | None:
    """The pid listening on a local TCP ``host:port``, if this user may see it."""
    host, _, port = address.rpartition(":")
    if host not in ("127.0.0.1", "localhost", "0.0.0.0", "[::1]", "[::]") or not port.isdigit():
        return None
    try:
        for conn in psutil.net_connections(kind="tcp"):
            if conn.status == psutil.CONN_LISTEN and conn.laddr and conn.laddr.port == int(port) and conn.pid:
                return int(conn.pid)
    except psutil.AccessDenied:
        pass
    return None


class RssSampler:
    """Samples a process's RSS every ``interval`` seconds in a thread; ``peak`` is the largest seen.
    ``high_water`` is the kernel's own peak (VmHWM) where /proc is readable: it sees between samples."""

    def __init__(self, pid: int, interval: float = 0.05) -> None:
        self.process = psutil.Process(pid)
        self.interval = interval
        self.peak = 0
        self.samples = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="rss-sampler", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                self.peak = max(self.peak, self.process.memory_info().rss)
                self.samples += 1
            except psutil.Error:
                return
            self._stop.wait(self.interval)

    @property
    def high_water(self) -> int | None:
        try:
            status = Path(f"/proc/{self.process.pid}/status").read_text()
        except OSError:
            return None
        m = re.search(r"VmHWM:\s+(\d+) kB", status)
        return int(m.group(1)) * 1024 if m else None

    def stop(self) -> None:
        self._stop.set()
        self._thread.join()
