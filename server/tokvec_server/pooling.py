"""Reduce each token's aligned piece rows to one row, on the device, before any copy to host.

Alignment is ragged (thinc's Ragged): ``lengths[i]`` pieces for token i, their row indices
back to back in ``indices``. mean, sum and max are one fused gather-and-reduce
(``embedding_bag``, which never builds the gathered rows); first and last are one gather. A
token with no piece gets a zero row under every pooling (spacy-transformers crashes under
max/first/last there).
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F

from tokvec_server.types import Pooling

_BAG_MODE = {Pooling.MEAN: "mean", Pooling.SUM: "sum", Pooling.MAX: "max"}


def pool(rows: torch.Tensor, lengths: np.ndarray, indices: np.ndarray, pooling: Pooling) -> torch.Tensor:
    """Shape: rows (n_pieces, width) -> (n_tokens, width), float32 on rows' device."""
    n_tokens, device = len(lengths), rows.device
    rows = rows.float()  # reduce in float32 even when the model runs in half precision
    if len(indices) == 0:
        return rows.new_zeros((n_tokens, rows.shape[1]))
    if pooling in (Pooling.FIRST, Pooling.LAST):
        out = rows.new_zeros((n_tokens, rows.shape[1]))
        has = np.flatnonzero(lengths)
        ends = np.cumsum(lengths)
        pick = ends[has] - lengths[has] if pooling is Pooling.FIRST else ends[has] - 1
        out[torch.from_numpy(has).to(device)] = rows[torch.from_numpy(indices[pick]).to(device)]
        return out
    offsets = np.zeros(n_tokens, dtype=np.int64)
    np.cumsum(lengths[:-1], out=offsets[1:])
    # Empty bags (tokens without a piece) come out as zero rows, whatever the mode.
    return F.embedding_bag(
        torch.from_numpy(indices).to(device), rows, torch.from_numpy(offsets).to(device), mode=_BAG_MODE[pooling]
    )
