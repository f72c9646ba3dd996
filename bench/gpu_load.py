"""The GPU run's speed half: the raw forward of a model (length-sorted padded batches, and ragged
batches through the torch runner), the service under many clients spread over several processes,
and the GPU's busy share and memory, sampled by NVML meanwhile."""

from __future__ import annotations

import asyncio
import math
import os
import subprocess
import threading
import time
from collections.abc import Callable
from multiprocessing import get_context
from pathlib import Path
from queue import Empty
from typing import Any

import numpy as np
import torch
from corpus import pack, span_texts


def facts() -> dict[str, Any]:
    """The card, its driver and memory (nvidia-smi), and the software that ran on it."""
    import transformers

    out: dict[str, Any] = {
        "torch": torch.__version__,
        "cuda": torch.version.cuda,
        "transformers": transformers.__version__,
        "cpu_count": os.cpu_count(),
        "cuda_available": torch.cuda.is_available(),
    }
    query = "name,driver_version,memory.total,clocks.max.sm,power.limit"
    try:
        done = subprocess.run(
            ["nvidia-smi", f"--query-gpu={query}", "--format=csv,noheader"], capture_output=True, text=True, timeout=30
        )
        out["nvidia_smi"] = (
            dict(zip(query.split(","), (v.strip() for v in done.stdout.strip().splitlines()[0].split(","))))
            if done.returncode == 0
            else done.stderr.strip()
        )
    except (OSError, subprocess.TimeoutExpired, IndexError) as exc:
        out["nvidia_smi"] = f"not available: {exc}"
    if torch.cuda.is_available():
        props = torch.cuda.get_device_properties(0)
        out["device"] = {
            "name": props.name,
            "multiprocessors": props.multi_processor_count,
            "memory_bytes": props.total_memory,
            "capability": f"{props.major}.{props.minor}",
        }
    return out


class GpuSampler:
    """The GPU's busy share (NVML utilization: the share of time a kernel ran) and the memory used
    on it, every ``interval`` seconds in a thread. Without NVML or a GPU, it records nothing."""

    def __init__(self, interval: float = 0.02) -> None:
        self.interval = interval
        self.busy: list[int] = []
        self.memory_max = 0
        self._handle: Any = None
        try:
            import pynvml

            pynvml.nvmlInit()
            self._nvml = pynvml
            self._handle = pynvml.nvmlDeviceGetHandleByIndex(0)
        except Exception:  # no nvidia-ml-py, no driver, no GPU: a CPU dry run
            return
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="gpu-sampler", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while not self._stop.is_set():
            self.busy.append(int(self._nvml.nvmlDeviceGetUtilizationRates(self._handle).gpu))
            self.memory_max = max(self.memory_max, int(self._nvml.nvmlDeviceGetMemoryInfo(self._handle).used))
            self._stop.wait(self.interval)

    def stop(self) -> dict[str, Any]:
        if self._handle is None:
            return {"gpu_busy": None, "gpu_memory_used_max_bytes": None}
        self._stop.set()
        self._thread.join()
        return {
            "gpu_busy": float(np.mean(self.busy)) / 100 if self.busy else None,
            "gpu_busy_samples": len(self.busy),
            "gpu_memory_used_max_bytes": self.memory_max,
        }


def model_spans(tokenizer: Any, docs: list[dict[str, Any]], max_length: int) -> list[np.ndarray]:
    """Every doc's tokens:128:96 windows as piece ids with the special pieces, cut at the model's limit."""
    texts = [t for d in docs for t in span_texts(d)]
    return [
        np.asarray(ids[:max_length], np.int64)
        for ids in tokenizer(texts, add_special_tokens=True, verbose=False)["input_ids"]
    ]


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize()


def timed(run_all: Callable[[], object], device: torch.device, passes: int = 3) -> tuple[float, float]:
    """Seconds of one pass over every batch: the first pass (every batch shape new), and the
    median of ``passes`` after it. A shape's first forward picks kernels and grows the memory
    cache, which a server that has run a while has long done: the median is the figure to use."""
    started = time.perf_counter()
    run_all()
    _sync(device)
    cold = time.perf_counter() - started
    times = []
    for _ in range(passes):
        started = time.perf_counter()
        run_all()
        _sync(device)
        times.append(time.perf_counter() - started)
    return cold, float(np.median(times))


