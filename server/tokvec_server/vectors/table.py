"""Load a static vectors table (spaCy's Vectors, default or floret mode) and look words up in it,
as spaCy's ``Token.vector`` does: a word's key is its ORTH hash; a default-mode table has a row
for some keys (others are out of vocabulary: zeros); a floret table builds every word's vector
from its hashed character n-grams."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from tokvec_server.runners.base import StartupError, one_line


@dataclass
class VectorTable:
    name: str
    vectors: Any  # spacy.vectors.Vectors; its ``strings`` resolve keys to words
    mode: str  # "default" | "floret"
    fingerprint: str
    sorted_keys: np.ndarray  # default mode: every key, ascending. Shape: (n_keys,) uint64
    key_rows: np.ndarray  # the row of each of sorted_keys. Shape: (n_keys,) int64

    @property
    def width(self) -> int:
        return int(self.vectors.data.shape[1])

    @property
    def n_rows(self) -> int:
        return int(self.vectors.data.shape[0])

    @property
    def n_keys(self) -> int:
        return int(self.vectors.n_keys) if self.mode == "default" else 0

    @classmethod
    def load(cls, source: str) -> VectorTable:
        """A folder made by ``tokvec init-vectors`` or ``spacy init vectors`` (a pipeline folder),
        any pipeline folder or its ``vocab/``, or an installed pipeline's name (en_core_web_md)."""
        from spacy.attrs import ORTH
        from spacy.vocab import Vocab

        folder = _vocab_folder(source)
        try:
            vectors = Vocab().from_disk(folder).vectors
        except (OSError, ValueError, KeyError) as exc:
            raise StartupError(f"--vectors {source}: cannot load the vectors table ({one_line(exc)})") from None
        if vectors.data.size == 0:
            raise StartupError(f"--vectors {source}: the pipeline has no vectors table")
        if vectors.attr != ORTH:
            raise StartupError(
                f"--vectors {source}: the table is keyed by attribute {vectors.attr}; tokvec serves ORTH-keyed tables"
            )
        mode = str(vectors.mode)
        keys = (
            np.fromiter(vectors.key2row.keys(), dtype=np.uint64, count=len(vectors.key2row))
            if mode == "default"
            else np.zeros(0, np.uint64)
        )
        rows = (
            np.fromiter(vectors.key2row.values(), dtype=np.int64, count=len(keys))
            if mode == "default"
            else np.zeros(0, np.int64)
        )
        order = np.argsort(keys)
        name = vectors.name or _folder_name(source)
        return cls(name, vectors, mode, _fingerprint(vectors, keys[order], rows[order]), keys[order], rows[order])

    def keys(self, words: list[str]) -> np.ndarray:
        """The ORTH key of each word, as spaCy hashes it. Shape: (n,) uint64"""
        from spacy.strings import get_string_id

        return np.fromiter((get_string_id(w) for w in words), dtype=np.uint64, count=len(words))

    def rows(self, keys: np.ndarray) -> np.ndarray:
        """Default mode: the row of each key, -1 where it has none. Shape: (n,) int64"""
        at = np.searchsorted(self.sorted_keys, keys).clip(max=max(len(self.sorted_keys) - 1, 0))
        found = (self.sorted_keys[at] == keys) if len(self.sorted_keys) else np.zeros(len(keys), bool)
        return np.where(found, self.key_rows[at] if len(self.key_rows) else -1, -1)

    def lookup(self, words: list[str]) -> tuple[np.ndarray, np.ndarray]:
        """Each word's vector and the positions of the words with none (zero vectors).
        Shape: (n, width) float32, (n_oov,) int64"""
        if not words:
            return np.zeros((0, self.width), np.float32), np.zeros(0, np.int64)
        if self.mode == "floret":
            # spaCy's own n-gram hashing and mean: every string has a vector.
            return np.asarray(self.vectors.get_batch(words), dtype=np.float32), np.zeros(0, np.int64)
        rows = self.rows(self.keys(words))
        out = self.vectors.data[rows.clip(min=0)].astype(np.float32, copy=True)
        missing = np.flatnonzero(rows < 0)
        out[missing] = 0.0
        return out, missing

    def word(self, key: int) -> str:
        strings = self.vectors.strings
        return str(strings[key]) if key in strings else ""


def _vocab_folder(source: str) -> Path:
    import spacy

    path = Path(source)
    if not path.exists():
        if not spacy.util.is_package(source):
            raise StartupError(f"--vectors {source}: no such folder or installed spaCy pipeline")
        found = sorted(spacy.util.get_package_path(source).glob("*/vocab"))
        if not found:
            raise StartupError(f"--vectors {source}: the installed package has no pipeline folder with a vocab")
        path = found[0]
    if (path / "vocab").is_dir():
        path = path / "vocab"
    if not (path / "vectors.cfg").is_file():
        raise StartupError(
            f"--vectors {source}: not a spaCy pipeline or vocab folder with vectors (no vectors.cfg); convert a table with tokvec init-vectors"
        )
    return path


def _folder_name(source: str) -> str:
    path = Path(source)
    return path.parent.name if path.name == "vocab" else path.name


def _fingerprint(vectors: Any, keys: np.ndarray, rows: np.ndarray) -> str:
    """sha256 over the rows, the key -> row map and the hashing settings, and the width."""
    digest = hashlib.sha256()
    digest.update(np.ascontiguousarray(vectors.data, dtype=np.float32).tobytes())
    digest.update(keys.tobytes())
    digest.update(rows.tobytes())
    settings = (
        str(vectors.mode),
        vectors.minn,
        vectors.maxn,
        vectors.hash_count,
        vectors.hash_seed,
        vectors.bow,
        vectors.eow,
    )
    digest.update(repr(settings).encode())
    return f"{digest.hexdigest()[:16]}-{vectors.data.shape[1]}"
