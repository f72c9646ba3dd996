"""Nearest rows by cosine, as spaCy's ``Vectors.most_similar`` ranks them, with torch on the
server's device. The table's filled rows are normalised once, at load, and stay on the device:
a query then costs one matmul and one top-k, and only (queries, n) numbers come back to host."""

from __future__ import annotations

from typing import Any

import numpy as np
import torch


class NearestRows:
    # Queries per matmul, as spaCy's default batch_size: bounds the (batch, n_rows) score matrix.
    BATCH = 1024

    def __init__(self, vectors: Any, device: torch.device) -> None:
        self.device = device
        key2row = vectors.key2row
        # Rows that some key points to, ascending (spaCy's "filled"); a row several keys share
        # (after pruning) is reported under the key that comes last in key2row, as there.
        self.filled = np.array(sorted(set(key2row.values())), dtype=np.int64)
        self.row_key = {row: key for key, row in key2row.items()}
        data = torch.from_numpy(np.ascontiguousarray(vectors.data[self.filled], dtype=np.float32)).to(device)
        norms = torch.linalg.vector_norm(data, dim=1, keepdim=True)
        norms[norms == 0] = 1
        self.unit = data / norms  # Shape: (n_filled, width)

    @property
    def size(self) -> int:
        return len(self.filled)

    def search(self, queries: np.ndarray, n: int) -> tuple[np.ndarray, np.ndarray]:
        """Rows and scores of the n best rows per query, best first. A zero query scores 0
        everywhere. Shape: queries (q, width) -> rows (q, n) int64, scores (q, n) float32"""
        rows = np.zeros((len(queries), n), np.int64)
        scores = np.zeros((len(queries), n), np.float32)
        # inference_mode is thread-local: entered here, in the thread that runs the search.
        with torch.inference_mode():
            for start in range(0, len(queries), self.BATCH):
                batch = torch.from_numpy(
                    np.ascontiguousarray(queries[start : start + self.BATCH], dtype=np.float32)
                ).to(self.device)
                norms = torch.linalg.vector_norm(batch, dim=1, keepdim=True)
                norms[norms == 0] = 1
                best = torch.topk((batch / norms) @ self.unit.T, n, dim=1, sorted=True)
                # spaCy rounds to 4 decimals and clips to [-1, 1] (numerical error past them).
                values = torch.round(best.values, decimals=4).clamp(-1, 1)
                rows[start : start + len(batch)] = self.filled[best.indices.cpu().numpy()]
                scores[start : start + len(batch)] = values.cpu().numpy()
        return rows, scores
