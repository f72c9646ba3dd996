"""``tokvec embed``: a JSONL file of docs in, one float32 array per doc id out (npz)."""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path
from typing import Any, TextIO

import numpy as np

from tokvec.client import Client
from tokvec.errors import TokvecError


def add_parser(commands: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    p = commands.add_parser("embed", help="embed a JSONL file of docs into an npz of per-token rows")
    p.add_argument("input", type=Path, help='one doc per line: {"id", "words", "spaces"} or {"id", "text"}')
    p.add_argument("--server", default="127.0.0.1:50051", help="HOST:PORT, unix:PATH or dns:///NAME:PORT")
    p.add_argument("--output", "-o", type=Path, required=True, help="the .npz to write (doc id -> (n_words, width) float32)")
    p.add_argument("--pooling", default="mean", choices=["mean", "max", "first", "last", "sum"])
    p.add_argument("--spans", default="tokens:128:96", help="doc | sents | tokens:W:S | pieces:W:S")
    p.add_argument("--dtype", default="float32", choices=["float32", "float16", "bfloat16"], help="wire dtype; the npz is float32")
    p.add_argument("--batch-size", type=int, default=16, help="docs per stream message")
    p.add_argument("--force", action="store_true", help="overwrite an existing output")
    p.set_defaults(run=run)


def read_docs(path: Path, err: TextIO) -> tuple[list[dict[str, Any]], list[int], int]:
    """Usable docs, their line numbers, and how many lines were reported and skipped."""
    docs, lines, bad, seen = [], [], 0, set()
    with path.open(encoding="utf-8") as f:
        for number, line in enumerate(f, 1):
            if not line.strip():
                continue
            problem = None
            try:
                doc = json.loads(line)
            except json.JSONDecodeError as exc:
                problem = f"not JSON ({exc.msg} at column {exc.colno})"
            else:
                problem = _check(doc, seen)
            if problem:
                print(f"{path}:{number}: {problem}; skipped", file=err)
                bad += 1
                continue
            seen.add(str(doc["id"]))
            docs.append(doc)
            lines.append(number)
    return docs, lines, bad


def _check(doc: Any, seen: set[str]) -> str | None:
    if not isinstance(doc, dict):
        return "not a JSON object"
    if "id" not in doc:
        return 'no "id"'
    if str(doc["id"]) in seen:
        return f"duplicate id {str(doc['id'])[:80]!r}"
    words, text = doc.get("words"), doc.get("text")
    if words is None and text is None:
        return 'neither "words" nor "text"'
    if words is not None:
        if not isinstance(words, list) or not all(isinstance(w, str) for w in words):
            return '"words" is not a list of strings'
        spaces = doc.get("spaces")
        if spaces is not None and (not isinstance(spaces, list) or len(spaces) != len(words)):
            return f'"spaces" is not a list of {len(words)} booleans'
        doc.pop("text", None)  # words win: rows follow the caller's tokens
    elif not isinstance(text, str):
        return '"text" is not a string'
    starts = doc.get("sent_starts")
    if starts is not None and words is not None and (not isinstance(starts, list) or len(starts) != len(words)):
        return f'"sent_starts" is not a list of {len(words)} booleans'
    return None


class Progress:
    """A one-line progress bar on stderr, redrawn at most ten times a second."""

    def __init__(self, total: int, err: TextIO) -> None:
        self.total, self.err, self.done, self.tokens = total, err, 0, 0
        self.started = self._drawn = time.perf_counter()
        self.live = err.isatty()

    def update(self, tokens: int) -> None:
        self.done += 1
        self.tokens += tokens
        now = time.perf_counter()
        if self.live and (now - self._drawn > 0.1 or self.done == self.total):
            self._drawn = now
            filled = int(30 * self.done / max(self.total, 1))
            rate = self.tokens / max(now - self.started, 1e-9)
            self.err.write(f"\r[{'#' * filled}{' ' * (30 - filled)}] {self.done}/{self.total} docs, {rate:,.0f} tokens/s")
            self.err.flush()

    def close(self) -> float:
        if self.live:
            self.err.write("\n")
        return time.perf_counter() - self.started


def run(args: argparse.Namespace) -> int:
    err = sys.stderr
    if args.output.exists() and not args.force:
        print(f"tokvec embed: {args.output} exists; pass --force to overwrite it", file=err)
        return 2
    try:
        docs, lines, bad = read_docs(args.input, err)
    except OSError as exc:
        print(f"tokvec embed: {args.input}: {exc.strerror}", file=err)
        return 2
    arrays: dict[str, np.ndarray] = {}
    progress = Progress(len(docs), err)
    try:
        with Client(args.server, pooling=args.pooling, spans=args.spans, dtype=args.dtype) as client:
            for result in client.stream(docs, batch_size=args.batch_size):
                progress.update(len(result.rows))
                if result.error is not None:
                    print(f"{args.input}:{lines[result.index]}: {result.error.reason}; skipped", file=err)
                    bad += 1
                    continue
                arrays[str(docs[result.index]["id"])] = result.rows
    except (TokvecError, ValueError) as exc:
        progress.close()
        print(f"tokvec embed: {exc}", file=err)
        return 1
    seconds = progress.close()
    # Write beside the target and rename, so a crash never leaves a half-written npz behind.
    partial = args.output.with_name(args.output.name + ".partial")
    with partial.open("wb") as f:
        np.savez(f, **arrays)
    os.replace(partial, args.output)
    print(f"tokvec embed: {len(arrays)} docs, {progress.tokens:,} tokens in {seconds:.1f}s ({progress.tokens / max(seconds, 1e-9):,.0f} tokens/s) -> {args.output}", file=err)
    if bad:
        print(f"tokvec embed: {bad} lines skipped", file=err)
    return 1 if bad else 0
