"""Docs whose last span came back: their piece rows become host arrays, in one pass per batch.

A doc's rows are pooled on the device, cast to the wire dtype there, and copied to host once.
Done for the docs of a batch together, straight from the batch's own rows, that is one finite
check, one pooling and one copy per batch (per pooling and dtype asked for), not per doc: small
torch ops cost about the same whatever their size, and on CPU each one also wakes the forward's
thread pool.
"""

from __future__ import annotations

import numpy as np
import torch

from tokvec_server.alignment.chunks import bags
from tokvec_server.batching.jobs import DocJob, DocOutput
from tokvec_server.errors import ModelFailure, TokvecError
from tokvec_server.pooling import pool
from tokvec_server.runners.base import TORCH_DTYPES
from tokvec_server.types import DType, Output, Pooling

NON_FINITE = "the model produced non-finite values for this doc"


def finish(jobs: list[DocJob], width: int, device: torch.device) -> None:
    """Deliver each doc that is still owed an answer (and has all its rows): its outputs, or a
    model failure of its own when any of its rows is not finite."""
    jobs = [job for job in jobs if job.claim()]
    if not jobs:
        return
    rows, where = _gather(jobs, width, device)
    # Every output comes from these rows, special pieces included: a NaN only in the [CLS] row
    # pools into no token row, yet would reach the caller through the doc vector or the pieces.
    # NaN and inf survive a sum: one pass over the rows, where isfinite makes several. One flag
    # crosses to the host in the common case; a flag per row only when some row is not finite.
    finite_rows = torch.isfinite(rows.sum(1))
    finite = np.ones(len(rows), dtype=bool) if bool(finite_rows.all()) else finite_rows.cpu().numpy()
    out: dict[int, DocOutput | TokvecError] = {}
    good = {}
    for i, job in enumerate(jobs):
        layers_ok = all(bool(torch.isfinite(part.sum(1)).all()) for parts in job.layer_parts for part in parts)
        if finite[where[i]].all() and layers_ok:
            good[i] = job
        else:
            out[i] = ModelFailure(NON_FINITE)
    tokens = _pool_tokens(good, rows, where)
    chunk_bags, chunk_vectors = _pool_chunks(good, rows, where)
    for i, job in good.items():
        output = _output(job, tokens[i], rows, where[i], width)
        if i in chunk_bags:
            output.chunk_vectors = chunk_vectors[i]
            output.chunk_no_piece = np.flatnonzero(chunk_bags[i][0] == 0)
        out[i] = output
    for i, job in enumerate(jobs):
        job.deliver(out[i])


def _gather(jobs: list[DocJob], width: int, device: torch.device) -> tuple[torch.Tensor, list[np.ndarray]]:
    """One tensor holding every doc's piece rows, and where each doc's pieces are in it.

    Mostly that is the batch's own rows, untouched: every span of a doc usually runs in one batch.
    Spans that ran in an earlier batch are copied in after them."""
    base = next((part[0] for job in jobs for part in job.parts if part is not None), None)
    if base is None:  # empty docs only
        return torch.zeros((0, width), device=device), [np.zeros(0, np.int64) for _ in jobs]
    extra: list[torch.Tensor] = []
    end = len(base)
    where = []
    for job in jobs:
        spans = []
        for part, ids in zip(job.parts, job.plan.span_ids):
            assert part is not None, "finish is called once every span is back"
            tensor, start = part
            if tensor is not base:
                extra.append(tensor[start : start + len(ids)])
                tensor, start, end = base, end, end + len(ids)
            spans.append(np.arange(start, start + len(ids)))
        where.append(np.concatenate(spans) if spans else np.zeros(0, np.int64))
    return (torch.cat([base, *extra]) if extra else base), where


def _pool_tokens(
    jobs: dict[int, DocJob], rows: torch.Tensor, where: list[np.ndarray]
) -> dict[int, dict[Pooling, np.ndarray]]:
    """Every doc's token rows under each pooling it asked for (options.pooling and
    options.more_poolings), with one pooling and one copy per (pooling, dtype) group.

    Shape: rows (any, width) -> (n_tokens, width) per doc and pooling."""
    groups: dict[tuple[Pooling, DType], list[int]] = {}
    for i, job in jobs.items():
        if Output.TOKENS not in job.options.outputs:
            continue  # pieces, a doc vector or chunk vectors only: no token rows to pool or copy
        for pooling in dict.fromkeys((job.options.pooling, *job.options.more_poolings)):
            groups.setdefault((pooling, job.options.dtype), []).append(i)
    out: dict[int, dict[Pooling, np.ndarray]] = {i: {} for i in jobs}
    for (pooling, dtype), members in groups.items():
        lengths = np.concatenate([jobs[i].plan.align_lengths for i in members])
        # Each doc's pieces, as rows of the gathered tensor.
        indices = np.concatenate([where[i][jobs[i].plan.align_indices] for i in members])
        pooled = to_host(pool(rows, lengths, indices, pooling), dtype)
        bounds = np.cumsum([jobs[i].plan.n_tokens for i in members])[:-1]
        for i, doc_rows in zip(members, np.split(pooled, bounds)):
            out[i][pooling] = doc_rows
    return out


