"""Ragged forward for HuggingFace encoders: every span of a batch in one row, no padding, with
attention kept inside each span.

A padded batch spends the model's linear layers (most of its work) on padding too: on EWT docs a
length-sorted batch is 87% real pieces, a batch of eight arriving docs only 62%. Laid end to end,
each span restarting its positions and attending only to itself, the row computes the same
numbers as the spans alone (the projections and feed-forward act on each piece independently),
and the batch costs exactly its pieces, whoever is in it.

Attention goes through transformers' AttentionInterface, with the span bounds as
``cu_seq_lens_q`` and the longest span as ``max_length_q`` (the names transformers gives packed
sequences). Which attention kernel runs depends on the device:

- CPU: one unmasked scaled_dot_product_attention call per span. A Python loop over spans per
  layer costs nothing next to a CPU forward, but it would starve a GPU.
- CUDA: one fused variable-length kernel per layer for the whole batch: ``varlen_attn`` (flash
  attention over cumulative lengths; half precision only), else scaled_dot_product_attention on
  nested jagged tensors (flash or memory-efficient kernels, float32 too).

At start a probe runs three spans both ways; the first kernel whose rows match the padded forward's
is kept. A model that does not go through the interface, or where no kernel matches, runs padded.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from tokvec_server.runners.batch import Batch

log = logging.getLogger("tokvec.runners")

NAME = "tokvec_ragged"
PROBE = ("A short span.", "A longer span, of several words, with its own punctuation; and a clause.", "Three.")
Attention = Callable[..., tuple[torch.Tensor, None]]


def loop_attention(
    module: Any,
    query: torch.Tensor,
    key: torch.Tensor,
    value: torch.Tensor,
    attention_mask: Any,
    scaling: float | None = None,
    dropout: float = 0.0,
    **kwargs: Any,
) -> tuple[torch.Tensor, None]:
    """Attention of each span to itself, one call per span. Shape: (1, heads, n_pieces, head_dim) -> (1, n_pieces, heads, head_dim)"""
    bounds = kwargs["cu_seq_lens_q"].tolist()
    if len(bounds) == 2:
        # One span (a lone doc on an idle server): no slices to cut and join, 0.35 ms less per
        # forward of a 47-piece span on two cores (measured), level with the padded forward.
        return F.scaled_dot_product_attention(query, key, value, scale=scaling).transpose(1, 2).contiguous(), None
    out = torch.cat(
        [
            F.scaled_dot_product_attention(query[:, :, a:b], key[:, :, a:b], value[:, :, a:b], scale=scaling)
            for a, b in zip(bounds[:-1], bounds[1:])
        ],
        dim=2,
    )
    return out.transpose(1, 2).contiguous(), None


def varlen_attention(
    module: Any,
    query: torch.Tensor,
    key: torch.Tensor,
    value: torch.Tensor,
    attention_mask: Any,
    scaling: float | None = None,
    dropout: float = 0.0,
    **kwargs: Any,
) -> tuple[torch.Tensor, None]:
    """Flash attention over cumulative span lengths, one kernel for the batch. Shape as loop_attention."""
    from torch.nn.attention.varlen import varlen_attn

    bounds, longest = kwargs["cu_seq_lens_q"], int(kwargs["max_length_q"])
    q, k, v = (x[0].transpose(0, 1) for x in (query, key, value))  # (n_pieces, heads, head_dim)
    out = varlen_attn(q, k, v, bounds, bounds, longest, longest, scale=scaling)
    return out[None], None


def jagged_attention(
    module: Any,
    query: torch.Tensor,
    key: torch.Tensor,
    value: torch.Tensor,
    attention_mask: Any,
    scaling: float | None = None,
    dropout: float = 0.0,
    **kwargs: Any,
) -> tuple[torch.Tensor, None]:
    """scaled_dot_product_attention on nested jagged tensors, one fused call. Shape as loop_attention."""
    offsets, longest = kwargs["cu_seq_lens_q"].long(), int(kwargs["max_length_q"])

    def jagged(x: torch.Tensor) -> torch.Tensor:
        # (1, heads, n, d) -> (spans, heads, jagged length, d)
        return torch.nested.nested_tensor_from_jagged(x[0].transpose(0, 1), offsets, max_seqlen=longest).transpose(1, 2)

    out = F.scaled_dot_product_attention(jagged(query), jagged(key), jagged(value), scale=scaling)
    return out.transpose(1, 2).values()[None], None


# The kernels a device may use, in order of preference; the probe keeps the first that matches.
KERNELS: dict[str, list[tuple[str, Attention]]] = {
    "cpu": [("loop", loop_attention)],
    "cuda": [("varlen", varlen_attention), ("jagged", jagged_attention)],
}


def first_position(model: Any) -> int:
    """Where a span's position ids start: 0 (BERT), or past the padding index (RoBERTa, XLM-R)."""
    embeddings: Any = getattr(model, "embeddings", None)
    if hasattr(embeddings, "create_position_ids_from_input_ids"):
        return int(embeddings.padding_idx) + 1
    return 0


