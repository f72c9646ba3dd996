"""The load driver: bidirectional streams or unary calls against a tokvec server, open loop (a
fixed offered rate, latency counted from the scheduled send so a slow server cannot hide its
queue) or closed loop (a fixed number of docs in flight). One line of timings per doc goes to
``--out``. Run it in its own process, pinned to its own core, so that its CPU never competes with
the server's:

    taskset -c 1 python tests/reliability/load/driver.py --address 127.0.0.1:50051 \
        --mode stream --streams 32 --rate 200 --duration 60 --out timings.tsv

Every doc sent gets exactly one line: ``OK`` with its row count and checksum, or the status code
that surfaced it (a rejected doc, a broken stream). A doc without a line was lost.
"""

from __future__ import annotations

import argparse
import asyncio
import itertools
import json
import random
import sys
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any, TextIO

import numpy as np

import tokvec
from tokvec import _channel

HEADER = "conn\tseq\tsrc\tt_sched\tt_sent\tt_done\tcode\tn_rows\tchecksum\n"


class Recorder:
    """Writes one line per finished doc; counts what was sent and what came back."""

    def __init__(self, out: TextIO) -> None:
        self.out = out
        self.out.write(HEADER)
        self.sent = 0
        self.sent_per_conn: dict[int, int] = {}
        self.done = 0
        self.codes: dict[str, int] = {}
        self.breaks: dict[str, int] = {}  # streams that broke, by status: with no doc unanswered they leave no line

    def count_sent(self, conn: int, n: int) -> None:
        self.sent += n
        self.sent_per_conn[conn] = self.sent_per_conn.get(conn, 0) + n

    def record(
        self, conn: int, seq: int, src: int, t_sched: float, code: str, result: Any = None, t_sent: float = 0.0
    ) -> None:
        """t_sched: when the doc was due (open loop) or sent (closed loop); t_sent: when it was
        handed to the client library (later than t_sched when this process lags)."""
        n_rows, checksum = (-1, 0.0)
        if result is not None and result.error is None:
            n_rows, checksum = result.rows.shape[0], float(result.rows.sum(dtype=np.float64))
        self.out.write(
            f"{conn}\t{seq}\t{src}\t{t_sched:.6f}\t{t_sent or t_sched:.6f}\t{time.monotonic():.6f}\t{code}\t{n_rows}\t{checksum:.6g}\n"
        )
        self.done += 1
        self.codes[code] = self.codes.get(code, 0) + 1


def load_docs(path: Path, max_words: int, first_word: str, max_chars: int = 0) -> list[dict[str, Any]]:
    """Each doc cut to ``max_words``; with ``max_chars``, docs whose cut text is longer are left out."""
    docs = []
    with path.open() as f:
        for line in f:
            d = json.loads(line)
            words, spaces = d["words"][:max_words], d["spaces"][:max_words]
            if max_chars and sum(len(w) + bool(s) for w, s in zip(words, spaces)) > max_chars:
                continue
            if first_word:
                words, spaces = [first_word, *words], [True, *spaces]
            docs.append({"words": words, "spaces": spaces})
    return docs


