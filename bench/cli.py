"""`tokvec embed` as a user runs it, beside the raw in-process forward and the bench's own clients
(run.py's 8 x 16 docs/request), in one run: one CLI process over 4x EWT test, four CLI processes at
once (one copy of EWT test each), and the CLI's peak RSS over 1x and 10x EWT test. Each CLI run's own CPU time per word comes from the kernel (wait4 rusage).

    python bench/cli.py [--rounds 3] [--copies 4] [--rss-copies 10] [--server HOST:PORT]

Writes cli.json and CLI.md to --out (default bench/results). Every round runs the raw forward and
both CLI settings (the order reversed every other round); ratios are paired within a round and the
report gives their median (lower median: a figure some round produced) and every round's.
"""

from __future__ import annotations

import argparse
import asyncio
import datetime as dt
import json
import os
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from statistics import median_low
from typing import Any

from corpus import SPANS, load_docs, n_words
from load import drive
from run import child_json, machine, say

from server import ServerProcess

BENCH = Path(__file__).resolve().parent
ENV = dict(os.environ, HF_HUB_OFFLINE="1", TRANSFORMERS_OFFLINE="1")


def write_corpus(path: Path, docs: list[dict[str, Any]], copies: range) -> int:
    """``docs`` once per copy (ids made unique) as JSONL; the words written."""
    with path.open("w") as f:
        for k in copies:
            for d in docs:
                f.write(json.dumps({**d, "id": f"{d['id']}#{k}"}) + "\n")
    return n_words(docs) * len(copies)


def cli_runs(address: str, inputs: list[Path], work: Path) -> dict[str, Any]:
    """``tokvec embed`` on each input, all at once; wall time from the first start to the last end,
    and each process's CPU seconds and peak RSS as the kernel counted them."""
    procs = []
    started = time.perf_counter()
    for i, source in enumerate(inputs):
        out = work / f"rows-{i}"
        cmd = [
            sys.executable,
            "-m",
            "tokvec",
            "embed",
            str(source),
            "--server",
            address,
            "--output",
            str(out),
            "--spans",
            SPANS,
            "--force",
        ]
        procs.append(subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, env=ENV))
    each = []
    for p in procs:
        _, status, usage = os.wait4(p.pid, 0)
        p.returncode = os.waitstatus_to_exitcode(status)
        assert p.stderr is not None
        err = p.stderr.read().decode()
        p.stderr.close()
        if p.returncode != 0:
            raise RuntimeError(f"tokvec embed failed ({p.returncode}):\n{err[-2000:]}")
        each.append(
            {
                "cpu_s": usage.ru_utime + usage.ru_stime,
                "peak_rss_bytes": usage.ru_maxrss * 1024,
                "summary": err.strip().splitlines()[-1],
            }
        )
    return {"seconds": time.perf_counter() - started, "processes": each}


class CliBench:
    def __init__(self, args: argparse.Namespace, address: str, work: Path) -> None:
        self.args, self.address, self.work = args, address, work
        docs = self.docs = load_docs()
        self.words_1x = n_words(docs)
        self.big = work / "big.jsonl"
        self.big_words = write_corpus(self.big, docs, range(args.copies))
        self.parts = [work / f"part-{k}.jsonl" for k in range(4)]
        self.parts_words = sum(write_corpus(p, docs, range(k, k + 1)) for k, p in enumerate(self.parts))
        self.rounds: list[dict[str, Any]] = []

    def one_round(self, reverse: bool) -> None:
        r: dict[str, Any] = {}

        def raw() -> None:
            r["raw"] = child_json(sys.executable, "raw_forward.py", False, "--backend", "torch")
            say(f"raw forward: {r['raw']['sorted']['words_per_s']:,.0f} words/s (sorted)")

        def clients() -> None:  # the bench's own load (run.py's 8 x 16): what the server gives, whoever asks
            result = asyncio.run(drive(self.address, self.docs, 8, 16))
            r["clients"] = {"words_per_s": result.words_per_s, "seconds": result.seconds}
            say(f"8 bench clients x 16 docs/request, 1x EWT: {result.words_per_s:,.0f} words/s")

        def one() -> None:
            r["one"] = self._settle(cli_runs(self.address, [self.big], self.work), self.big_words)
            say(
                f"1 CLI process, {self.args.copies}x EWT: {r['one']['words_per_s']:,.0f} words/s, {r['one']['cpu_us_per_word']:.1f} us CPU/word"
            )

        def four() -> None:
            r["four"] = self._settle(cli_runs(self.address, self.parts, self.work), self.parts_words)
            say(
                f"4 CLI processes, 1x EWT each: {r['four']['words_per_s']:,.0f} words/s, {r['four']['cpu_us_per_word']:.1f} us CPU/word"
            )

        steps: list[Callable[[], None]] = [raw, clients, one, four]
        for step in reversed(steps) if reverse else steps:
            step()
        raw_speed = r["raw"]["sorted"]["words_per_s"]
        for key in ("clients", "one", "four"):
            r[key]["vs_raw"] = r[key]["words_per_s"] / raw_speed
        self.rounds.append(r)

    @staticmethod
    def _settle(run: dict[str, Any], words: int) -> dict[str, Any]:
        cpu = sum(p["cpu_s"] for p in run["processes"])
        return {
            **run,
            "words": words,
            "words_per_s": words / run["seconds"],
            "cpu_us_per_word": cpu / words * 1e6,
            "peak_rss_bytes": max(p["peak_rss_bytes"] for p in run["processes"]),
        }

    def rss(self) -> dict[str, Any]:
        """Peak RSS of one CLI process over 1x and over ``rss_copies``x EWT test."""
        docs = load_docs()
        out = {}
        for copies in (1, self.args.rss_copies):
            source = self.work / f"rss-{copies}.jsonl"
            words = write_corpus(source, docs, range(copies))
            run = self._settle(cli_runs(self.address, [source], self.work), words)
            out[f"{copies}x"] = {
                "docs": len(docs) * copies,
                "words": words,
                "peak_rss_bytes": run["peak_rss_bytes"],
                "words_per_s": run["words_per_s"],
                "cpu_us_per_word": run["cpu_us_per_word"],
            }
            say(f"CLI over {copies}x EWT: peak RSS {run['peak_rss_bytes'] / 2**20:.1f} MiB")
        return out


