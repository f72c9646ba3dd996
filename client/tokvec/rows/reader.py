"""``open_rows(PATH)``: a read-only mapping from doc id to its (n_tokens, width) float32 rows, for
a rows folder (memory-mapped, shard by shard) or an .npz (each array read when asked for); a doc's
chunk vectors, when its input had chunks, through ``chunks(id)``."""

from __future__ import annotations

import array
import zipfile
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

import numpy as np

from tokvec.rows import layout
from tokvec.rows.ids import KEY_DTYPE, contains, key

CHUNKS = "/chunks"  # an .npz names a doc's chunk vectors ID/chunks


class Rows(Mapping[str, np.ndarray]):
    """Base of both readers: a context manager and a read-only Mapping."""

    width: int
    meta: dict[str, Any]

    def chunks(self, doc_id: str) -> np.ndarray | None:
        """The doc's (n_chunks, width) chunk vectors; None when its input had no chunks."""
        raise NotImplementedError

    def close(self) -> None:
        """Drop open files and maps (arrays handed out stay valid while referenced)."""

    def __enter__(self) -> Rows:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


class FolderRows(Rows):
    """A rows folder: the index is read once into arrays (about 40 bytes a doc), shards are
    memory-mapped on first use, and each lookup returns a read-only view into its shard."""

    def __init__(self, folder: Path) -> None:
        self.folder = folder
        self.meta = layout.read_meta(folder)
        self.width = int(self.meta["width"])
        keys, where = bytearray(), array.array("q")
        for e, _ in layout.iter_index(folder):  # a folder still being written: its complete lines
            keys += key(e["id"])
            where.extend((e["shard"], e["row"], e["n"], e.get("chunks", -1)))
        unsorted = np.frombuffer(bytes(keys), KEY_DTYPE)
        self._order = np.argsort(unsorted, kind="stable")
        self._keys = unsorted[self._order]
        self._where = np.frombuffer(where, np.int64).reshape(-1, 4)
        self._shards: dict[int, np.ndarray] = {}

    def __len__(self) -> int:
        return len(self._where)

    def __iter__(self) -> Iterator[str]:
        # The ids are read again from the index, not kept as a list of Python strings.
        for n, (e, _) in enumerate(layout.iter_index(self.folder)):
            if n == len(self):
                return
            yield e["id"]

    def __contains__(self, doc_id: object) -> bool:
        return isinstance(doc_id, str) and contains(self._keys, key(doc_id)) >= 0

    def __getitem__(self, doc_id: str) -> np.ndarray:
        shard, row, n, _ = self._entry(doc_id)
        return self._rows(shard, row, n)

    def chunks(self, doc_id: str) -> np.ndarray | None:
        shard, row, n, k = self._entry(doc_id)
        return None if k < 0 else self._rows(shard, row + n, k)

    def _entry(self, doc_id: str) -> tuple[int, ...]:
        i = contains(self._keys, key(doc_id)) if isinstance(doc_id, str) else -1
        if i < 0:
            raise KeyError(doc_id)
        return tuple(int(v) for v in self._where[self._order[i]])

    def _rows(self, shard: int, row: int, n: int) -> np.ndarray:
        if n == 0:
            empty = np.zeros((0, self.width), np.float32)
            empty.flags.writeable = False
            return empty
        return self._shard(shard)[row : row + n]

    def _shard(self, number: int) -> np.ndarray:
        if number not in self._shards:
            self._shards[number] = np.load(self.folder / layout.shard_name(number), mmap_mode="r")
        return self._shards[number]

    def close(self) -> None:
        self._shards.clear()


class NpzRows(Rows):
    """An .npz as `tokvec embed` writes it: one float32 array per id, read when asked for, and a
    doc's chunk vectors as the array ``ID/chunks`` (not an id of its own when ``ID`` is one)."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._npz = np.load(path)
        names = set(self._npz.files)
        self._ids = [f for f in self._npz.files if not (f.endswith(CHUNKS) and f[: -len(CHUNKS)] in names)]
        self._id_set = set(self._ids)
        self.meta = {}
        self.width = 0

    def __len__(self) -> int:
        return len(self._ids)

    def __iter__(self) -> Iterator[str]:
        return iter(self._ids)

    def __contains__(self, doc_id: object) -> bool:
        return doc_id in self._id_set

    def __getitem__(self, doc_id: str) -> np.ndarray:
        if doc_id not in self._id_set:
            raise KeyError(doc_id)
        return self._read(doc_id)

    def chunks(self, doc_id: str) -> np.ndarray | None:
        if doc_id not in self._id_set:
            raise KeyError(doc_id)
        return self._read(doc_id + CHUNKS) if doc_id + CHUNKS in self._npz.files else None

    def _read(self, name: str) -> np.ndarray:
        array: np.ndarray = self._npz[name]
        array.flags.writeable = False
        return array

    def close(self) -> None:
        self._npz.close()


def open_rows(path: str | Path) -> Rows:
    """Every doc's rows in what `tokvec embed --output PATH` wrote: a rows folder (also one still
    being written, or an interrupted ``PATH.partial``) or an .npz. Read-only; close it when done.

    >>> with open_rows("rows") as rows:
    ...     rows["doc-1"].shape   # (n_tokens, width)
    """
    p = Path(path)
    if p.is_dir():
        return FolderRows(p)
    if zipfile.is_zipfile(p):
        return NpzRows(p)
    if not p.exists():
        raise FileNotFoundError(f"{p}: no such file or folder")
    raise ValueError(f"{p}: neither a tokvec rows folder nor an .npz")
