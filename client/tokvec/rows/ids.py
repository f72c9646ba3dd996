"""A set of doc ids that costs 16 bytes a doc, not a Python string and a hash-table slot each.

`tokvec embed` must know every id it has seen (duplicates, and the docs a resumed run skips),
however long the corpus: kept as Python strings, ten million ids take over a gigabyte.
"""

from __future__ import annotations

import hashlib

import numpy as np

# A 120-bit hash then a 0x01 byte: numpy's "S16" strips trailing NUL bytes from the items it
# hands back, and a key that ends in 0x01 has none to strip. 120 bits: a clash among a billion
# ids has odds of about 1e-18.
KEY_DTYPE = "S16"


def key(doc_id: str) -> bytes:
    return hashlib.blake2b(doc_id.encode("utf-8", "surrogatepass"), digest_size=15).digest() + b"\x01"


def contains(keys: np.ndarray, k: bytes) -> int:
    """Where ``k`` sits in the sorted ``keys``, or -1."""
    i = int(np.searchsorted(keys, k))
    return i if i < len(keys) and keys[i] == k else -1


class IdSet:
    """Ids added so far: a sorted array of keys, and a small set of recent keys merged into it."""

    MERGE_AT = 1 << 16

    def __init__(self) -> None:
        self._sorted = np.empty(0, KEY_DTYPE)
        self._recent: set[bytes] = set()

    def __len__(self) -> int:
        return len(self._sorted) + len(self._recent)

    def __contains__(self, doc_id: str) -> bool:
        k = key(doc_id)
        return k in self._recent or contains(self._sorted, k) >= 0

    def add(self, doc_id: str) -> bool:
        """Add ``doc_id``; False if it was already there."""
        k = key(doc_id)
        if k in self._recent or contains(self._sorted, k) >= 0:
            return False
        self._recent.add(k)
        if len(self._recent) >= self.MERGE_AT:
            # Two sorted runs: numpy's stable sort (timsort here) merges them in linear time.
            merged = np.concatenate([self._sorted, np.array(sorted(self._recent), KEY_DTYPE)])
            self._sorted = np.sort(merged, kind="stable")
            self._recent.clear()
        return True
