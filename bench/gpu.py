"""tokvec's whole GPU run in one command: the GPU checks and the GPU bench, written to one folder.

    python bench/gpu.py --out DIR [--tokenizer DIR]     # on a CUDA machine: under 8 minutes on an H200
    python bench/gpu.py --dry-run --out DIR             # the same steps on CPU, tiny, in under 3 minutes

GPU time comes rarely and briefly, so this is prepared and dry-run on CPU (a quick-tier test runs
the dry run) and run in one go when a GPU is lent. It writes DIR/results.json, DIR/REPORT.md and
DIR/gpu.log (its own lines, then every server's log). Steps, most wanted first; a step that would
start past --budget-s is skipped and the report says so:

1. facts: nvidia-smi (card, driver, memory), torch, CUDA, transformers;
2. two BERT encoders built from a config with a fixed seed (all-MiniLM-L6-v2's size and BERT-base's;
   random weights cost what trained ones do), with all-MiniLM-L6-v2's tokenizer;
3. rows: CUDA float32 against CPU float32 (TF32 off), float16 and bfloat16 against float32,
   padded and ragged, through the server's own engine; and the bytes copied device -> host per batch;
4. per encoder: the raw float16 forward over length-sorted padded batches and the runner's ragged
   forward; the service (float16, ragged as the probe picks it, and padded) under 8 and 64 clients
   in several load processes; words/s, p50/p99, GPU busy share and memory (NVML);
5. the host's ceiling: the service on a null forward (the fake model on the GPU), and each host
   stage (validate + tokenize + align, pool + cast + copy, serialize) timed alone.
"""

from __future__ import annotations

import os

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")  # the load processes are spawned, not forked

import argparse
import datetime as dt
import json
import sys
import tempfile
import threading
import time
import traceback
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch
from corpus import load_docs, n_words
from gpu_checks import Variant, build_model, copy_tokenizer, device_to_host, parity
from gpu_load import GpuSampler, drive_processes, facts, model_spans, raw_padded, raw_ragged
from gpu_report import write_report
from gpu_stages import host_stages
from metrics import Delta, scrape

from server import ServerProcess


class Run:
    """The run's clock, its log and its results; every step is recorded, failed or skipped."""

    def __init__(self, out: Path, budget_s: float) -> None:
        self.out = out
        self.budget_s = budget_s
        self.started = time.monotonic()
        self.log = (out / "gpu.log").open("w")
        self.results: dict[str, Any] = {
            "steps": {},
            "date": dt.datetime.now().astimezone().isoformat(timespec="seconds"),
        }

    def say(self, line: str) -> None:
        stamped = f"[{time.monotonic() - self.started:6.1f}s] {line}"
        print(stamped, file=sys.stderr, flush=True)
        self.log.write(stamped + "\n")
        self.log.flush()

    def step(self, name: str, work: Callable[[], Any]) -> Any:
        elapsed = time.monotonic() - self.started
        if elapsed > self.budget_s:
            self.results["steps"][name] = {
                "status": "skipped",
                "why": f"{elapsed:.0f}s elapsed > budget {self.budget_s:.0f}s",
            }
            self.say(f"{name}: skipped (budget)")
            return None
        self.say(f"{name}: start")
        began = time.monotonic()
        try:
            value = work()
        except Exception as exc:  # one failed step must not cost the others: the run is rare
            self.results["steps"][name] = {
                "status": "failed",
                "error": f"{type(exc).__name__}: {exc}",
                "seconds": time.monotonic() - began,
            }
            self.say(f"{name}: FAILED\n{traceback.format_exc()}")
            return None
        self.results["steps"][name] = {"status": "ok", "seconds": time.monotonic() - began}
        self.say(f"{name}: done in {time.monotonic() - began:.1f}s")
        return value

    def save(self) -> None:
        self.results["seconds"] = time.monotonic() - self.started
        (self.out / "results.json").write_text(json.dumps(self.results, indent=1, default=str) + "\n")
        write_report(self.results, self.out)


