"""One ~40-word doc, alone: sent to an idle server, and run through the raw forward of the same
backend, in alternating blocks, from one process. Prints one JSON object.

    .venv/bin/python bench/single_doc.py --server HOST:PORT [--backend torch|onnx] [--model DIR] [--metrics URL]

On this shared machine a forward's time drifts by half from one minute to the next; measured
minutes apart, a service median and a raw median differ by the drift as much as by the service.
Measured in short blocks that alternate, both see the same machine, and the median of the paired
differences is the service's own cost.

With ``--metrics`` (the server's /metrics URL), each service block also says where its calls'
time went, from the server's own stage histograms (scraped around the block's timed calls, per
call): prep (validate + tokenize, with the wait for the thread that does it), queue wait (queued
until its forward starts: on the prep pool's path, the hop to the model's thread), the forward,
and the rest (gRPC in and out, pooling and conversion, the hop back to the event loop, and the
client's own encoding and decoding).
"""

from __future__ import annotations

import os

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")

import argparse
import asyncio
import json
import statistics
import time
from collections.abc import Awaitable, Callable
from typing import Any

import torch
from corpus import SPANS, default_model, doc_with_words, load_docs, span_texts
from metrics import scrape
from raw_forward import onnx_forward, padded, torch_forward

from tokvec import AsyncClient

WORDS = 40
BLOCK = 10  # calls in a row on one side; the first of each is left out (see blocks)
STAGES = ("prep_ms", "queue_wait_ms", "server_forward_ms", "rest_ms")


def stages(before: dict[str, float], after: dict[str, float], calls: int, service_ms: float) -> dict[str, float]:
    """Per call, in ms, from two scrapes around ``calls`` service calls (one span each)."""

    def mean_ms(name: str) -> float:
        return 1000 * (after.get(f"{name}_sum", 0.0) - before.get(f"{name}_sum", 0.0)) / calls

    out = {
        "prep_ms": mean_ms("tokvec_prep_seconds"),
        "queue_wait_ms": mean_ms("tokvec_queue_wait_seconds"),
        "server_forward_ms": mean_ms("tokvec_forward_seconds"),
    }
    out["rest_ms"] = service_ms - sum(out.values())
    return out


async def blocks(
    raw: Callable[[], tuple[float, float]], service: Callable[[], Awaitable[None]], n: int, metrics: str = ""
) -> list[dict[str, float]]:
    """``n`` pairs of blocks: BLOCK raw forwards, BLOCK service calls (the order swapped every other
    pair). Within a block calls follow each other, as a caller's would; the first call of a block
    is left out, since the other side's OpenMP threads may still be spin-waiting (libgomp spins for
    milliseconds after a forward) and take a core from it. Each pair: the medians of its blocks."""
    out = []
    for i in range(n):
        raw_ms: list[tuple[float, float]] = []
        service_ms: list[float] = []

        split: dict[str, float] = {}

        async def run_service() -> None:
            before: dict[str, float] = {}
            for k in range(BLOCK):
                started = time.perf_counter()
                await service()
                service_ms.append((time.perf_counter() - started) * 1000)
                if metrics and k == 0:  # the first call is left out (see above)
                    before = scrape(metrics)
            if metrics:
                split.update(stages(before, scrape(metrics), BLOCK - 1, statistics.fmean(service_ms[1:])))

        def run_raw() -> None:
            raw_ms.extend(raw() for _ in range(BLOCK))

        if i % 2 == 0:
            run_raw()
            await run_service()
        else:
            await run_service()
            run_raw()
        out.append(
            {
                "service_ms": statistics.median(service_ms[1:]),
                "forward_ms": statistics.median(f for _, f in raw_ms[1:]),
                "tokenize_forward_ms": statistics.median(t + f for t, f in raw_ms[1:]),
                **split,
            }
        )
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--server", required=True, help="HOST:PORT of an idle tokvec server of the same backend and model"
    )
    parser.add_argument("--backend", choices=("torch", "onnx"), default="torch")
    parser.add_argument("--model", default="", help="model folder (onnx: an export folder)")
    parser.add_argument("--pairs", type=int, default=8, help=f"pairs of blocks of {BLOCK} calls (after one to warm up)")
    parser.add_argument("--quick", action="store_true", help="4 pairs")
    parser.add_argument("--metrics", default="", help="the server's /metrics URL: each service block's stage times too")
    args = parser.parse_args()
    from transformers import AutoTokenizer

    folder = args.model or default_model()
    tokenizer = AutoTokenizer.from_pretrained(folder, use_fast=True)
    forward = onnx_forward(folder) if args.backend == "onnx" else torch_forward(folder)
    max_length, pad_id = min(int(tokenizer.model_max_length), 512), int(tokenizer.pad_token_id or 0)
    doc = doc_with_words(load_docs(), WORDS)  # the whole corpus: --quick picks the same doc
    texts = span_texts(doc)

    def raw() -> tuple[float, float]:
        t0 = time.perf_counter()
        ids = [s[:max_length] for s in tokenizer(texts, verbose=False)["input_ids"]]
        t1 = time.perf_counter()
        forward(*padded(ids, pad_id))
        return (t1 - t0) * 1000, (time.perf_counter() - t1) * 1000

    async def run() -> list[dict[str, float]]:
        async with AsyncClient(args.server, spans=SPANS, pooling="mean", timeout=600) as client:

            async def service() -> None:
                (rows,) = await client.embed([doc])
                assert rows.shape[0] == len(doc["words"]), rows.shape

            await blocks(raw, service, 1)  # connect, warm both sides
            return await blocks(raw, service, 4 if args.quick else args.pairs, args.metrics)

    with torch.inference_mode():
        got = asyncio.run(run())
    out: dict[str, Any] = {
        "id": doc["id"],
        "words": len(doc["words"]),
        "pairs": len(got),
        "block": BLOCK,
        "backend": args.backend,
        **{
            f"{key}_p50": statistics.median(p[key] for p in got)
            for key in ("service_ms", "forward_ms", "tokenize_forward_ms", *STAGES)
            if key in got[0]
        },
        "service_minus_forward_ms_p50": statistics.median(p["service_ms"] - p["forward_ms"] for p in got),
        "pairs_ms": got,
    }
    print(json.dumps(out))


if __name__ == "__main__":
    main()