class Driver:
    def __init__(self, args: argparse.Namespace, docs: list[dict[str, Any]], rec: Recorder) -> None:
        self.args = args
        self.docs = docs
        self.rec = rec
        credentials = tokvec.Credentials(token=args.token) if args.token else None
        self.client_kwargs: dict[str, Any] = {"credentials": credentials, "spans": args.spans}
        self.start = 0.0
        self.end = 0.0
        self.finished_sending = 0

    def doc(self, conn: int, seq: int) -> tuple[int, dict[str, Any]]:
        src = (conn * 7919 + seq) % len(self.docs)  # streams walk the docs from different places
        return src, {**self.docs[src], "id": f"{conn}:{seq}:{src}"}

    def due(self, conn: int, seq: int) -> float:
        """Open loop: the scheduled send time of this stream's seq-th doc (streams staggered)."""
        streams = int(self.args.streams)
        per_conn = float(self.args.rate) / streams
        return self.start + (conn / streams + seq) / per_conn

    def more(self, seq: int) -> bool:
        return (not self.args.count or seq < self.args.count) and time.monotonic() < self.end

    def sent_all(self) -> None:
        self.finished_sending += 1
        if self.finished_sending == self.args.streams:
            print("driver: sent", flush=True)

    async def stream(self, conn: int) -> None:
        """One bidi stream (its own connection). On a broken stream, the docs it had sent and not
        yet answered are recorded with the status; with --reconnect a new stream goes on after a
        backoff, with the docs not yet sent."""
        args = self.args
        next_seq = 0
        backoff = 0.1
        attempt = 0
        async with tokvec.AsyncClient(args.address, timeout=None, **self.client_kwargs) as client:
            while True:
                pending: dict[int, tuple[int, float, float]] = {}  # seq -> (src, t_sched, t_sent): sent, unanswered
                window = asyncio.Semaphore(args.window)
                exhausted = False

                async def requests(mine: int) -> AsyncIterator[dict[str, Any]]:
                    nonlocal exhausted, next_seq
                    while self.more(next_seq):
                        seq = next_seq
                        if args.rate:
                            t_sched = self.due(conn, seq)
                            await asyncio.sleep(max(0.0, t_sched - time.monotonic()))
                        else:
                            await window.acquire()
                            t_sched = time.monotonic()
                        if attempt != mine:
                            # A broken stream's reader may still pull from us: its docs are
                            # already accounted for, and this one goes on the next stream.
                            return
                        src, doc = self.doc(conn, seq)
                        pending[seq] = (src, t_sched, time.monotonic())
                        next_seq = seq + 1
                        self.rec.count_sent(conn, 1)
                        yield doc
                    exhausted = True
                    self.sent_all()

                try:
                    async for result in client.stream(requests(attempt), batch_size=args.batch):
                        seq = int(result.id.split(":")[1])
                        if seq not in pending:  # answered twice, or never asked: the test counts these
                            self.rec.record(conn, seq, -1, 0.0, "UNEXPECTED", result)
                            continue
                        src, t_sched, t_sent = pending.pop(seq)
                        self.rec.record(
                            conn,
                            seq,
                            src,
                            t_sched,
                            "OK" if result.error is None else result.error.code.name,
                            result,
                            t_sent,
                        )
                        window.release()
                        backoff = 0.1
                except tokvec.TokvecError as exc:
                    attempt += 1
                    self.rec.breaks[exc.code.name] = self.rec.breaks.get(exc.code.name, 0) + 1
                    if exc.code.name != "UNAVAILABLE":  # the expected break; any other is worth its words
                        print(f"driver: stream {conn} broke: {exc.code.name}: {exc}", flush=True)
                    for seq, (src, t_sched, t_sent) in sorted(pending.items()):
                        self.rec.record(conn, seq, src, t_sched, exc.code.name, None, t_sent)
                    if not args.reconnect or exhausted:
                        return
                    await asyncio.sleep(backoff * random.uniform(0.8, 1.2))
                    backoff = min(backoff * 2, 2.0)
                    continue
                return

    async def unary(self, conn: int) -> None:
        """Embed calls of --batch docs: open loop (a call every batch/rate s) or --window calls in flight."""
        args = self.args
        async with tokvec.AsyncClient(args.address, timeout=args.timeout, **self.client_kwargs) as client:

            async def call(seqs: list[int], t_sched: float) -> None:
                picked = [self.doc(conn, seq) for seq in seqs]
                self.rec.count_sent(conn, len(seqs))
                t_sent = time.monotonic()
                try:
                    results = await client.embed_results([doc for _, doc in picked])
                except tokvec.TokvecError as exc:
                    for seq, (src, _) in zip(seqs, picked):
                        self.rec.record(conn, seq, src, t_sched, exc.code.name, None, t_sent)
                    return
                for seq, (src, _), result in zip(seqs, picked, results):
                    self.rec.record(
                        conn,
                        seq,
                        src,
                        t_sched,
                        "OK" if result.error is None else result.error.code.name,
                        result,
                        t_sent,
                    )

            seq = 0
            if args.rate:
                tasks = set()
                per_conn = args.rate / args.streams / args.batch  # calls per second on this connection
                for k in itertools.count():
                    t_sched = self.start + (conn / args.streams + k) / per_conn
                    if not self.more(seq) or t_sched >= self.end:
                        break
                    await asyncio.sleep(max(0.0, t_sched - time.monotonic()))
                    task = asyncio.create_task(call(list(range(seq, seq + args.batch)), t_sched))
                    tasks.add(task)
                    task.add_done_callback(tasks.discard)
                    seq += args.batch
                self.sent_all()
                await asyncio.gather(*tasks)
            else:

                async def loop() -> None:
                    nonlocal seq
                    while self.more(seq):
                        seqs = list(range(seq, seq + args.batch))
                        seq += args.batch
                        await call(seqs, time.monotonic())

                await asyncio.gather(*(loop() for _ in range(args.window)))
                self.sent_all()

    async def run(self) -> None:
        self.start = time.monotonic() + 0.2
        self.end = self.start + self.args.duration
        work = self.stream if self.args.mode == "stream" else self.unary
        tasks = [asyncio.create_task(work(conn)) for conn in range(self.args.streams)]
        print("driver: started", flush=True)
        await asyncio.gather(*tasks)