def _pool_chunks(
    jobs: dict[int, DocJob], rows: torch.Tensor, where: list[np.ndarray]
) -> tuple[dict[int, tuple[np.ndarray, np.ndarray]], dict[int, list[np.ndarray]]]:
    """Every chunk vector the docs asked for, with one pooling and one copy per (pooling, dtype)
    group, as the token rows: per doc, its chunks' bags (pieces per chunk, piece indices) and
    its vectors, one array per chunk pooling.

    Shape: rows (any, width) -> (n_chunks, width) per doc and chunk pooling."""
    asked = {i: job for i, job in jobs.items() if Output.CHUNK_VECTORS in job.options.outputs}
    chunk_bags = {
        i: bags(job.plan.align_lengths, job.plan.align_indices, job.doc.chunks)
        for i, job in asked.items()
        if job.doc.chunks is not None
    }
    # A doc without chunks costs no pooling: its (0, width) arrays, one per chunk pooling.
    out: dict[int, list[np.ndarray]] = {
        i: [to_host(rows[:0], job.options.dtype)] * len(job.options.chunk_pooling_list)
        for i, job in asked.items()
        if i not in chunk_bags
    }
    no_bag = (np.zeros(0, np.int64), np.zeros(0, np.int64))
    # (doc, place in its chunk_poolings) per (pooling, dtype) group.
    groups: dict[tuple[Pooling, DType], list[tuple[int, int]]] = {}
    for i in chunk_bags:
        out[i] = [None] * len(jobs[i].options.chunk_pooling_list)  # type: ignore[list-item]
        for k, pooling in enumerate(jobs[i].options.chunk_pooling_list):
            groups.setdefault((pooling, jobs[i].options.dtype), []).append((i, k))
    for (pooling, dtype), members in groups.items():
        lengths = np.concatenate([chunk_bags[i][0] for i, _ in members])
        indices = np.concatenate([where[i][chunk_bags[i][1]] for i, _ in members])
        pooled = to_host(pool(rows, lengths, indices, pooling), dtype)
        bounds = np.cumsum([len(chunk_bags[i][0]) for i, _ in members])[:-1]
        for (i, k), vectors in zip(members, np.split(pooled, bounds)):
            out[i][k] = vectors
    return {i: chunk_bags.get(i, no_bag) for i in asked}, out


def _output(
    job: DocJob, tokens: dict[Pooling, np.ndarray], rows: torch.Tensor, where: np.ndarray, width: int
) -> DocOutput:
    """The doc's token rows (under each pooling asked), and what else it asked for: hidden
    layers, piece rows, a doc vector."""
    options, plan = job.options, job.plan
    layers = []
    for k in range(len(job.layers)):
        layer = torch.cat([parts[k] for parts in job.layer_parts]) if plan.span_ids else rows[:0]
        layers.append(to_host(pool(layer, plan.align_lengths, plan.align_indices, options.pooling), options.dtype))
    wanted = options.outputs
    pieces = (
        rows[torch.from_numpy(where).to(rows.device)]
        if Output.PIECES in wanted or Output.DOC_VECTOR in wanted
        else None
    )
    vector = None
    if pieces is not None and Output.DOC_VECTOR in wanted:
        vector = to_host(
            pieces.float().mean(0) if len(pieces) else pieces.new_zeros(width, dtype=torch.float32), options.dtype
        )
    return DocOutput(
        doc=job.doc,
        plan=plan,
        rows=tokens[options.pooling] if Output.TOKENS in wanted else None,
        layers=layers,
        pieces=to_host(pieces, options.dtype) if pieces is not None and Output.PIECES in wanted else None,
        doc_vector=vector,
        pooled=[tokens[p] for p in options.more_poolings] if Output.TOKENS in wanted else [],
    )


def to_host(rows: torch.Tensor, dtype: DType) -> np.ndarray:
    # Cast on the device so only the final bytes cross to host (half of them for fp16/bf16).
    rows = rows.to(TORCH_DTYPES[dtype])
    if dtype is DType.BFLOAT16:
        return rows.view(torch.int16).cpu().numpy().view(np.uint16)
    return rows.cpu().numpy()
