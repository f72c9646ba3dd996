"""Ragged forward for HuggingFace encoders: every span of a batch in one row, no padding, with
attention kept inside each span.

A padded batch spends the model's linear layers (most of its work) on padding too: on EWT docs a
length-sorted batch is 87% real pieces, a batch of eight arriving docs only 62%. Laid end to end,
each span restarting its positions and attending only to itself, the row computes the same
numbers as the spans alone (the projections and feed-forward act on each piece independently),
and the batch costs exactly its pieces, whoever is in it.

Attention goes through transformers' AttentionInterface, with the span bounds as
``cu_seq_lens_q``, the name transformers gives the cumulative lengths of packed sequences. Each
span's attention is one unmasked scaled_dot_product_attention call. That is a Python loop over
spans per layer, which costs nothing next to a CPU forward but would starve a GPU; so ragged
batches are for CPU, and a model that does not go through the interface, or whose ragged rows do
not match its padded ones on a probe at start, is run padded.
"""

from __future__ import annotations

import logging
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

log = logging.getLogger("tokvec.runners")

NAME = "tokvec_ragged"
PROBE = ("A short span.", "A longer span, of several words, with its own punctuation; and a clause.", "Three.")


def span_attention(module: Any, query: torch.Tensor, key: torch.Tensor, value: torch.Tensor, attention_mask: Any, scaling: float | None = None, dropout: float = 0.0, **kwargs: Any) -> tuple[torch.Tensor, None]:
    """Attention of each span to itself. Shape: (1, heads, n_pieces, head_dim) -> (1, n_pieces, heads, head_dim)"""
    bounds = kwargs["cu_seq_lens_q"]
    if len(bounds) == 2:
        # One span (a lone doc on an idle server): no slices to cut and join, 0.35 ms less per
        # forward of a 47-piece span on two cores (measured), level with the padded forward.
        return F.scaled_dot_product_attention(query, key, value, scale=scaling).transpose(1, 2).contiguous(), None
    out = torch.cat([F.scaled_dot_product_attention(query[:, :, a:b], key[:, :, a:b], value[:, :, a:b], scale=scaling)
                     for a, b in zip(bounds[:-1], bounds[1:])], dim=2)
    return out.transpose(1, 2).contiguous(), None


def first_position(model: Any) -> int:
    """Where a span's position ids start: 0 (BERT), or past the padding index (RoBERTa, XLM-R)."""
    embeddings: Any = getattr(model, "embeddings", None)
    if hasattr(embeddings, "create_position_ids_from_input_ids"):
        return int(embeddings.padding_idx) + 1
    return 0


def forward(model: Any, ids: np.ndarray, positions: np.ndarray, starts: np.ndarray, device: torch.device, hidden_states: bool) -> Any:
    """The model's output for spans laid end to end in one row (batch dimension 1)."""
    return model(
        input_ids=torch.from_numpy(ids)[None].to(device),
        position_ids=torch.from_numpy(positions + first_position(model))[None].to(device),
        token_type_ids=torch.zeros((1, len(ids)), dtype=torch.long, device=device),
        output_hidden_states=hidden_states,
        cu_seq_lens_q=starts.tolist(),
    )


def enable(model: Any, tokenizer: Any, device: torch.device) -> bool:
    """Switch ``model`` to ragged batches when it supports them and they match padded ones."""
    if device.type != "cpu" or not hasattr(model, "set_attn_implementation"):
        return False
    try:
        from transformers import AttentionInterface
    except ImportError:  # transformers before the attention interface
        return False
    can_set = getattr(model, "_can_set_attn_implementation", lambda: True)
    if not can_set():
        return False
    AttentionInterface.register(NAME, span_attention)
    spans = [np.asarray(ids, dtype=np.int64) for ids in tokenizer(list(PROBE))["input_ids"]]
    lengths = [len(s) for s in spans]
    mask = torch.tensor([[1] * n + [0] * (max(lengths) - n) for n in lengths])
    padded = torch.tensor([list(s) + [int(tokenizer.pad_token_id or 0)] * (max(lengths) - len(s)) for s in spans])
    before = model.config._attn_implementation
    with torch.inference_mode():
        want = model(input_ids=padded.to(device), attention_mask=mask.to(device)).last_hidden_state[mask.bool()]
        model.set_attn_implementation(NAME)
        try:
            starts = np.concatenate([[0], np.cumsum(lengths)])
            positions = np.concatenate([np.arange(n) for n in lengths])
            got = forward(model, np.concatenate(spans), positions, starts, device, False).last_hidden_state[0]
            diff = float((got - want).abs().max())
        except Exception as exc:  # any model that cannot run this way is simply run padded
            log.info("ragged batches off: %s", exc)
            diff = float("inf")
    if diff <= 1e-4:
        return True
    model.set_attn_implementation(before)
    log.info("ragged batches off: ragged rows differ from padded ones by %.2g", diff)
    return False
