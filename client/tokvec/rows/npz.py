"""Rows to an .npz, one array at a time (np.savez would want them all in memory at once)."""

from __future__ import annotations

import os
import zipfile
from collections.abc import Callable, Mapping
from pathlib import Path

import numpy as np
from numpy.lib import format as npy


def write_npz(
    rows: Mapping[str, np.ndarray], path: Path, chunks: Callable[[str], np.ndarray | None] = lambda _id: None
) -> None:
    """What ``np.savez(path, **rows)`` writes, read back by ``np.load``, plus ``ID/chunks`` for
    each doc ``chunks(ID)`` has chunk vectors for; written beside ``path`` and renamed onto it,
    so ``path`` is never a half-written file."""
    partial = path.with_name(path.name + ".tmp")
    with zipfile.ZipFile(partial, "w", zipfile.ZIP_STORED, allowZip64=True) as zf:
        for doc_id, array in rows.items():
            _add(zf, doc_id, array)
            if (vectors := chunks(doc_id)) is not None:
                _add(zf, doc_id + "/chunks", vectors)
    os.replace(partial, path)


def _add(zf: zipfile.ZipFile, name: str, array: np.ndarray) -> None:
    with zf.open(name + ".npy", "w", force_zip64=True) as f:
        npy.write_array(f, np.asarray(array), allow_pickle=False)