def forward(model: Any, batch: Batch, device: torch.device, hidden_states: bool) -> Any:
    """The model's output for the batch's spans laid end to end in one row (batch dimension 1)."""
    n = len(batch.ids)
    host = torch.from_numpy(np.stack([batch.ids, batch.positions() + first_position(model)]))
    bounds = torch.from_numpy(batch.starts.astype(np.int32))  # flash kernels take int32 bounds
    if device.type == "cuda":
        # Pinned host memory: the uploads queue behind the previous batch's work, not wait for it.
        host, bounds = host.pin_memory(), bounds.pin_memory()
    ids_positions = host.to(device, non_blocking=True)
    return model(
        input_ids=ids_positions[0:1],
        position_ids=ids_positions[1:2],
        token_type_ids=torch.zeros((1, n), dtype=torch.long, device=device),
        output_hidden_states=hidden_states,
        cu_seq_lens_q=bounds.to(device, non_blocking=True),
        max_length_q=int(batch.lengths.max(initial=0)),
    )


def _agree(got: torch.Tensor, want: torch.Tensor) -> tuple[bool, str]:
    """Ragged rows against padded rows: 1e-4 in float32; in half precision, where the two kernels
    round differently, a cosine of at least 0.9995 per row."""
    if got.shape != want.shape:
        return False, f"shapes {tuple(got.shape)} vs {tuple(want.shape)}"
    got, want = got.float(), want.float()
    diff = float((got - want).abs().max())
    cosine = float(F.cosine_similarity(got, want, dim=1).min())
    return (diff <= 1e-4 or cosine >= 0.9995), f"max |diff| {diff:.2g}, min cosine {cosine:.6f}"


def enable(model: Any, tokenizer: Any, device: torch.device, allowed: bool = True) -> str:
    """Switch ``model`` to ragged batches when a kernel for ``device`` matches its padded rows.
    The kernel's name, or "" when the model runs padded."""
    kernels = KERNELS.get(device.type, [])
    if not allowed or not kernels or not hasattr(model, "set_attn_implementation"):
        return ""
    try:
        from transformers import AttentionInterface
    except ImportError:  # transformers before the attention interface
        return ""
    can_set = getattr(model, "_can_set_attn_implementation", lambda: True)
    if not can_set():
        return ""
    spans = [np.asarray(ids, dtype=np.int64) for ids in tokenizer(list(PROBE))["input_ids"]]
    batch = Batch.of(spans)
    ids, mask = (torch.from_numpy(a).to(device) for a in batch.padded(int(tokenizer.pad_token_id or 0)))
    before = model.config._attn_implementation
    with torch.inference_mode():
        want = batch.unpad(model(input_ids=ids, attention_mask=mask).last_hidden_state, mask)
        for name, kernel in kernels:
            AttentionInterface.register(NAME, kernel)
            model.set_attn_implementation(NAME)
            try:
                ok, how = _agree(forward(model, batch, device, False).last_hidden_state[0], want)
            except Exception as exc:  # a kernel this torch, device or dtype lacks: try the next
                ok, how = False, f"{type(exc).__name__}: {' '.join(str(exc).split())[:160]}"
            if ok:
                log.info("ragged batches on %s: %s attention (%s)", device, name, how)
                return name
            log.info("ragged %s attention off on %s: %s", name, device, how)
            model.set_attn_implementation(before)
    log.info("ragged batches off on %s: no attention kernel matches the padded rows", device)
    return ""
