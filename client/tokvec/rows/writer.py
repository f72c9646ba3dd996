"""Write a rows folder doc by doc, so that at every moment (a SIGKILL included) what the index
names is complete and readable, and a later run can go on where this one stopped."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import numpy as np

from tokvec.rows import layout
from tokvec.rows.ids import IdSet


class RowWriter:
    """Appends each doc's (n_tokens, width) float32 rows to the current shard, then its index line.

    Rows go in before the line that names them and the shard's header is rewritten in between, so
    a reader (or a resumed run) trusts the index and never sees a row that is not all there.
    Unbuffered writes: nothing waits in this process's memory, so a killed process loses at most
    the doc it was writing.
    """

    def __init__(self, folder: Path, width: int, shard_bytes: int, done: IdSet, next_shard: int) -> None:
        self.folder, self.width, self.shard_bytes = folder, width, shard_bytes
        self.done = done  # ids already written, by this run or an earlier one
        self._shard, self._next = -1, next_shard
        self._fd = -1
        self._rows = 0
        self._index = os.open(folder / layout.INDEX, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)

    @classmethod
    def create(
        cls, folder: Path, width: int, meta: dict[str, Any], shard_bytes: int, done: IdSet | None = None
    ) -> RowWriter:
        folder.mkdir(parents=True)
        layout.write_meta(folder, {"width": width, **meta})
        return cls(folder, width, shard_bytes, done if done is not None else IdSet(), 0)

    @classmethod
    def resume(cls, folder: Path, identity: dict[str, Any], shard_bytes: int, done: IdSet | None = None) -> RowWriter:
        """Go on writing an interrupted folder whose meta has the same ``identity`` (else ValueError).
        Its ids are added to ``done``."""
        found = layout.read_meta(folder)
        for name, value in identity.items():
            if found.get(name) != value:
                raise ValueError(f"--resume: {folder} was made with {name} {found.get(name)!r}; this run has {value!r}")
        width = int(found["width"])
        done = done if done is not None else IdSet()
        return cls(folder, width, shard_bytes, done, repair(folder, width, done))

    def add(self, doc_id: str, rows: np.ndarray, chunks: np.ndarray | None = None) -> None:
        """One doc's token rows and, when it had chunks, its (n_chunks, width) chunk vectors,
        stored right after its rows and named by the same index line."""
        if chunks is not None:
            if len(chunks) and chunks.shape != (len(chunks), self.width):
                raise ValueError(f"doc {doc_id!r}: chunk vectors {chunks.shape}, expected (n, {self.width})")
            if len(rows) and len(chunks):
                rows = np.concatenate([rows, chunks])
            elif len(chunks):
                rows = chunks
        n = len(rows)
        if n and rows.shape != (n, self.width):
            raise ValueError(f"doc {doc_id!r}: rows {rows.shape}, expected (n, {self.width})")
        if not self.done.add(doc_id):
            raise ValueError(f"doc {doc_id!r} is written already")
        if self._fd < 0 or (self._rows and self._rows * self.width * layout.ITEM >= self.shard_bytes):
            self._open_shard()
        row = self._rows
        if n:
            # The array's own buffer, not a bytes copy of it: one less transient allocation per doc.
            os.pwrite(
                self._fd, np.ascontiguousarray(rows, dtype=layout.DTYPE), layout.HEADER + row * self.width * layout.ITEM
            )
            self._rows += n
            os.pwrite(self._fd, layout.npy_header(self._rows, self.width), 0)
        k = None if chunks is None else len(chunks)
        os.write(self._index, layout.index_line(doc_id, self._shard, row, n - (k or 0), k))

    def _open_shard(self) -> None:
        self._close_shard()
        self._shard, self._next = self._next, self._next + 1
        self._fd = os.open(self.folder / layout.shard_name(self._shard), os.O_RDWR | os.O_CREAT | os.O_EXCL, 0o644)
        self._rows = 0
        os.pwrite(self._fd, layout.npy_header(0, self.width), 0)

    def _close_shard(self) -> None:
        if self._fd >= 0:
            os.fsync(self._fd)
            os.close(self._fd)
            self._fd = -1

    def close(self) -> None:
        """Close the files, their contents on disk (fsync)."""
        self._close_shard()
        if self._index >= 0:
            os.fsync(self._index)
            os.close(self._index)
            self._index = -1


def repair(folder: Path, width: int, done: IdSet) -> int:
    """Cut an interrupted folder back to what its index names: a torn last index line goes, each
    shard is cut to its last named row and its header says so. Adds the ids to ``done``; returns
    the next shard's number."""
    used: dict[int, int] = {}
    end = 0
    for e, end in layout.iter_index(folder):  # noqa: B007 - the last entry's end is read after the loop
        done.add(e["id"])
        used[e["shard"]] = max(used.get(e["shard"], 0), e["row"] + layout.rows_used(e))
    index = folder / layout.INDEX
    if index.exists() and index.stat().st_size > end:
        os.truncate(index, end)
    last = -1
    for path in folder.iterdir():
        if (number := layout.shard_number(path)) is None:
            continue
        last = max(last, number)
        rows = used.get(number, 0)
        os.truncate(path, layout.HEADER + rows * width * layout.ITEM)
        with path.open("r+b") as f:
            f.write(layout.npy_header(rows, width))
    return last + 1
