"""tokvec benchmark: the service under concurrent load, beside the raw in-process forward of its
backend and beside spacy-transformers, all in one run, on all of UD English EWT test.

    python bench/run.py                      # start a `tokvec serve` and bench it (a few minutes)
    python bench/run.py --quick              # every 4th doc, one round
    python bench/run.py --server HOST:PORT   # bench a server that is already running

Writes results.json, REPORT.md and throughput.png to --out (default bench/results). The machine is
shared and noisy: every setting runs once per round (the order reversed every other round); the
report gives each setting's median round, and its ratios to the raw forward and to spacy-transformers
are paired within a round before the median is taken. results.json keeps every round.
"""

from __future__ import annotations

import argparse
import asyncio
import datetime as dt
import json
import os
import platform
import subprocess
import sys
import time
from statistics import median_low
from pathlib import Path
from typing import Any, Callable

from corpus import BUDGET, SPANS, doc_with_words, load_docs, n_words, pack
from load import LoadResult, drive, idle_latency, span_lengths
from metrics import Delta, scrape
from report import write_report
from server import RssSampler, ServerProcess, local_pid

BENCH = Path(__file__).resolve().parent
ROOT = BENCH.parent
REF_PYTHON = ROOT / ".venv-ref" / "bin" / "python"


def say(message: str) -> None:
    print(f"bench: {message}", file=sys.stderr, flush=True)


def machine() -> dict[str, Any]:
    cpu = next((line.split(":", 1)[1].strip() for line in Path("/proc/cpuinfo").read_text().splitlines()
                if line.startswith("model name")), platform.processor())
    return {"nproc": os.cpu_count(), "cpu": cpu, "date": dt.datetime.now().astimezone().isoformat(timespec="seconds"),
            "python": platform.python_version(), "load_avg_start": os.getloadavg()}


def child_json(python: Path | str, script: str, quick: bool) -> dict[str, Any]:
    """Run a bench script in its own process (its own interpreter, its own peak RSS); its JSON."""
    cmd = [str(python), str(BENCH / script)] + (["--quick"] if quick else [])
    done = subprocess.run(cmd, cwd=BENCH, capture_output=True, text=True)
    if done.returncode != 0:
        raise RuntimeError(f"{script} failed ({done.returncode}):\n{done.stderr[-3000:]}")
    result: dict[str, Any] = json.loads(done.stdout.strip().splitlines()[-1])
    return result


def load_summary(r: LoadResult, pieces: int) -> dict[str, Any]:
    return {"seconds": r.seconds, "words_per_s": r.words_per_s, "pieces_per_s": pieces / r.seconds,
            "p50_ms": r.percentile(50), "p99_ms": r.percentile(99), "requests": len(r.latencies_ms)}


def offline_padding(lengths: list[list[int]], docs_in_queue: int) -> float:
    """Padding efficiency if each group of ``docs_in_queue`` consecutive docs (what the queue holds
    when every client has one request in flight) is packed by length under the budget."""
    real = padded = 0
    for start in range(0, len(lengths), docs_in_queue):
        p = pack([n for doc in lengths[start : start + docs_in_queue] for n in doc], BUDGET)
        real, padded = real + p.real, padded + p.padded
    return real / padded