def server_config(
    work: Path,
    name: str,
    folder: Path,
    device: str,
    dtype: str,
    budget: int,
    ragged: bool = True,
    backend: str = "torch",
) -> Path:
    path = work / f"{name}.toml"
    path.write_text(
        f'[[models]]\nname = "{name}"\npath = "{folder}"\nbackend = "{backend}"\ndevice = "{device}"\n'
        f'dtype = "{dtype}"\nragged = {str(ragged).lower()}\n[models.batching]\nmax_batch_items = {budget}\n'
    )
    return path


def serve_and_load(
    run: Run,
    name: str,
    config: Path,
    docs: list[dict[str, Any]],
    loads: list[tuple[int, int]],
    per_process: int,
    replicas: int = 1,
) -> dict[str, Any]:
    """``replicas`` ``tokvec serve`` processes on ``config`` (started together), each load driven
    against them; their logs kept. Several replicas on one GPU: each has its own host side."""
    servers: list[ServerProcess] = []
    starting = [
        threading.Thread(target=lambda: servers.append(ServerProcess("--config", str(config), ready_timeout=240)))
        for _ in range(replicas)
    ]
    for t in starting:
        t.start()
    for t in starting:
        t.join()
    out: dict[str, Any] = {"replicas": replicas, "startup": [s.startup for s in servers], "loads": []}
    try:
        if len(servers) < replicas:
            raise RuntimeError(f"{replicas - len(servers)} of {replicas} servers did not start (see the log)")
        for clients, per_request in loads:
            urls = [s.metrics_url for s in servers if s.metrics_url]
            before = [scrape(u) for u in urls]
            sampler = GpuSampler()
            result = drive_processes([s.address for s in servers], docs, clients, per_request, per_process)
            result.update(sampler.stop())
            deltas = [d for b, u in zip(before, urls) if (d := Delta.between(b, scrape(u)))]
            if deltas:
                result["server"] = deltas[0].summary(result["seconds"])  # the first replica's
            out["loads"].append(result)
            busy = f", GPU busy {result['gpu_busy']:.0%}" if result.get("gpu_busy") is not None else ""
            run.say(
                f"{name} {clients}x{per_request}: {result['words_per_s']:,.0f} words/s, p50 {result['p50_ms']:.0f} ms, "
                f"p99 {result['p99_ms']:.0f} ms{busy}"
            )
    finally:
        for i, server in enumerate(servers):
            server.stop()
            run.log.write(f"--- server log: {name} #{i} ---\n{server.log.read_text()}\n")
    return out


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--dry-run", action="store_true", help="CPU, tiny encoders, a quarter of EWT test, few clients")
    parser.add_argument(
        "--tokenizer",
        type=Path,
        help="a folder with all-MiniLM-L6-v2's tokenizer files (default: the embedded model's)",
    )
    parser.add_argument(
        "--budget-s",
        type=float,
        help="start no step after this many seconds (default 420; dry run 900: its steps are checked, not timed)",
    )
    parser.add_argument(
        "--repeat", type=int, help="EWT test this many times over in the speed runs (default 8, dry run 1)"
    )
    parser.add_argument(
        "--batch-budget", type=int, help="pieces per batch, service and raw forward alike (default 16384, dry run 4096)"
    )
    parser.add_argument("--models", default="minilm,bert-base")
    parser.add_argument(
        "--replicas", type=int, help="server processes sharing the GPU in the replicas setting (default 4, dry run 2)"
    )
    args = parser.parse_args()
    dry = args.dry_run
    cuda = torch.cuda.is_available() and not dry
    if not cuda and not dry:
        parser.error("no CUDA device here: use --dry-run")
    args.out.mkdir(parents=True, exist_ok=True)
    run = Run(args.out, args.budget_s or (900 if dry else 420))
    device, half = ("cuda", "float16") if cuda else ("cpu", "float32")
    budget = args.batch_budget or (4096 if dry else 16384)
    loads, per_process = ([(2, 4), (8, 4)], 4) if dry else ([(8, 16), (64, 16)], 16)
    replicas = args.replicas or (2 if dry else 4)
    repeat = args.repeat or (1 if dry else 8)
    base_docs = load_docs(quick=dry)
    docs = [{**d, "id": f"{d['id']}#{k}"} for k in range(repeat) for d in base_docs]
    run.results.update(
        {
            "dry_run": dry,
            "device": device,
            "speed_dtype": half,
            "batch_budget": budget,
            "loads": loads,
            "docs": len(docs),
            "words": n_words(docs),
            "repeat": repeat,
            "check_docs": len(base_docs),
        }
    )
    run.say(
        f"{'dry run on CPU' if dry else 'GPU run'}: {len(docs)} docs, {n_words(docs):,} words, batch budget {budget}"
    )

    with tempfile.TemporaryDirectory(prefix="tokvec-gpu-") as tmp:
        work = Path(tmp)
        run.results["facts"] = run.step("facts", facts)
        if args.tokenizer:
            tokenizer = args.tokenizer
        else:
            from corpus import default_model

            tokenizer = copy_tokenizer(Path(default_model()), work / "tokenizer")
        names = [n for n in args.models.split(",") if n]
        folders = {
            n: f
            for n in names
            if (f := run.step(f"build {n}", lambda n=n: build_model(n, tokenizer, work / "models", dry)))
        }
        checks = run.results.setdefault("parity", {})
        for n, folder in folders.items():
            checks[n] = run.step(f"parity {n}", lambda f=folder: parity(f, base_docs, cuda, budget, run.say))
        if "minilm" in folders:
            run.results["device_to_host"] = [
                run.step(
                    f"device to host, {v.name}", lambda v=v: device_to_host(folders["minilm"], base_docs, v, budget)
                )
                for v in (Variant(device, half, True), Variant(device, half, False))
            ]
        speed = run.results.setdefault("speed", {})
        for n, folder in folders.items():
            from transformers import AutoTokenizer

            spans = model_spans(AutoTokenizer.from_pretrained(folder), docs, 512)
            words = n_words(docs)
            s: dict[str, Any] = speed.setdefault(n, {})
            s["raw_padded"] = run.step(
                f"{n} raw padded forward",
                lambda f=folder: raw_padded(f, spans, words, budget, device, getattr(torch, half)),
            )
            s["raw_ragged"] = run.step(
                f"{n} raw ragged forward", lambda f=folder: raw_ragged(f, spans, words, budget, device, half)
            )
            for label, ragged in (("service", True), ("service_padded", False)):
                config = server_config(work, f"{n}-{label}", folder, device, half, budget, ragged)
                s[label] = run.step(
                    f"{n} {label}",
                    lambda c=config, lab=f"{n} {label}": serve_and_load(run, lab, c, docs, loads, per_process),
                )
            label = f"service_{replicas}_replicas"
            s[label] = run.step(
                f"{n} {label}",
                lambda c=config, lab=f"{n} {label}": serve_and_load(
                    run,
                    lab,
                    server_config(work, f"{n}-replicas", folder, device, half, budget),
                    docs,
                    loads[-1:],
                    per_process,
                    replicas,
                ),
            )
            if n == "minilm":
                config = server_config(work, "null", folder, device, "float32", budget, backend="fake")
                run.results["null_forward"] = run.step(
                    "null forward service",
                    lambda c=config: serve_and_load(run, "null forward", c, docs, loads, per_process),
                )
                run.results["host_stages"] = run.step(
                    "host stages", lambda f=folder: host_stages(f, base_docs * (1 if dry else 4), device, 384)
                )
            run.save()  # what is done so far survives a run cut short
    run.save()
    failed = [k for k, v in run.results["steps"].items() if v["status"] == "failed"]
    run.say(
        f"wrote {args.out}/results.json, REPORT.md, gpu.log; {len(failed)} step(s) failed{': ' + ', '.join(failed) if failed else ''}"
    )
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