def summary(rounds: list[dict[str, Any]], key: str) -> dict[str, Any]:
    ratios = [r[key]["vs_raw"] for r in rounds]
    out = {
        "vs_raw_median": median_low(ratios),
        "vs_raw_rounds": ratios,
        "words_per_s_rounds": [r[key]["words_per_s"] for r in rounds],
    }
    if "cpu_us_per_word" in rounds[0][key]:
        out["cpu_us_per_word_rounds"] = [r[key]["cpu_us_per_word"] for r in rounds]
    return out


def report(results: dict[str, Any]) -> str:
    m, s = results["machine"], results["settings"]
    lines = [
        f"# tokvec embed beside the raw forward ({m['date']})",
        "",
        f"{m['cpu']}, {m['nproc']} cores; load average {m['load_avg_start'][0]:.1f} at the start, {m['load_avg_end'][0]:.1f} at the end "
        f"(a shared machine: read the ratios). Spans `{s['spans']}`, torch backend, {s['rounds']} rounds; ratios paired within a round.",
        "",
        "| setting | words/s by round | vs raw forward by round | median ratio | CLI CPU per word |",
        "| --- | --- | --- | ---: | --- |",
    ]
    raw = [r["raw"]["sorted"]["words_per_s"] for r in results["rounds"]]
    lines.append(
        f"| raw torch forward in-process, length-sorted | {', '.join(f'{w:,.0f}' for w in raw)} | 1.00 | 1.00x | |"
    )
    c = results["clients"]
    lines.append(
        f"| the bench's own 8 clients x 16 docs/request (run.py), 1x EWT test | {', '.join(f'{w:,.0f}' for w in c['words_per_s_rounds'])} "
        f"| {', '.join(f'{x:.2f}' for x in c['vs_raw_rounds'])} | {c['vs_raw_median']:.2f}x | |"
    )
    for key, name in (
        ("one", f"1 `tokvec embed` process, {s['copies']}x EWT test"),
        ("four", "4 `tokvec embed` processes at once, 1x EWT test each"),
    ):
        v = results[key]
        lines.append(
            f"| {name} | {', '.join(f'{w:,.0f}' for w in v['words_per_s_rounds'])} | {', '.join(f'{x:.2f}' for x in v['vs_raw_rounds'])} "
            f"| {v['vs_raw_median']:.2f}x | {', '.join(f'{c:.1f}' for c in v['cpu_us_per_word_rounds'])} us |"
        )
    lines += [
        "",
        "CLI CPU per word: user + system seconds of the `tokvec embed` processes (the kernel's count at exit) over the words embedded.",
        "",
        "| CLI peak RSS | docs | words | peak RSS |",
        "| --- | ---: | ---: | ---: |",
    ]
    for name, v in results["rss"].items():
        lines.append(f"| {name} EWT test | {v['docs']:,} | {v['words']:,} | {v['peak_rss_bytes'] / 2**20:.1f} MiB |")
    grow = results["rss"][f"{s['rss_copies']}x"]["peak_rss_bytes"] - results["rss"]["1x"]["peak_rss_bytes"]
    lines += ["", f"{s['rss_copies']}x against 1x: {grow / 2**20:+.1f} MiB.", ""]
    return "\n".join(lines)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--server", help="HOST:PORT of a running torch server (default: start one)")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--copies", type=int, default=4, help="EWT test copies for the one-process run")
    parser.add_argument("--rss-copies", type=int, default=10)
    parser.add_argument("--out", type=Path, default=BENCH / "results")
    args = parser.parse_args()
    info = machine()
    server = None if args.server else ServerProcess()
    address = args.server or server.address  # type: ignore[union-attr]
    try:
        with tempfile.TemporaryDirectory(prefix="tokvec-bench-cli-") as work:
            bench = CliBench(args, address, Path(work))
            for i in range(args.rounds):
                bench.one_round(reverse=i % 2 == 1)
            rss = bench.rss()
    finally:
        if server is not None:
            server.stop()
    results = {
        "machine": {**info, "load_avg_end": os.getloadavg()},
        "settings": {
            "spans": SPANS,
            "rounds": args.rounds,
            "copies": args.copies,
            "rss_copies": args.rss_copies,
            "words_1x": bench.words_1x,
        },
        "clients": summary(bench.rounds, "clients"),
        "one": summary(bench.rounds, "one"),
        "four": summary(bench.rounds, "four"),
        "rss": rss,
        "rounds": bench.rounds,
    }
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "cli.json").write_text(json.dumps(results, indent=1) + "\n")
    (args.out / "CLI.md").write_text(report(results))
    say(f"wrote {args.out}/cli.json and CLI.md ({dt.datetime.now():%H:%M})")
    print(report(results))
    return 0


if __name__ == "__main__":
    sys.exit(main())
