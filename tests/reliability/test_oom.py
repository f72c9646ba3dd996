"""R9 out of memory: injected OOM above a padded-piece count (real OOM on a lent GPU).

Figures (docs/reliability.md): the batch is split and retried, 0 client-visible errors, the batch cap
adapts (later batches stay under what failed); a single span too large for memory gets
INVALID_ARGUMENT alone (TooLargeForDevice: sending it again cannot help), saying what can. Both of the worker's OOM signals are injected: the runners'
``OutOfMemory`` (the fake's ``oom_above`` hook) and ``torch.OutOfMemoryError``.
"""

from __future__ import annotations

import random
from collections.abc import Iterator
from typing import Any

import grpc
import numpy as np
import pytest
import torch
from faultkit import Batches, Doc, DocMaker, channels, embed_call, fake_server, results, rows, stop
from serving import ServerThread

from tokvec.v1 import tokvec_pb2 as pb
from tokvec_server.runners.batch import Batch
from tokvec_server.settings import Batching, ModelSettings, Settings

OOM_ABOVE = 1500  # padded pieces; a batch of 32 docs x 100 pieces (3200) does not fit


@pytest.fixture(scope="module")
def server() -> Iterator[ServerThread]:
    with fake_server() as srv:
        yield srv


@pytest.fixture
def kit(server: ServerThread) -> Iterator[Batches]:
    kit = Batches(server)
    budget = kit.scheduler.max_batch_items
    yield kit
    kit.open()
    kit.scheduler.max_batch_items = budget


def arm(server: ServerThread, kind: str, above: int, monkeypatch: pytest.MonkeyPatch) -> list[int]:
    """Fail every forward over ``above`` pieces; the returned list logs each forward's size."""
    sizes: list[int] = []
    forward = server.runner.forward
    if kind == "hook":
        monkeypatch.setattr(server.runner.faults, "oom_above", above)

    def logged(batch: Batch, layers: tuple[int, ...]) -> Any:
        sizes.append(len(batch.ids))
        if kind == "torch" and len(batch.ids) > above:
            raise torch.OutOfMemoryError(f"CUDA out of memory (injected: {len(batch.ids)} > {above})")
        return forward(batch, layers)

    monkeypatch.setattr(server.runner, "forward", logged)
    return sizes


def send_batch(
    kit: Batches, chans: list[Any], docs: list[Doc], options: pb.EmbedOptions | None = None, together: bool = True
) -> dict[str, pb.DocResult]:
    """Send docs from every client; ``together``: queue them all, then let them go as one batch
    (else the scheduler packs them as it would). Every result by doc id."""
    if together:
        kit.hold()
    else:
        kit.open()
    before = kit.queued_docs()
    calls = [
        (embed_call(chans[i % len(chans)], docs[i :: len(chans)], options)) for i in range(min(len(chans), len(docs)))
    ]
    if together:
        kit.wait_queued(before + len(docs))
        kit.flush()
    return {r.id: r for call in calls for r in results(call)}


