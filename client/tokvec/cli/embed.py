"""``tokvec embed``: a JSONL corpus in, one float32 (n_words, width) array per doc id out, streamed:
docs are read as they are sent, rows written as they arrive (a rows folder, or an .npz for PATH.npz),
the servers kept busy, and an interrupted run resumable."""

from __future__ import annotations

import argparse
import asyncio
import os
import sys
from pathlib import Path
from typing import BinaryIO

from tokvec import _wire
from tokvec._results import ServerInfo
from tokvec._wire import Embedding
from tokvec.cli.docs_in import Counts, Item, open_input, read_docs
from tokvec.cli.output import Output
from tokvec.cli.progress import Progress
from tokvec.cli.pump import Fatal, Pump
from tokvec.errors import TokvecError
from tokvec.rows import RowWriter
from tokvec.rows.ids import IdSet

MiB = 1024 * 1024


def add_parser(commands: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    p = commands.add_parser("embed", help="embed a JSONL corpus into per-token rows (a rows folder, or an .npz)")
    p.add_argument(
        "input",
        type=Path,
        help='one doc per line: {"id", "words", "spaces"} or {"id", "text"}, optionally "chunks": [[start, end], ...] '
        "(token ranges: one vector each, pooled with --pooling, in ID/chunks); - reads standard input",
    )
    p.add_argument(
        "--server",
        action="append",
        help="HOST:PORT, unix:PATH or dns:///NAME:PORT; several (repeated or comma-separated) share the work",
    )
    p.add_argument(
        "--output",
        "-o",
        type=Path,
        required=True,
        help="PATH.npz: one .npz (small jobs); any other PATH: a rows folder (tokvec.open_rows reads both)",
    )
    p.add_argument("--pooling", default="mean", choices=["mean", "max", "first", "last", "sum"])
    p.add_argument("--spans", default="tokens:128:96", help="doc | sents | tokens:W:S | pieces:W:S")
    p.add_argument(
        "--dtype",
        default="float32",
        choices=["float32", "float16", "bfloat16"],
        help="wire dtype; rows are stored float32",
    )
    p.add_argument("--batch-size", type=int, default=16, help="docs per stream message")
    p.add_argument(
        "--wait",
        type=float,
        default=120.0,
        metavar="SECONDS",
        help="how long to wait for a server that is starting (default 120)",
    )
    p.add_argument(
        "--resume",
        action="store_true",
        help="go on with an interrupted run (PATH.partial): finished docs are not sent again",
    )
    p.add_argument("--force", action="store_true", help="overwrite an existing output (and drop an interrupted one)")
    p.add_argument("--shard-mb", type=float, default=1024.0, help="rows folder: start a new shard past this many MiB")
    p.set_defaults(run=run)


class Run:
    """One run's state: the writer (made once the first server is ready), counts, progress."""

    def __init__(self, args: argparse.Namespace, output: Output, progress: Progress) -> None:
        self.args, self.output, self.progress = args, output, progress
        self.done = IdSet()  # written ids, this run's and (--resume) an earlier one's
        self.counts = Counts()
        self.writer: RowWriter | None = None
        self.width = 0
        self.finished_bytes = 0
        self.gave_up = 0  # docs not embedded for a passing reason: a rerun with --resume sends them

    def started(self, address: str, info: ServerInfo) -> None:
        model = info.model
        if self.writer is None:
            a = self.args
            identity = {"fingerprint": model.fingerprint, "pooling": a.pooling, "spans": a.spans, "wire_dtype": a.dtype}
            self.writer = self.output.open(
                model.width, identity, {"model": model.name}, int(a.shard_mb * MiB), a.resume, self.done
            )
            self.width = self.writer.width
        elif model.width != self.width:
            raise Fatal(f"{address} serves width {model.width}, the run's rows have width {self.width}")

    def done_doc(self, item: Item, result: Embedding) -> None:
        assert self.writer is not None
        chunks = None
        if "chunks" in item.doc:
            if not result.chunk_vectors:
                self.failed_doc(
                    item, "chunks: the server sent no chunk vectors (it predates OUTPUT_CHUNK_VECTORS)", False
                )
                return
            chunks = result.chunk_vectors[0]
        self.writer.add(item.id, result.rows, chunks)
        self.finished_bytes += item.size
        self.progress.update(1, len(result.rows), self._bytes())

    def failed_doc(self, item: Item, reason: str, passing: bool) -> None:
        self.progress.say(f"{self.args.input}:{item.line}: {reason}; {'not embedded' if passing else 'skipped'}")
        self.gave_up += passing
        self.counts.bad += not passing
        self.finished_bytes += item.size
        self.progress.update(0, 0, self._bytes())

    def _bytes(self) -> int:
        return self.finished_bytes + self.counts.skipped_bytes

    async def pump(self, source: BinaryIO) -> None:
        a = self.args
        addresses = [s for arg in (a.server or ["127.0.0.1:50051"]) for s in arg.split(",") if s]
        items = read_docs(source, str(a.input), self.done, self.counts, self.progress.say)
        pump = Pump(
            addresses,
            items,
            {"pooling": a.pooling, "spans": a.spans, "dtype": a.dtype},
            batch_size=a.batch_size,
            wait_s=a.wait,
            started=self.started,
            done=self.done_doc,
            failed=self.failed_doc,
            say=self.progress.say,
            outputs=_outputs,
        )
        await pump.run()


def _outputs(info: ServerInfo) -> tuple[str, ...]:
    """Chunk vectors from every server that has them: a doc without chunks gets none (nothing is
    pooled for it), so asking costs nothing, and a line's chunks need no option of their own."""
    return ("tokens", "chunk_vectors")


def run(args: argparse.Namespace) -> int:
    err = sys.stderr
    output = Output(args.output)
    if why := output.refusal(args.force, args.resume):
        print(f"tokvec embed: {why}", file=err)
        return 2
    try:
        _wire.options(pooling=args.pooling, spans_spec=args.spans, dtype=args.dtype)
        source = open_input(args.input)
    except ValueError as exc:
        print(f"tokvec embed: {exc}", file=err)
        return 2
    except OSError as exc:
        print(f"tokvec embed: {args.input}: {exc.strerror}", file=err)
        return 2
    total = os.fstat(source.fileno()).st_size if str(args.input) != "-" else None
    state = Run(args, output, Progress(total, err))
    try:
        asyncio.run(state.pump(source))
    except (Fatal, TokvecError, ValueError, OSError) as exc:
        return _stopped(state, f"tokvec embed: {exc}")
    except KeyboardInterrupt:
        return _stopped(state, "tokvec embed: interrupted", 130)
    finally:
        source.close()
        if state.writer is not None:
            state.writer.close()
    return _finished(state)


def _stopped(state: Run, message: str, code: int = 1) -> int:
    """A run that did not get through: its rows stay in PATH.partial for --resume (if it has any)."""
    state.progress.close()
    print(message, file=sys.stderr)
    if state.writer is not None and not len(state.writer.done):
        state.output.discard()
    elif state.writer is not None:
        print(
            f"tokvec embed: {len(state.done):,} docs are in {state.output.partial}; run again with --resume to go on",
            file=sys.stderr,
        )
    return code


def _finished(state: Run) -> int:
    err = sys.stderr
    seconds = state.progress.close()
    p, counts = state.progress, state.counts
    before = f" ({counts.done_before:,} done before)" if counts.done_before else ""
    rate = f"{p.tokens / max(seconds, 1e-9):,.0f} tokens/s"
    if state.gave_up:
        print(
            f"tokvec embed: {p.docs:,} docs, {p.tokens:,} tokens in {seconds:.1f}s ({rate}){before}; {state.gave_up:,} docs not embedded "
            f"(servers busy or away): they stay out of {state.output.partial}; run again with --resume to send them",
            file=err,
        )
        return 1
    state.output.finish()
    print(
        f"tokvec embed: {p.docs:,} docs, {p.tokens:,} tokens in {seconds:.1f}s ({rate}){before} -> {state.output.path}",
        file=err,
    )
    if counts.bad:
        print(f"tokvec embed: {counts.bad} lines skipped", file=err)
    return 1 if counts.bad else 0
