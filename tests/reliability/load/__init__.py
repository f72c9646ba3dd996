"""What the reliability tests (docs/reliability.md R1, R2, R5, R6, R12, R13) share: the load driver
started in its own pinned process, the timings it writes, servers pinned to the other cores, a
health prober, process gauges and the metrics endpoint.

Latency figures are ratios to numbers measured in the same run (saturation, a solo client), never
absolute rates: the tests run on two shared, noisy cores.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import socket
import subprocess
import sys
import threading
import time
import urllib.request
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import grpc
import numpy as np
import psutil
from grpc_health.v1 import health_pb2, health_pb2_grpc
from serving import DATA, ServerProcess

DRIVER = Path(__file__).with_name("driver.py")
EWT = DATA / "ewt-test.jsonl"


def split_cpus() -> tuple[set[int], set[int]]:
    """(server cores, driver core): the driver gets the last core to itself when there are two."""
    cpus = sorted(os.sched_getaffinity(0))
    if len(cpus) < 2:
        return set(cpus), set(cpus)
    return set(cpus[:-1]), {cpus[-1]}


@contextlib.contextmanager
def pinned(cpus: set[int]) -> Iterator[None]:
    """Children started inside inherit these cores (the affinity of the thread that forks them)."""
    old = os.sched_getaffinity(0)
    os.sched_setaffinity(0, cpus)
    try:
        yield
    finally:
        os.sched_setaffinity(0, old)


def serve(*args: str, ready_timeout: float = 120.0) -> ServerProcess:
    """``tokvec serve`` pinned to the server cores."""
    with pinned(split_cpus()[0]):
        return ServerProcess(*args, ready_timeout=ready_timeout)


class Spawned:
    """A server command line in a child process (pinned to the server cores), its output kept in
    ``lines`` with the time each line was read; ``address`` once it printed where it listens."""

    def __init__(self, cmd: list[str], until: str = "tokvec: ready", timeout: float = 120.0) -> None:
        env = dict(os.environ, HF_HUB_OFFLINE="1", TRANSFORMERS_OFFLINE="1", PYTHONUNBUFFERED="1")
        with pinned(split_cpus()[0]):
            self.proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=env)
        self.lines: list[str] = []
        self.times: list[float] = []
        self.address = ""
        self._seen = threading.Condition()
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()
        self.wait_for(until, timeout)

    def _read(self) -> None:
        assert self.proc.stdout is not None
        with self.proc.stdout:
            for line in self.proc.stdout:
                with self._seen:
                    self.lines.append(line)
                    self.times.append(time.monotonic())
                    if m := re.search(r"listening on ([^\s\"]+)", line):
                        self.address = m.group(1)
                    self._seen.notify_all()

    def seen(self, text: str) -> float | None:
        """When a line holding ``text`` was read (None: not yet)."""
        return next((t for line, t in zip(self.lines, self.times) if text in line), None)

    def wait_for(self, text: str, timeout: float) -> float:
        with self._seen:
            self._seen.wait_for(lambda: self.seen(text) is not None or self.proc.poll() is not None, timeout)
        when = self.seen(text)
        if when is None:
            raise AssertionError(f"no {text!r} from the server:\n{''.join(self.lines)}")
        return when

    def stop(self, timeout: float = 30.0) -> int:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self._reader.join(10)
        return self.proc.returncode


def tokvec_serve(*args: str, until: str = "tokvec: ready", timeout: float = 120.0) -> Spawned:
    return Spawned([sys.executable, "-m", "tokvec", "serve", "--address", "127.0.0.1:0", *args], until, timeout)


def write_config(path: Path, text: str) -> str:
    path.write_text(text)
    return str(path)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def wait_until(predicate: Callable[[], Any], timeout: float, what: str, every: float = 0.01) -> float:
    """Poll until predicate() is true; seconds waited. Fails on timeout."""
    started = time.monotonic()
    while not predicate():
        if time.monotonic() - started > timeout:
            raise AssertionError(f"timed out after {timeout}s waiting for {what}")
        time.sleep(every)
    return time.monotonic() - started


# --- the load driver -------------------------------------------------------------------------


class Load:
    """A running load driver (driver.py) on the driver core. ``join()`` returns its summary."""

    def __init__(
        self,
        address: str,
        out: Path,
        *args: str,
        cpus: set[int] | None = None,
        nice: int = 0,
        start_timeout: float = 60.0,
    ) -> None:
        self.out = out
        cores = ",".join(str(c) for c in sorted(cpus or split_cpus()[1]))
        cmd = [
            "nice",
            "-n",
            str(nice),
            "taskset",
            "-c",
            cores,
            sys.executable,
            str(DRIVER),
            "--address",
            address,
            "--docs",
            str(EWT),
            "--out",
            str(out),
            *args,
        ]
        self.proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        self.lines: list[str] = []
        self._seen = threading.Condition()
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()
        self.wait_for("driver: started", start_timeout)

    def _read(self) -> None:
        assert self.proc.stdout is not None
        with self.proc.stdout:
            for line in self.proc.stdout:
                with self._seen:
                    self.lines.append(line)
                    self._seen.notify_all()

    def wait_for(self, text: str, timeout: float) -> None:
        with self._seen:
            if not self._seen.wait_for(
                lambda: any(text in line for line in self.lines) or self.proc.poll() is not None, timeout
            ):
                raise AssertionError(f"driver: no {text!r} after {timeout}s:\n{''.join(self.lines)}")
        if not any(text in line for line in self.lines):
            raise AssertionError(f"driver exited before {text!r}:\n{''.join(self.lines)}")

    def join(self, timeout: float = 120.0) -> dict[str, Any]:
        code = self.proc.wait(timeout)
        self._reader.join(10)  # it has the last line once the pipe closes
        assert code == 0, "".join(self.lines)
        summary: dict[str, Any] = json.loads(self.lines[-1])
        summary["sent_per_conn"] = {int(k): v for k, v in summary["sent_per_conn"].items()}
        return summary

    def kill(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()
        self._reader.join(10)

    def timings(self) -> Timings:
        return Timings.read(self.out)


@dataclass
class Timings:
    """The driver's per-doc lines as columns (one entry per finished doc, in arrival order)."""

    conn: np.ndarray
    seq: np.ndarray
    src: np.ndarray
    t_sched: np.ndarray
    t_sent: np.ndarray
    t_done: np.ndarray
    code: np.ndarray
    n_rows: np.ndarray
    checksum: np.ndarray

    @classmethod
    def read(cls, path: Path) -> Timings:
        rows = [
            line.split("\t") for line in path.read_text().splitlines()[1:] if line.count("\t") == 8
        ]  # a killed driver's last line may be cut
        cols = list(zip(*rows)) if rows else [()] * 9
        return cls(
            conn=np.array(cols[0], dtype=np.int64),
            seq=np.array(cols[1], dtype=np.int64),
            src=np.array(cols[2], dtype=np.int64),
            t_sched=np.array(cols[3], dtype=np.float64),
            t_sent=np.array(cols[4], dtype=np.float64),
            t_done=np.array(cols[5], dtype=np.float64),
            code=np.array(cols[6], dtype=object),
            n_rows=np.array(cols[7], dtype=np.int64),
            checksum=np.array(cols[8], dtype=np.float64),
        )

    def __len__(self) -> int:
        return len(self.seq)

    @property
    def ok(self) -> np.ndarray:
        return np.asarray(self.code == "OK")

    @property
    def latency(self) -> np.ndarray:
        """From when the doc was due: a server queue, or this driver lagging, both count."""
        return np.asarray(self.t_done - self.t_sched)

    @property
    def service_time(self) -> np.ndarray:
        """From when the doc was handed to the client library: the driver's own lag left out."""
        return np.asarray(self.t_done - self.t_sent)

    def where(self, mask: np.ndarray) -> Timings:
        return Timings(
            *(
                getattr(self, f)[mask]
                for f in ("conn", "seq", "src", "t_sched", "t_sent", "t_done", "code", "n_rows", "checksum")
            )
        )

    def codes(self) -> dict[str, int]:
        if not len(self):
            return {}
        names, counts = np.unique(self.code.astype(str), return_counts=True)
        return {str(n): int(c) for n, c in zip(names.tolist(), counts.tolist())}

    def accounting(self, sent_per_conn: dict[int, int]) -> dict[str, int]:
        """Per stream: docs sent and never answered (lost), answered twice (duplicated), or
        answered out of order (reordered)."""
        lost = duplicated = reordered = 0
        for conn, sent in sent_per_conn.items():
            seqs = self.seq[self.conn == conn]
            lost += len(set(range(sent)) - set(seqs.tolist()))
            duplicated += len(seqs) - len(set(seqs.tolist()))
            reordered += int((np.diff(seqs) <= 0).sum())
        duplicated += int((self.code == "UNEXPECTED").sum())
        return {"lost": lost, "duplicated": duplicated, "reordered": reordered}

    def throughput(self, skip: float = 0.2) -> float:
        """OK docs per second over the run, the first and last ``skip`` fraction left out."""
        t = np.sort(self.t_done[self.ok])
        if len(t) < 10:
            return 0.0
        lo, hi = int(len(t) * skip), int(len(t) * (1 - skip)) - 1
        return float((hi - lo) / max(float(t[hi] - t[lo]), 1e-9))


