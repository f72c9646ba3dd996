"""``tokvec embed``'s input, read lazily: one doc per JSONL line, checked, never all in memory."""

from __future__ import annotations

import json
import sys
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, BinaryIO

from tokvec.rows.ids import IdSet


@dataclass
class Item:
    """One doc on its way: where it came from, and how often a server has been asked for it."""

    doc: dict[str, Any]
    line: int
    size: int  # bytes of its input line (progress is measured in input bytes)
    tries: int = 0

    @property
    def id(self) -> str:
        return str(self.doc["id"])


@dataclass
class Counts:
    bad: int = 0  # lines reported and skipped
    done_before: int = 0  # docs an earlier run wrote (--resume)
    skipped_bytes: int = 0  # input bytes of every line not sent (blank, bad, done before)


def open_input(path: Path) -> BinaryIO:
    """The input, binary (``-``: standard input). OSError if it cannot be opened."""
    return sys.stdin.buffer if str(path) == "-" else path.open("rb")


def read_docs(f: BinaryIO, name: str, done: IdSet, counts: Counts, say: Callable[[str], None]) -> Iterator[Item]:
    """Usable docs in file order; bad lines are reported (``name:line: why; skipped``) and docs
    whose id is in ``done`` are passed over."""
    seen = IdSet()
    for number, raw in enumerate(f, 1):
        if not raw.strip():
            counts.skipped_bytes += len(raw)
            continue
        problem = None
        try:
            doc = json.loads(raw)
        except (json.JSONDecodeError, UnicodeDecodeError) as exc:
            problem = (
                f"not JSON ({exc.msg} at column {exc.colno})" if isinstance(exc, json.JSONDecodeError) else "not UTF-8"
            )
        else:
            problem = check(doc)
        if problem is None and not seen.add(str(doc["id"])):
            problem = f"duplicate id {str(doc['id'])[:80]!r}"
        if problem:
            say(f"{name}:{number}: {problem}; skipped")
            counts.bad += 1
            counts.skipped_bytes += len(raw)
        elif str(doc["id"]) in done:
            counts.done_before += 1
            counts.skipped_bytes += len(raw)
        else:
            yield Item(doc, number, len(raw))


def check(doc: Any) -> str | None:
    """Why a parsed line is not a doc, or None."""
    if not isinstance(doc, dict):
        return "not a JSON object"
    if "id" not in doc:
        return 'no "id"'
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
    return _check_chunks(doc)


def _check_chunks(doc: dict[str, Any]) -> str | None:
    """Chunks are [start, end] token ranges; the server checks them against the doc's tokens."""
    chunks = doc.get("chunks")
    if chunks is None:
        return None
    if not isinstance(chunks, list):
        return '"chunks" is not a list of [start, end] pairs'
    for k, chunk in enumerate(chunks):
        if not (isinstance(chunk, list) and len(chunk) == 2 and all(type(v) is int and v >= 0 for v in chunk)):
            return f'"chunks"[{k}] is not a [start, end] pair of non-negative integers'
    return None