def parse(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--address", required=True)
    p.add_argument("--mode", choices=("stream", "unary"), default="stream")
    p.add_argument("--streams", type=int, default=8, help="streams (stream mode) or connections (unary mode)")
    p.add_argument(
        "--rate", type=float, default=0.0, help="offered docs/s over all streams (open loop); 0 = closed loop"
    )
    p.add_argument(
        "--window",
        type=int,
        default=16,
        help="closed loop: docs in flight per stream, or calls in flight per connection",
    )
    p.add_argument("--batch", type=int, default=1, help="docs per stream message or per unary call")
    p.add_argument("--duration", type=float, default=10.0, help="seconds of sending")
    p.add_argument("--count", type=int, default=0, help="docs per stream (0 = until --duration)")
    p.add_argument("--docs", type=Path, required=True, help="JSON lines with words and spaces")
    p.add_argument("--max-words", type=int, default=64, help="cut each doc to this many words")
    p.add_argument("--max-chars", type=int, default=0, help="leave out docs whose cut text is longer (0: keep all)")
    p.add_argument("--first-word", default="", help="a word put before every doc (to find them in the model's calls)")
    p.add_argument("--spans", default="tokens:128:96")
    p.add_argument("--timeout", type=float, default=60.0, help="unary call timeout")
    p.add_argument("--token", default="")
    p.add_argument(
        "--reconnect", action="store_true", help="stream mode: open a new stream (with backoff) when one breaks"
    )
    p.add_argument("--out", type=Path, required=True)
    return p.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse(argv)
    # Each client its own TCP connection (gRPC would otherwise share one between channels to the
    # same target): the server sees as many peers as there are streams.
    _channel.OPTIONS.append(("grpc.use_local_subchannel_pool", 1))
    docs = load_docs(args.docs, args.max_words, args.first_word, args.max_chars)
    with args.out.open("w") as out:
        rec = Recorder(out)
        started = time.monotonic()
        asyncio.run(Driver(args, docs, rec).run())
        took = time.monotonic() - started
    print(
        json.dumps(
            {
                "sent": rec.sent,
                "sent_per_conn": rec.sent_per_conn,
                "done": rec.done,
                "codes": rec.codes,
                "breaks": rec.breaks,
                "seconds": round(took, 3),
            }
        ),
        flush=True,
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