def pct(values: np.ndarray, q: float) -> float:
    return float(np.percentile(values, q)) if len(values) else float("nan")


def saturation(
    address: str, out: Path, seconds: float, streams: int = 8, window: int = 32, args: tuple[str, ...] = ()
) -> float:
    """Docs/s the server sustains with every stream full (closed loop)."""
    load = Load(
        address,
        out,
        "--mode",
        "stream",
        "--streams",
        str(streams),
        "--window",
        str(window),
        "--duration",
        str(seconds),
        *args,
    )
    load.join(seconds + 120)
    timings = load.timings()
    assert timings.ok.all(), timings.codes()
    return timings.throughput()


# --- watching the server ------------------------------------------------------------------------


class HealthProbe:
    """Checks grpc.health.v1 every ``every`` seconds on its own connection; (t, latency, status)."""

    def __init__(self, address: str, every: float = 0.02, timeout: float = 2.0, service: str = "") -> None:
        self.samples: list[tuple[float, float, str]] = []
        self._stop = threading.Event()
        self._channel = grpc.insecure_channel(address, options=[("grpc.use_local_subchannel_pool", 1)])
        self._stub = health_pb2_grpc.HealthStub(self._channel)
        self._request = health_pb2.HealthCheckRequest(service=service)
        self.every, self.timeout = every, timeout
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while not self._stop.is_set():
            started = time.monotonic()
            try:
                status = health_pb2.HealthCheckResponse.ServingStatus.Name(
                    self._stub.Check(self._request, timeout=self.timeout).status
                )
            except grpc.RpcError as exc:
                status = exc.code().name
            self.samples.append((started, time.monotonic() - started, status))
            self._stop.wait(self.every)

    def stop(self) -> HealthProbe:
        self._stop.set()
        self._thread.join(5)
        self._channel.close()
        return self

    def latencies(self, since: float = 0.0, until: float = float("inf")) -> np.ndarray:
        return np.array([lat for t, lat, _ in self.samples if since <= t <= until])

    def statuses(self, since: float = 0.0, until: float = float("inf")) -> set[str]:
        return {s for t, _, s in self.samples if since <= t <= until}

    def first(self, status: str, since: float = 0.0) -> float | None:
        """When the first check that answered ``status`` completed."""
        return next((t + lat for t, lat, s in self.samples if t >= since and s == status), None)


