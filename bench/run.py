"""tokvec benchmark: the service under concurrent load, per backend, beside the raw in-process forward
of the same backend and beside spacy-transformers, all in one run, on all of UD English EWT test.

    python bench/run.py                          # torch, onnx and onnx-int8 servers (about 15 minutes)
    python bench/run.py --backends torch         # one backend
    python bench/run.py --quick                  # every 4th doc, one round
    python bench/run.py --server HOST:PORT       # bench a server that is already running (as "torch")

Writes results.json, REPORT.md and throughput.png to --out (default bench/results). The machine is
shared and noisy: every setting runs once per round (the order reversed every other round); the
report gives each setting's median round, and its ratios to the raw forward of its backend and to
spacy-transformers are paired within a round before the median is taken. results.json keeps every
round. int8 is measured beside fp32 and its rows compared with the torch server's (cosine).
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
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from statistics import median_low
from typing import Any

import numpy as np
from corpus import BUDGET, SPANS, default_model, load_docs, n_words, pack
from load import LoadResult, drive, rows_of, span_lengths
from metrics import Delta, scrape
from report import write_report

from server import RssSampler, ServerProcess, local_pid

BENCH = Path(__file__).resolve().parent
ROOT = BENCH.parent
REF_PYTHON = ROOT / ".venv-ref" / "bin" / "python"
BACKENDS = ("torch", "onnx", "onnx-int8")
SINGLE_FIGURES = ("service_ms_p50", "forward_ms_p50", "tokenize_forward_ms_p50", "service_minus_forward_ms_p50")


def say(message: str) -> None:
    print(f"bench: {message}", file=sys.stderr, flush=True)


def machine() -> dict[str, Any]:
    cpu = next(
        (
            line.split(":", 1)[1].strip()
            for line in Path("/proc/cpuinfo").read_text().splitlines()
            if line.startswith("model name")
        ),
        platform.processor(),
    )
    return {
        "nproc": os.cpu_count(),
        "cpu": cpu,
        "date": dt.datetime.now().astimezone().isoformat(timespec="seconds"),
        "python": platform.python_version(),
        "load_avg_start": os.getloadavg(),
    }


def child_json(python: Path | str, script: str, quick: bool, *args: str) -> dict[str, Any]:
    """Run a bench script in its own process (its own interpreter, its own peak RSS); its JSON."""
    cmd = [str(python), str(BENCH / script), *args] + (["--quick"] if quick else [])
    done = subprocess.run(cmd, cwd=BENCH, capture_output=True, text=True)
    if done.returncode != 0:
        raise RuntimeError(f"{script} failed ({done.returncode}):\n{done.stderr[-3000:]}")
    result: dict[str, Any] = json.loads(done.stdout.strip().splitlines()[-1])
    return result


def export(folder: Path, quantize: str) -> Path:
    """The embedded model exported with ``tokvec export-onnx`` (what a user of --backend onnx runs)."""
    cmd = [sys.executable, "-m", "tokvec", "export-onnx", default_model(), str(folder)] + (
        ["--quantize", quantize] if quantize else []
    )
    done = subprocess.run(cmd, capture_output=True, text=True)
    if done.returncode != 0:
        raise RuntimeError(f"export-onnx failed:\n{done.stderr[-2000:]}")
    return folder


def load_summary(r: LoadResult, pieces: int) -> dict[str, Any]:
    return {
        "seconds": r.seconds,
        "words_per_s": r.words_per_s,
        "pieces_per_s": pieces / r.seconds,
        "p50_ms": r.percentile(50),
        "p99_ms": r.percentile(99),
        "requests": len(r.latencies_ms),
    }


def offline_padding(lengths: list[list[int]], docs_in_queue: int) -> float:
    """Padding efficiency if each group of ``docs_in_queue`` consecutive docs (what the queue holds
    when every client has one request in flight) is packed by length under the budget: what a
    padding runner (onnx) spends; a ragged one (torch on CPU) pads nothing."""
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
    out: dict[str, Any] = {
        "median": sorted(rounds, key=lambda r: float(r["words_per_s"]))[(len(rounds) - 1) // 2],
        "words_per_s_range": [min(speeds), max(speeds)],
        "vs_raw": median_low([w / x for w, x in zip(speeds, raw)]),
        "rounds": rounds,
    }
    if ref:
        out["vs_ref"] = median_low([w / x for w, x in zip(speeds, ref)])
    return out


@dataclass
class Backend:
    """One backend's server and its raw forward, with every round gathered against them."""

    name: str
    serve_args: tuple[str, ...]
    raw_args: tuple[str, ...]
    address: str = ""
    metrics_url: str = ""
    server: ServerProcess | None = None
    sampler: RssSampler | None = None
    service: dict[tuple[int, int], list[dict[str, Any]]] = field(default_factory=dict)
    single: list[dict[str, Any]] = field(default_factory=list)  # single_doc.py, one per round
    raw: list[dict[str, Any]] = field(default_factory=list)

    def start(self, existing: str = "", metrics: str = "") -> None:
        if existing:
            self.address, self.metrics_url = existing, metrics
        else:
            self.server = ServerProcess(*self.serve_args)
            self.address, self.metrics_url = self.server.address, self.server.metrics_url
        pid = self.server.pid if self.server else local_pid(self.address)
        self.sampler = RssSampler(pid) if pid else None
        say(
            f"{self.name}: server {self.address} (pid {pid or 'unknown: no RSS'}, metrics {self.metrics_url or 'none'})"
        )

    def stop(self) -> dict[str, Any]:
        """What to record about the server once the runs are over."""
        final = scrape(self.metrics_url) if self.metrics_url else {}
        high_water = self.sampler.high_water if self.sampler else None
        if self.sampler:
            self.sampler.stop()
        if self.server:
            self.server.stop()
        return {
            "address": self.address,
            "started_by_bench": self.server is not None,
            "startup": self.server.startup if self.server else [],
            "peak_rss_sampled_bytes": self.sampler.peak if self.sampler else None,
            "rss_samples": self.sampler.samples if self.sampler else 0,
            "peak_rss_lifetime_bytes": high_water,
            "padding_efficiency_whole_run": final.get("tokvec_padding_efficiency"),
        }

    def cpu(self) -> dict[str, float]:
        out = {"client": time.process_time()}
        if self.sampler:
            times = self.sampler.process.cpu_times()
            out["server"] = times.user + times.system
        return out


