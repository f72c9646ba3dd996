"""Reduce each token's aligned piece rows to one row, on the device, before any copy to host.

Alignment is ragged (thinc's Ragged): ``lengths[i]`` pieces for token i, their row indices
back to back in ``indices``. One gather, one segment reduce; a token with no piece gets a zero
row under every pooling (spacy-transformers crashes under max/first/last there).
"""

from __future__ import annotations

import numpy as np
import torch

from tokvec_server.types import Pooling


def pool(rows: torch.Tensor, lengths: np.ndarray, indices: np.ndarray, pooling: Pooling) -> torch.Tensor:
    """Shape: rows (n_pieces, width) -> (n_tokens, width), float32 on rows' device."""
    n_tokens, device = len(lengths), rows.device
    rows = rows.float()  # reduce in float32 even when the model runs in half precision
    out = rows.new_zeros((n_tokens, rows.shape[1]))
    if len(indices) == 0:
        return out
    if pooling in (Pooling.FIRST, Pooling.LAST):
        has = np.flatnonzero(lengths)
        ends = np.cumsum(lengths)
        pick = ends[has] - lengths[has] if pooling is Pooling.FIRST else ends[has] - 1
        out[torch.from_numpy(has).to(device)] = rows[torch.from_numpy(indices[pick]).to(device)]
        return out
    gathered = rows.index_select(0, torch.from_numpy(indices).to(device))
    segments = torch.from_numpy(np.repeat(np.arange(n_tokens), lengths)).to(device)
    if pooling is Pooling.MAX:
        # include_self=False: each token's max runs over its pieces only; tokens without keep the zeros.
        return out.scatter_reduce_(0, segments.unsqueeze(1).expand_as(gathered), gathered, "amax", include_self=False)
    out.index_add_(0, segments, gathered)
    if pooling is Pooling.MEAN:
        out /= torch.from_numpy(np.maximum(lengths, 1)).to(device, out.dtype).unsqueeze(1)
    return out