def raw_padded(
    folder: Path, spans: list[np.ndarray], words: int, budget: int, device: str, dtype: torch.dtype
) -> dict[str, Any]:
    """The model's own forward over length-sorted padded batches under ``budget`` padded pieces:
    no alignment, no pooling, no copy to a caller. What a careful in-process user would run."""
    from transformers import AutoModel

    dev = torch.device(device)
    model = AutoModel.from_pretrained(folder).to(device=dev, dtype=dtype).eval()
    lengths = [len(s) for s in spans]
    packing = pack(lengths, budget, sort=True)
    batches = []
    for batch in packing.batches:  # built before the clock: the host's part of a padded forward is not ours to time
        longest = max(lengths[i] for i in batch)
        ids = np.zeros((len(batch), longest), np.int64)
        mask = np.zeros((len(batch), longest), np.int64)
        for row, i in enumerate(batch):
            ids[row, : lengths[i]], mask[row, : lengths[i]] = spans[i], 1
        batches.append((torch.from_numpy(ids).to(dev), torch.from_numpy(mask).to(dev)))
    if dev.type == "cuda":
        torch.cuda.reset_peak_memory_stats()
    with torch.inference_mode():
        cold, seconds = timed(lambda: [model(input_ids=ids, attention_mask=mask) for ids, mask in batches], dev)
    out = {
        "seconds": seconds,
        "first_pass_seconds": cold,
        "words_per_s": words / seconds,
        "pieces_per_s": packing.real / seconds,
        "batches": len(batches),
        "padding_efficiency": packing.efficiency,
        "peak_memory_bytes": torch.cuda.max_memory_allocated() if dev.type == "cuda" else None,
    }
    return out


def raw_ragged(
    folder: Path, spans: list[np.ndarray], words: int, budget: int, device: str, dtype: str
) -> dict[str, Any]:
    """The torch runner's own forward over ragged batches of ``budget`` real pieces, in arrival
    order (a ragged batch costs its pieces, whatever their order), with the kernel its probe picks."""
    from tokvec_server.runners.batch import Batch
    from tokvec_server.runners.torch_runner import TorchRunner

    runner = TorchRunner(folder, "raw-ragged", device, dtype)
    if not runner.ragged:
        return {"attention": "", "note": "the probe kept this model padded on this device"}
    batches: list[list[np.ndarray]] = [[]]
    filled = 0
    for span in spans:
        if filled + len(span) > budget and batches[-1]:
            batches.append([])
            filled = 0
        batches[-1].append(span)
        filled += len(span)
    with torch.inference_mode():
        # The host's part (spans laid end to end, positions) is timed: the runner does it per batch.
        cold, seconds = timed(lambda: [runner.forward(Batch.of(group), ()) for group in batches], runner.device)
    pieces = sum(len(s) for s in spans)
    return {
        "seconds": seconds,
        "first_pass_seconds": cold,
        "words_per_s": words / seconds,
        "pieces_per_s": pieces / seconds,
        "batches": len(batches),
        "attention": runner.attention,
    }


def _drive_part(
    address: str, docs: list[dict[str, Any]], clients: int, per_request: int, ready: Any, go: Any, results: Any
) -> None:
    """One load process's share (a process's target, so it lives at module level): connect, say
    so, wait for the common start, run, hand back the figures."""
    from load import drive

    def gate() -> None:
        ready.put(True)
        go.wait()

    result = asyncio.run(drive(address, docs, clients, per_request, gate=gate))
    end = time.monotonic()
    results.put(
        {
            "start": end - result.seconds,
            "end": end,
            "words": result.words,
            "docs": result.docs,
            "latencies_ms": result.latencies_ms,
        }
    )


def _take(queue: Any, workers: list[Any], timeout: float) -> Any:
    """The next item of ``queue``; fails at once when a load process died, instead of at the timeout."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            return queue.get(timeout=1.0)
        except Empty:
            if dead := [w.exitcode for w in workers if w.exitcode]:
                raise RuntimeError(f"a load process exited with {dead[0]}") from None
    raise TimeoutError(f"no word from the load processes in {timeout:.0f}s")


def drive_processes(
    addresses: list[str], docs: list[dict[str, Any]], clients: int, per_request: int, per_process: int
) -> dict[str, Any]:
    """``clients`` closed-loop clients over ceil(clients / per_process) processes, so that the
    callers' own CPU (building requests, decoding rows) is never what limits the server; process i
    talks to ``addresses[i % len(addresses)]``. Every process imports and connects first; all start
    at one moment. Words/s from the first start to the last end."""
    processes = max(1, math.ceil(clients / per_process))
    shares = [clients // processes + (i < clients % processes) for i in range(processes)]
    ctx = get_context("spawn")
    ready, results, go = ctx.Queue(), ctx.Queue(), ctx.Event()
    workers = [
        ctx.Process(
            target=_drive_part,
            args=(addresses[i % len(addresses)], docs[i::processes], shares[i], per_request, ready, go, results),
            daemon=True,
        )
        for i in range(processes)
    ]
    for w in workers:
        w.start()
    for _ in workers:
        _take(ready, workers, 120)
    go.set()
    parts = [_take(results, workers, 1200) for _ in workers]
    for w in workers:
        w.join(30)
    seconds = max(p["end"] for p in parts) - min(p["start"] for p in parts)
    latencies = sorted(x for p in parts for x in p["latencies_ms"])
    words = sum(p["words"] for p in parts)

    def pct(q: float) -> float:
        return latencies[min(len(latencies) - 1, max(0, math.ceil(q / 100 * len(latencies)) - 1))]

    return {
        "clients": clients,
        "docs_per_request": per_request,
        "processes": processes,
        "docs": sum(p["docs"] for p in parts),
        "words": words,
        "seconds": seconds,
        "words_per_s": words / seconds,
        "p50_ms": pct(50),
        "p99_ms": pct(99),
        "requests": len(latencies),
    }