class Bench:
    """Every setting's rounds, for every backend, in one run."""

    def __init__(self, args: argparse.Namespace, backends: list[Backend]) -> None:
        self.args = args
        self.backends = backends
        self.docs = load_docs(quick=args.quick)
        self.loads = [(int(c), 1) for c in args.clients.split(",")]
        self.loads += [(int(c), int(d)) for c, d in (s.split("x") for s in args.batched.split(",") if s)]
        # The server's own pieces per span (Tokenize RPC; every backend tokenizes alike).
        self.lengths = asyncio.run(span_lengths(backends[0].address, self.docs))
        self.pieces = sum(map(sum, self.lengths))
        self.ref: list[dict[str, Any]] = []

    def run_service(self, b: Backend) -> None:
        # The idle server first: one doc at a time, nothing else queued, paired with the raw forward.
        b.single.append(
            child_json(sys.executable, "single_doc.py", self.args.quick, "--server", b.address, *b.raw_args)
        )
        for c, d in self.loads:
            before = scrape(b.metrics_url) if b.metrics_url else {}
            cpu = b.cpu()
            r = asyncio.run(drive(b.address, self.docs, c, d))
            summary = load_summary(r, self.pieces)
            # CPU seconds of the server and of this client process: what the work costs, whoever else
            # shares the machine (wall time is what callers see).
            summary["cpu_s"] = {k: after - before_k for (k, after), before_k in zip(b.cpu().items(), cpu.values())}
            if b.metrics_url and (delta := Delta.between(before, scrape(b.metrics_url))):
                summary["server"] = delta.summary(r.seconds)
            if b.sampler:  # where the server's memory grows
                summary["server_peak_rss_so_far_bytes"] = b.sampler.peak
            b.service.setdefault((c, d), []).append(summary)
            say(
                f"{b.name} service {c} clients x {d} docs/request: {r.words_per_s:,.0f} words/s, p50 {r.percentile(50):.0f} ms"
            )

    def run_raw(self, b: Backend) -> None:
        b.raw.append(child_json(sys.executable, "raw_forward.py", self.args.quick, *b.raw_args))
        say(
            f"{b.name} raw forward: {b.raw[-1]['sorted']['words_per_s']:,.0f} words/s sorted, "
            f"{b.raw[-1]['arrival']['words_per_s']:,.0f} arrival"
        )

    def run_ref(self) -> None:
        if self.args.ref_python.exists():
            self.ref.append(child_json(self.args.ref_python, "ref_spacy_transformers.py", self.args.quick))
            say(f"spacy-transformers: {self.ref[-1]['words_per_s']:,.0f} words/s")

    def run(self, rounds: int) -> None:
        """Every setting once a round; the order reverses every other round, so drift hits all alike."""
        steps: list[Callable[[], None]] = [self.run_ref]
        for b in self.backends:
            steps += [lambda b=b: self.run_raw(b), lambda b=b: self.run_service(b)]
        for i in range(rounds):
            for step in steps if i % 2 == 0 else steps[::-1]:
                step()

    def agreement(self) -> dict[str, Any]:
        """Each backend's token rows against the torch server's, on every doc: max |diff| and cosine."""
        first = self.backends[0]
        if first.name != "torch" or len(self.backends) < 2:
            return {}
        want = rows_of(first.address, self.docs)
        out = {}
        for b in self.backends[1:]:
            got = rows_of(b.address, self.docs)
            a, g = np.concatenate(want), np.concatenate(got)
            cos = (a * g).sum(1) / np.maximum(np.linalg.norm(a, axis=1) * np.linalg.norm(g, axis=1), 1e-12)
            cos = cos[np.linalg.norm(a, axis=1) > 0]  # tokens without a piece are zero rows in both
            out[b.name] = {
                "max_abs_diff": float(np.abs(a - g).max()),
                "cosine_mean": float(cos.mean()),
                "cosine_min": float(cos.min()),
                "tokens": int(len(cos)),
            }
            say(
                f"{b.name} vs torch rows: max |diff| {out[b.name]['max_abs_diff']:.1e}, cosine mean {cos.mean():.4f} min {cos.min():.4f}"
            )
        return out

    def results(self) -> dict[str, Any]:
        ref_speed = [float(r["words_per_s"]) for r in self.ref]
        out: dict[str, Any] = {"backends": {}}
        for b in self.backends:
            raw_speed = [float(r["sorted"]["words_per_s"]) for r in b.raw]
            out["backends"][b.name] = {
                "service": [
                    {
                        "clients": c,
                        "docs_per_request": d,
                        "offline_padding_efficiency": offline_padding(self.lengths, c * d),
                        **aggregate(b.service[(c, d)], raw_speed, ref_speed),
                    }
                    for c, d in self.loads
                ],
                "raw_forward": {
                    "sorted": aggregate([r["sorted"] for r in b.raw], raw_speed, ref_speed),
                    "arrival": aggregate([r["arrival"] for r in b.raw], raw_speed, ref_speed),
                    "peak_rss_bytes": max(r["peak_rss_bytes"] for r in b.raw),
                    "rounds": b.raw,
                },
                "single_doc": {
                    "id": b.single[0]["id"],
                    "words": b.single[0]["words"],
                    **{key: median_low([r[key] for r in b.single]) for key in SINGLE_FIGURES},
                    "rounds": b.single,
                },
            }
        out["spacy_transformers"] = (
            {**aggregate(self.ref, ref_speed, ref_speed), "peak_rss_bytes": max(r["peak_rss_bytes"] for r in self.ref)}
            if self.ref
            else None
        )
        return out