@pytest.mark.parametrize("kind", ["hook", "torch"])
def test_oom_splits_retries_and_lowers_the_budget(
    server: ServerThread, kit: Batches, kind: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    maker = DocMaker(server.runner.tokenizer, seed=31 + len(kind))
    first = [maker.doc(98) for _ in range(32)]  # 100 pieces each with [CLS] and [SEP]
    second = [maker.doc(98) for _ in range(32)]
    solo = kit.solo(first + second)
    stats = kit.engine.worker.stats
    splits = stats["oom_splits"]
    sizes = arm(server, kind, OOM_ABOVE, monkeypatch)
    chans = channels(server.address, 8)
    try:
        got = send_batch(kit, chans, first)
        assert sizes[0] == 3200  # the whole batch was tried first, and did not fit
        assert stats["oom_splits"] > splits
        budget = kit.scheduler.max_batch_items
        assert budget <= OOM_ABOVE, f"batch budget {budget} after an OOM at {OOM_ABOVE}"
        splits_after_first = stats["oom_splits"]
        n_first = len(sizes)
        got |= send_batch(kit, chans, second, together=False)
    finally:
        for ch in chans:
            ch.close()
    errors = [f"{i}: {r.error.message}" for i, r in got.items() if r.HasField("error")]
    assert not errors, f"{len(errors)} client-visible errors: {errors[:3]}"
    assert max(float(np.abs(rows(got[d.id]) - solo[d.id]).max()) for d in first + second) == 0.0
    # The adaptive cap: the next 32 docs were packed under the lowered budget, no OOM at all.
    assert stats["oom_splits"] == splits_after_first
    assert max(sizes[n_first:]) <= budget
    print(
        f"R9 {kind}: 32 x 100-piece docs, forwards {sizes[:n_first]} (OOM above {OOM_ABOVE}), budget 4096 -> {budget}, "
        f"then {len(sizes) - n_first} forwards of <= {max(sizes[n_first:])} pieces, 0 errors"
    )


@pytest.mark.parametrize("kind", ["hook", "torch"])
def test_a_doc_too_large_alone_is_too_large_for_the_device(
    server: ServerThread, kit: Batches, kind: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    maker = DocMaker(server.runner.tokenizer, seed=41 + len(kind))
    small = [maker.doc() for _ in range(15)]
    huge = maker.doc(398)  # one span of 400 pieces with spans=doc
    options = pb.EmbedOptions(spans=pb.Spans(kind=pb.Spans.KIND_DOC))
    solo = kit.solo(small, options)
    arm(server, kind, 300, monkeypatch)
    docs = small[:7] + [huge] + small[7:]
    random.Random(1).shuffle(docs)
    chans = channels(server.address, 8)
    try:
        got = send_batch(kit, chans, docs, options)
    finally:
        for ch in chans:
            ch.close()
    bad = got[huge.id]
    assert bad.error.code == grpc.StatusCode.INVALID_ARGUMENT.value[0]
    assert bad.error.message == (
        "a span of 400 pieces does not fit in device memory, even in a batch of its own: "
        "ask for shorter spans (a smaller window in options.spans), or send shorter docs"
    )
    assert all(not got[d.id].HasField("error") for d in small), "a batch-mate of the huge doc failed"
    assert max(float(np.abs(rows(got[d.id]) - solo[d.id]).max()) for d in small) == 0.0


@pytest.mark.skipif(not torch.cuda.is_available(), reason="a real OOM needs a GPU (none on this machine)")
def test_real_cuda_oom_splits_and_retries(ewt_docs: list[dict[str, Any]]) -> None:
    """The real model on a GPU whose memory this process may use is capped at 1 GiB: a batch of
    128 x 512 pieces runs out for real (its attention scores alone are 1.6 GB), halves do not."""
    server = ServerThread(
        Settings(models=(ModelSettings(device="cuda", dtype="float32", batching=Batching(max_batch_items=65536)),))
    )
    total = torch.cuda.get_device_properties(0).total_memory
    torch.cuda.set_per_process_memory_fraction((1 << 30) / total)
    try:
        kit = Batches(server)
        words = [w for d in ewt_docs for w in d["words"]]
        docs = [Doc(f"long-{i}", words[i * 300 : i * 300 + 300]) for i in range(128)]
        stats = kit.engine.worker.stats
        chans = channels(server.address, 8)
        got = send_batch(kit, chans, docs, pb.EmbedOptions(spans=pb.Spans(kind=pb.Spans.KIND_DOC)))
        for ch in chans:
            ch.close()
        assert all(not r.HasField("error") for r in got.values())
        assert stats["oom_splits"] >= 1 and kit.scheduler.max_batch_items < 65536
    finally:
        torch.cuda.set_per_process_memory_fraction(1.0)
        stop(server)