def aggregate(rounds: list[dict[str, Any]], raw: list[float], ref: list[float]) -> dict[str, Any]:
    """A setting over all rounds: its median round, the spread, and its words/s over the raw forward's
    and spacy-transformers' in the same round (median of those paired ratios). Lower medians, so every
    figure is one that a round produced."""
    speeds = [float(r["words_per_s"]) for r in rounds]
    out: dict[str, Any] = {"median": sorted(rounds, key=lambda r: float(r["words_per_s"]))[(len(rounds) - 1) // 2],
                           "words_per_s_range": [min(speeds), max(speeds)],
                           "vs_raw": median_low([w / x for w, x in zip(speeds, raw)]), "rounds": rounds}
    if ref:
        out["vs_ref"] = median_low([w / x for w, x in zip(speeds, ref)])
    return out


class Bench:
    """Every setting's rounds, gathered against one server."""

    def __init__(self, args: argparse.Namespace, address: str, metrics_url: str, sampler: RssSampler | None) -> None:
        self.args = args
        self.sampler = sampler
        self.address = address
        self.metrics_url = metrics_url
        self.docs = load_docs(quick=args.quick)
        self.loads = [(int(c), 1) for c in args.clients.split(",")]
        self.loads += [(int(c), int(d)) for c, d in (s.split("x") for s in args.batched.split(",") if s)]
        self.lengths = asyncio.run(span_lengths(address, self.docs))  # the server's own pieces per span
        self.pieces = sum(map(sum, self.lengths))
        self.doc40 = doc_with_words(self.docs, 40)
        self.service: dict[tuple[int, int], list[dict[str, Any]]] = {load: [] for load in self.loads}
        self.idle: list[float] = []
        self.raw: list[dict[str, Any]] = []
        self.ref: list[dict[str, Any]] = []

    def run_service(self) -> None:
        # The idle server first: one doc at a time, nothing else queued.
        self.idle.append(median_low(asyncio.run(idle_latency(self.address, self.doc40, 20 if self.args.quick else 50))))
        for c, d in self.loads:
            before = scrape(self.metrics_url) if self.metrics_url else {}
            cpu = self.cpu()
            r = asyncio.run(drive(self.address, self.docs, c, d))
            summary = load_summary(r, self.pieces)
            # CPU seconds of the server and of this client process: what the work costs, whoever else
            # shares the machine (wall time is what callers see).
            summary["cpu_s"] = {k: after - before_k for (k, after), before_k in zip(self.cpu().items(), cpu.values())}
            if self.metrics_url and (delta := Delta.between(before, scrape(self.metrics_url))):
                summary["server"] = delta.summary(r.seconds)
            if self.sampler:  # where the server's memory grows
                summary["server_peak_rss_so_far_bytes"] = self.sampler.peak
            self.service[(c, d)].append(summary)
            say(f"service {c} clients x {d} docs/request: {r.words_per_s:,.0f} words/s, p50 {r.percentile(50):.0f} ms")

    def cpu(self) -> dict[str, float]:
        out = {"client": time.process_time()}
        if self.sampler:
            times = self.sampler.process.cpu_times()
            out["server"] = times.user + times.system
        return out

    def run_raw(self) -> None:
        self.raw.append(child_json(sys.executable, "raw_forward.py", self.args.quick))
        say(f"raw forward: {self.raw[-1]['sorted']['words_per_s']:,.0f} words/s sorted, "
            f"{self.raw[-1]['arrival']['words_per_s']:,.0f} arrival")

    def run_ref(self) -> None:
        if self.args.ref_python.exists():
            self.ref.append(child_json(self.args.ref_python, "ref_spacy_transformers.py", self.args.quick))
            say(f"spacy-transformers: {self.ref[-1]['words_per_s']:,.0f} words/s")

    def run(self, rounds: int) -> None:
        """Every setting once a round; the order reverses every other round, so drift hits all alike."""
        steps: list[Callable[[], None]] = [self.run_raw, self.run_service, self.run_ref]
        for i in range(rounds):
            for step in steps if i % 2 == 0 else steps[::-1]:
                step()

    def results(self) -> dict[str, Any]:
        raw, ref, doc = self.raw, self.ref, self.doc40
        raw_speed = [float(r["sorted"]["words_per_s"]) for r in raw]
        ref_speed = [float(r["words_per_s"]) for r in ref]
        forward_ms = [float(r["single_doc"]["forward_ms_p50"]) for r in raw]
        return {
            "service": [{"clients": c, "docs_per_request": d, "offline_padding_efficiency": offline_padding(self.lengths, c * d),
                         **aggregate(self.service[(c, d)], raw_speed, ref_speed)} for c, d in self.loads],
            "raw_forward": {"sorted": aggregate([r["sorted"] for r in raw], raw_speed, ref_speed),
                            "arrival": aggregate([r["arrival"] for r in raw], raw_speed, ref_speed),
                            "peak_rss_bytes": max(r["peak_rss_bytes"] for r in raw), "rounds": raw},
            "spacy_transformers": {**aggregate(ref, raw_speed, ref_speed), "peak_rss_bytes": max(r["peak_rss_bytes"] for r in ref)} if ref else None,
            "single_doc": {"id": doc["id"], "words": len(doc["words"]), "service_idle_p50_ms": median_low(self.idle),
                           "raw_forward_ms_p50": median_low(forward_ms),
                           "raw_tokenize_forward_ms_p50": median_low([r["single_doc"]["tokenize_forward_ms_p50"] for r in raw]),
                           "idle_minus_forward_ms": median_low([i - f for i, f in zip(self.idle, forward_ms)]),
                           "rounds": {"service_idle_p50_ms": self.idle, "raw_forward_ms_p50": forward_ms}},
        }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--server", help="HOST:PORT of a running server (default: start one)")
    parser.add_argument("--metrics", default="", help="with --server: its Prometheus /metrics URL, if it serves one")
    parser.add_argument("--quick", action="store_true", help="every 4th doc, one round")
    parser.add_argument("--out", type=Path, default=BENCH / "results")
    parser.add_argument("--rounds", type=int, help="rounds of every setting (default 3, --quick 1)")
    parser.add_argument("--clients", default="1,8,32", help="concurrent clients, one doc per request")
    parser.add_argument("--batched", default="8x16", help="extra CLIENTSxDOCS_PER_REQUEST settings ('' for none)")
    parser.add_argument("--ref-python", type=Path, default=REF_PYTHON, help="interpreter with spacy-transformers")
    args = parser.parse_args()
    rounds = args.rounds or (1 if args.quick else 3)
    info = machine()

    server = None if args.server else ServerProcess()
    address: str = server.address if server else args.server
    metrics_url: str = server.metrics_url if server else args.metrics
    pid = server.pid if server else local_pid(address)
    sampler = RssSampler(pid) if pid else None
    say(f"server {address} (pid {pid or 'unknown: no RSS'}, metrics {metrics_url or 'none'})")
    try:
        bench = Bench(args, address, metrics_url, sampler)
        say(f"{len(bench.docs)} docs, {n_words(bench.docs)} words, spans {SPANS}, {rounds} round(s), {info['nproc']} cores")
        bench.run(rounds)
        final = scrape(metrics_url) if metrics_url else {}
    finally:
        if sampler:
            sampler.stop()
        high_water = sampler.high_water if sampler else None
        if server:
            server.stop()

    results: dict[str, Any] = {
        "machine": {**info, "load_avg_end": os.getloadavg()},
        "settings": {"docs": len(bench.docs), "words": n_words(bench.docs), "pieces": bench.pieces, "spans": SPANS,
                     "budget": BUDGET, "rounds": rounds, "quick": args.quick, "pick": "median round; ratios paired within a round"},
        "server": {"address": address, "started_by_bench": server is not None, "startup": server.startup if server else [],
                   "peak_rss_sampled_bytes": sampler.peak if sampler else None, "rss_samples": sampler.samples if sampler else 0,
                   "peak_rss_lifetime_bytes": high_water,
                   "padding_efficiency_whole_run": final.get("tokvec_padding_efficiency")},
        **bench.results(),
    }
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "results.json").write_text(json.dumps(results, indent=1) + "\n")
    write_report(results, args.out)
    say(f"wrote {args.out}/results.json, REPORT.md, throughput.png")
    print((args.out / "REPORT.md").read_text())
    return 0


if __name__ == "__main__":
    sys.exit(main())