def make_backends(names: list[str], work: Path) -> list[Backend]:
    out = []
    for name in names:
        if name == "torch":
            out.append(Backend(name, (), ("--backend", "torch")))
            continue
        quantize = "int8" if name == "onnx-int8" else ""
        say(f"exporting the model for {name} (tokvec export-onnx{' --quantize int8' if quantize else ''})")
        folder = export(work / name, quantize)
        out.append(
            Backend(name, ("--model", str(folder), "--backend", "onnx"), ("--backend", "onnx", "--model", str(folder)))
        )
    return out


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--server", help="HOST:PORT of a running server (default: start one per backend)")
    parser.add_argument("--metrics", default="", help="with --server: its Prometheus /metrics URL, if it serves one")
    parser.add_argument("--backends", default=",".join(BACKENDS), help=f"comma-separated, of {', '.join(BACKENDS)}")
    parser.add_argument("--quick", action="store_true", help="every 4th doc, one round")
    parser.add_argument("--out", type=Path, default=BENCH / "results")
    parser.add_argument("--rounds", type=int, help="rounds of every setting (default 3, --quick 1)")
    parser.add_argument("--clients", default="1,8,32", help="concurrent clients, one doc per request")
    parser.add_argument("--batched", default="8x16", help="extra CLIENTSxDOCS_PER_REQUEST settings ('' for none)")
    parser.add_argument("--ref-python", type=Path, default=REF_PYTHON, help="interpreter with spacy-transformers")
    args = parser.parse_args()
    rounds = args.rounds or (1 if args.quick else 3)
    names = ["torch"] if args.server else [n for n in args.backends.split(",") if n]
    if unknown := set(names) - set(BACKENDS):
        parser.error(f"--backends: unknown {', '.join(sorted(unknown))}")
    info = machine()

    with tempfile.TemporaryDirectory(prefix="tokvec-bench-") as work:
        backends = make_backends(names, Path(work))
        try:
            for b in backends:
                b.start(args.server or "", args.metrics)
            bench = Bench(args, backends)
            say(
                f"{len(bench.docs)} docs, {n_words(bench.docs)} words, spans {SPANS}, {rounds} round(s), {info['nproc']} cores, backends {', '.join(names)}"
            )
            bench.run(rounds)
            agreement = bench.agreement()
        finally:
            servers = {b.name: b.stop() for b in backends}

    results: dict[str, Any] = {
        "machine": {**info, "load_avg_end": os.getloadavg()},
        "settings": {
            "docs": len(bench.docs),
            "words": n_words(bench.docs),
            "pieces": bench.pieces,
            "spans": SPANS,
            "budget": BUDGET,
            "rounds": rounds,
            "quick": args.quick,
            "pick": "median round; ratios paired within a round",
        },
        "servers": servers,
        "agreement_with_torch": agreement,
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
