"""A batch as runners take it: the spans' pieces laid end to end, ragged, with no padding.

A runner that can run it as it is (the torch runner on CPU: one row, attention kept inside each
span) spends no work on padding at all. A runner that needs a rectangle pads it here and hands the
rows back in the same flat layout, so the worker never knows which kind it has.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch


@dataclass(frozen=True)
class Batch:
    ids: np.ndarray  # every span's piece ids, back to back. Shape: (n_pieces,)
    starts: np.ndarray  # where span s begins is starts[s], where it ends starts[s + 1]. Shape: (n_spans + 1,)
    # Per span, the runner's own input where ids do not say it all (DocPlan.inputs), else None.
    inputs: tuple[Any, ...] = ()

    @classmethod
    def of(cls, spans: list[np.ndarray], inputs: Sequence[Any] = ()) -> Batch:
        starts = np.zeros(len(spans) + 1, dtype=np.int64)
        np.cumsum([len(s) for s in spans], out=starts[1:])
        ids = np.concatenate(spans).astype(np.int64, copy=False) if spans else np.zeros(0, np.int64)
        return cls(ids, starts, tuple(inputs))

    @property
    def lengths(self) -> np.ndarray:
        return np.diff(self.starts)

    @property
    def n_spans(self) -> int:
        return len(self.starts) - 1

    def span_index(self) -> np.ndarray:
        """Each piece's span. Shape: (n_pieces,)"""
        return np.repeat(np.arange(self.n_spans), self.lengths)

    def positions(self) -> np.ndarray:
        """Each piece's position within its own span. Shape: (n_pieces,)"""
        positions: np.ndarray = np.arange(len(self.ids)) - self.starts[self.span_index()]
        return positions

    def padded(self, pad_id: int) -> tuple[np.ndarray, np.ndarray]:
        """Right-padded ids and attention mask. Shape: (n_spans, longest) each."""
        lengths = self.lengths
        mask = np.arange(int(lengths.max(initial=0)))[None, :] < lengths[:, None]
        ids = np.full(mask.shape, pad_id, dtype=np.int64)
        ids[mask] = self.ids  # row-major order of the mask is the spans' order, piece by piece
        return ids, mask.astype(np.int64)

    def unpad(self, rows: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        """Padded rows back to the flat layout. Shape: (n_spans, longest, width) -> (n_pieces, width)"""
        return rows[mask.to(device=rows.device, dtype=torch.bool)]