def health(address: str, timeout: float = 2.0) -> str:
    with grpc.insecure_channel(address) as channel:
        try:
            response = health_pb2_grpc.HealthStub(channel).Check(health_pb2.HealthCheckRequest(), timeout=timeout)
        except grpc.RpcError as exc:
            return str(exc.code().name)
        return str(health_pb2.HealthCheckResponse.ServingStatus.Name(response.status))


@dataclass
class Gauges:
    rss: int
    fds: int
    threads: int


def gauges(pid: int) -> Gauges:
    p = psutil.Process(pid)
    return Gauges(p.memory_info().rss, p.num_fds(), p.num_threads())


class Sampler:
    """A process's gauges every ``every`` seconds, in a thread: (t, Gauges)."""

    def __init__(self, pid: int, every: float = 0.5) -> None:
        self.pid = pid
        self.samples: list[tuple[float, Gauges]] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, args=(every,), daemon=True)
        self._thread.start()

    def _run(self, every: float) -> None:
        while not self._stop.is_set():
            self.samples.append((time.monotonic(), gauges(self.pid)))
            self._stop.wait(every)

    def stop(self) -> Sampler:
        self._stop.set()
        self._thread.join(5)
        return self

    def rss_between(self, t0: float, t1: float) -> float:
        """Median RSS of the samples in [t0, t1] (a median shrugs off one allocator burst)."""
        values = [g.rss for t, g in self.samples if t0 <= t <= t1]
        assert values, f"no RSS sample between {t0} and {t1}"
        return float(np.median(values))


def metrics_address(server: ServerProcess | Spawned) -> str:
    for line in server.lines:
        if m := re.search(r"metrics on http://(\S+)/metrics", line):
            return m.group(1)
    raise AssertionError("the server printed no metrics address:\n" + "".join(server.lines))


def scrape(address: str) -> dict[str, float]:
    """The Prometheus text at /metrics as {'name{labels}': value}."""
    with urllib.request.urlopen(f"http://{address}/metrics", timeout=5) as response:
        text = response.read().decode()
    values = {}
    for line in text.splitlines():
        if line and not line.startswith("#"):
            name, value = line.rsplit(" ", 1)
            values[name] = float(value)
    return values
