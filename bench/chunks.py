"""What chunk vectors cost beside token rows: EWT test through one `tokvec serve`, by N asyncio
clients (4 x 16 docs a request by default, EWT test sent 4x per setting), asking for token rows alone, or for
token rows and chunk vectors from the same forward, in alternating rounds of one run (the order
reverses every other round), so that the words/s ratio of each round is taken side by side.

Chunk settings: ``sents3`` (chunks of 3 sentences, late chunking's shape: a few per doc) and
``ngrams3`` (every 1-3 token span, spancat's suggester: about 3 per token, the heavy end), each
pooled with mean (and ``ngrams3x4``: last, first, mean, max, as tokvec.RemoteSpanReducer.v1 asks).

    python bench/chunks.py                  # 5 rounds, 4 clients x 16 docs, EWT test 4x per setting (~8 minutes)
    python bench/chunks.py --quick          # every 4th doc
    python bench/chunks.py --server H:P     # a server already running (e.g. on a GPU machine)

Writes bench/results/chunks.json and bench/results/CHUNKS.md (``--out`` another folder).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import statistics
import sys
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

from corpus import SPANS, load_docs, n_words  # noqa: E402

from server import ServerProcess  # noqa: E402
from tokvec import AsyncClient  # noqa: E402

SETTINGS = {
    "tokens": {"chunks": None, "poolings": ()},
    "tokens+sents3": {"chunks": "sents3", "poolings": ("mean",)},
    "tokens+ngrams3": {"chunks": "ngrams3", "poolings": ("mean",)},
    "tokens+ngrams3x4": {"chunks": "ngrams3", "poolings": ("last", "first", "mean", "max")},
}


def chunks_of(doc: dict[str, Any], kind: str) -> list[tuple[int, int]]:
    n = len(doc["words"])
    if kind == "ngrams3":
        return [(a, a + w) for w in (1, 2, 3) for a in range(n - w + 1)]
    starts = [i for i, s in enumerate(doc["sent_starts"]) if s or i == 0]
    bounds = starts[::3] + [n]
    return [(a, b) for a, b in zip(bounds, bounds[1:]) if b > a]


async def drive(
    address: str, docs: list[dict[str, Any]], setting: dict[str, Any], clients: int, per_request: int
) -> float:
    """Seconds to send every doc once; every answer checked (rows, and one vector per chunk)."""
    batches = asyncio.Queue[list[dict[str, Any]]]()
    for start in range(0, len(docs), per_request):
        batches.put_nowait(docs[start : start + per_request])
    pool = [AsyncClient(address, spans=SPANS, timeout=600) for _ in range(clients)]
    await asyncio.gather(*(c.info() for c in pool))
    kind, poolings = setting["chunks"], setting["poolings"]
    outputs = ("tokens", "chunk_vectors") if kind else ("tokens",)

    async def worker(client: AsyncClient) -> None:
        while not batches.empty():
            batch = batches.get_nowait()
            chunks = [d["by_kind"][kind] for d in batch] if kind else None
            results = await client.embed_results(batch, outputs=outputs, chunks=chunks, chunk_poolings=poolings)
            for doc, r in zip(batch, results, strict=True):
                if r.error is not None or len(r.rows) != len(doc["words"]):
                    raise RuntimeError(f"doc {doc['id']}: {r.error or r.rows.shape}")
                if kind and [len(v) for v in r.chunk_vectors] != [len(doc["by_kind"][kind])] * len(poolings):
                    raise RuntimeError(f"doc {doc['id']}: chunk vectors {[v.shape for v in r.chunk_vectors]}")

    started = time.perf_counter()
    try:
        await asyncio.gather(*(worker(c) for c in pool))
    finally:
        seconds = time.perf_counter() - started
        await asyncio.gather(*(c.close() for c in pool))
    return seconds


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--server", help="HOST:PORT of a running server (default: start one)")
    p.add_argument("--rounds", type=int, default=5)
    p.add_argument("--clients", type=int, default=4)
    p.add_argument("--per-request", type=int, default=16)
    # One pass over EWT test takes ~4 s here: too short to time (its start and its drain, when
    # fewer than a batch of docs is left, weigh as much as chunks do). Each setting sends it N times.
    p.add_argument("--copies", type=int, default=4, help="each setting sends the docs this many times")
    p.add_argument("--quick", action="store_true", help="every 4th EWT doc (the length mix of the whole split)")
    p.add_argument("--out", type=Path, default=Path(__file__).resolve().parent / "results")
    args = p.parse_args()
    with (Path(__file__).resolve().parents[1] / "data" / "ewt" / "ewt-test.jsonl").open() as f:
        sents = {d["id"]: d["sent_starts"] for d in map(json.loads, f)}
    docs = load_docs(quick=args.quick)
    for d in docs:
        d["sent_starts"] = sents[d["id"]]
        d["by_kind"] = {k: chunks_of(d, k) for k in ("sents3", "ngrams3")}
    words = n_words(docs) * args.copies
    sent = docs * args.copies
    server = None if args.server else ServerProcess()
    address = args.server or server.address  # type: ignore[union-attr]
    load_start = os.getloadavg()
    rounds: list[dict[str, float]] = []
    try:
        asyncio.run(
            drive(address, docs, SETTINGS["tokens+sents3"], args.clients, args.per_request)
        )  # warm-up, not counted
        for r in range(args.rounds):
            order = list(SETTINGS) if r % 2 == 0 else list(reversed(SETTINGS))
            seconds = {
                name: asyncio.run(drive(address, sent, SETTINGS[name], args.clients, args.per_request))
                for name in order
            }
            rounds.append({name: words / s for name, s in seconds.items()})
            print(
                f"round {r + 1}: " + ", ".join(f"{n} {rounds[-1][n]:,.0f} words/s" for n in SETTINGS), file=sys.stderr
            )
    finally:
        if server is not None:
            server.stop()
    ratios = {name: [rd[name] / rd["tokens"] for rd in rounds] for name in SETTINGS if name != "tokens"}
    result = {
        "machine": {
            "python": platform.python_version(),
            "cpus": os.cpu_count(),
            "load_avg_start": load_start,
            "load_avg_end": os.getloadavg(),
            "server": args.server or "tokvec serve (torch, CPU default)",
        },
        "words": words,
        "docs": len(docs),
        "copies": args.copies,
        "clients": args.clients,
        "docs_per_request": args.per_request,
        "spans": SPANS,
        "chunks_per_doc": {k: statistics.mean(len(d["by_kind"][k]) for d in docs) for k in ("sents3", "ngrams3")},
        "rounds": rounds,
        "ratio_to_tokens_alone": ratios,
        "median_ratio": {name: statistics.median(v) for name, v in ratios.items()},
    }
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "chunks.json").write_text(json.dumps(result, indent=2) + "\n")
    (args.out / "CHUNKS.md").write_text(report(result))
    print(report(result))
    return 0


def report(res: dict[str, Any]) -> str:
    m = res["machine"]
    lines = [
        "# Chunk vectors beside token rows: words/s against token rows alone",
        "",
        f"`python bench/chunks.py`: EWT test ({res['docs']} docs) sent {res['copies']}x per setting ({res['words']:,} words), spans `{res['spans']}`, {res['clients']} clients, "
        f"{res['docs_per_request']} docs a request; settings alternate within each round (order reversed every other round). "
        f"Server: {m['server']}; {m['cpus']} CPUs, load average {m['load_avg_start'][0]:.2f} at the start, {m['load_avg_end'][0]:.2f} at the end "
        "(a shared machine: read the ratios, not the absolute numbers).",
        "",
        f"Chunks per doc: sents3 {res['chunks_per_doc']['sents3']:.1f}, ngrams3 {res['chunks_per_doc']['ngrams3']:.1f}.",
        "",
        "| setting | words/s by round | ratio to tokens alone, by round | median ratio |",
        "| --- | --- | --- | --- |",
    ]
    for name in res["rounds"][0]:
        per_round = ", ".join(f"{rd[name]:,.0f}" for rd in res["rounds"])
        if name == "tokens":
            lines.append(f"| {name} | {per_round} | 1 | 1 |")
        else:
            ratios = ", ".join(f"{x:.3f}" for x in res["ratio_to_tokens_alone"][name])
            lines.append(f"| {name} | {per_round} | {ratios} | {res['median_ratio'][name]:.3f} |")
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    sys.exit(main())
