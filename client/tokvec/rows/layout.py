"""The folder format's names and its two small encodings: the .npy shard header and an index line.

FORMAT.md beside this file is the specification; this module is the only code that spells it.
"""

from __future__ import annotations

import json
import struct
from collections.abc import Iterator
from pathlib import Path
from typing import Any

FORMAT = "tokvec-rows"
VERSION = 1
META = "tokvec-rows.json"
INDEX = "index.jsonl"
DTYPE = "<f4"
ITEM = 4  # bytes per float32
# Every shard's .npy header is this long (a multiple of 64, as the .npy spec asks), so it can be
# rewritten in place with the growing row count.
HEADER = 128


def shard_name(number: int) -> str:
    return f"shard-{number:05d}.npy"


def shard_number(path: Path) -> int | None:
    stem = path.name
    if stem.startswith("shard-") and stem.endswith(".npy") and stem[6:-4].isdigit():
        return int(stem[6:-4])
    return None


def npy_header(rows: int, width: int) -> bytes:
    """A version 1.0 .npy header for a C-order float32 (rows, width) array, HEADER bytes long."""
    text = f"{{'descr': '{DTYPE}', 'fortran_order': False, 'shape': ({rows}, {width}), }}"
    body = text.ljust(HEADER - 10 - 1) + "\n"
    return b"\x93NUMPY\x01\x00" + struct.pack("<H", len(body)) + body.encode("latin1")


def index_line(doc_id: str, shard: int, row: int, n: int, chunks: int | None = None) -> bytes:
    """``chunks``: the doc's chunk vectors, stored right after its n token rows (None: none asked)."""
    entry = {"id": doc_id, "shard": shard, "row": row, "n": n}
    if chunks is not None:
        entry["chunks"] = chunks
    # ASCII JSON: any id (even one with a lone surrogate from a JSON input) survives the round trip.
    return (json.dumps(entry) + "\n").encode("ascii")


def rows_used(entry: dict[str, Any]) -> int:
    """Shard rows an index entry takes: its token rows, then its chunk vectors if any."""
    return int(entry["n"]) + int(entry.get("chunks", 0))


def iter_index(folder: Path) -> Iterator[tuple[dict[str, Any], int]]:
    """Each complete line of a folder's index, with the byte offset where it ends. A torn last
    line (a process killed while writing it) is not complete and is left out."""
    path = folder / INDEX
    if not path.exists():
        return
    end = 0
    with path.open("rb") as f:
        for line in f:
            if not line.endswith(b"\n"):
                return
            end += len(line)
            if line.strip():
                yield json.loads(line), end


def read_meta(folder: Path) -> dict[str, Any]:
    path = folder / META
    try:
        meta: dict[str, Any] = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise ValueError(f"{folder}: not a tokvec rows folder (no {META})") from None
    if meta.get("format") != FORMAT or meta.get("version") != VERSION:
        raise ValueError(
            f"{path}: format {meta.get('format')!r} version {meta.get('version')!r}, expected {FORMAT!r} version {VERSION}"
        )
    return meta


def write_meta(folder: Path, meta: dict[str, Any]) -> None:
    full = {"format": FORMAT, "version": VERSION, "dtype": DTYPE, **meta}
    (folder / META).write_text(json.dumps(full, indent=2) + "\n", encoding="utf-8")
