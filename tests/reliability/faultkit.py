"""Helpers for the fault tests (docs/reliability.md R3, R4, R8, R9): a fake-runner server whose batches
the test composes, docs whose first word is a known piece (so ``faults.calls`` says which docs
reached the model), separate client connections, and polling with a timeout.

Batch control: ``hold`` sets the scheduler's wait for batch-mates to an hour, so submitted docs
stay queued; ``flush`` lets them go as one batch. With the fake runner's gate closed, a flushed
batch holds the model; anything submitted after that stays in the scheduler's queue (the model's
thread asks for its next batch only once it is free).
"""

from __future__ import annotations

import contextlib
import random
import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from typing import Any

import grpc
import numpy as np
from serving import ServerThread

from tokvec.v1 import tokvec_pb2 as pb
from tokvec.v1 import tokvec_pb2_grpc as pb_grpc
from tokvec_server.batching.queue import Scheduler
from tokvec_server.engine import Engine
from tokvec_server.settings import Batching, Limits, ModelSettings, Settings

HOUR = 3600.0


@contextlib.contextmanager
def fake_server(batching: Batching = Batching(), limits: Limits = Limits()) -> Iterator[ServerThread]:
    """An in-process server on the fake runner, with torch on one intra-op thread meanwhile.

    The fake's tensors are tiny; with two OpenMP threads on a 2-core machine, their spin-wait
    after every op starves the gRPC threads (measured: results of 3 forwards took up to 3.7 s to
    reach the client instead of 0.05 s), which would turn every latency figure into noise."""
    import torch

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    server = ServerThread(Settings(models=(ModelSettings(backend="fake", batching=batching),), limits=limits))
    try:
        yield server
    finally:
        stop(server)
        torch.set_num_threads(threads)


def stop(server: ServerThread) -> None:
    """Stop the server and close its event loop (an unclosed loop warns, and warnings are errors)."""
    server.stop()
    if not server.thread.is_alive():
        server.loop.close()


def wait_until(predicate: Callable[[], bool], timeout: float = 10.0, what: str = "condition") -> float:
    """Poll (every 0.2 ms) until predicate() holds; seconds waited. Fails the test on timeout."""
    started = time.perf_counter()
    while not predicate():
        if time.perf_counter() - started > timeout:
            raise AssertionError(f"timed out after {timeout}s waiting for {what}")
        time.sleep(0.0002)
    return time.perf_counter() - started


def single_piece_words(tokenizer: Any) -> list[str]:
    """Lowercase vocabulary words that are exactly one piece: a doc starting with one is found
    in ``faults.calls`` (the first piece after [CLS] of every row) by that piece's id."""
    vocab = tokenizer.get_vocab()
    words = sorted(w for w in vocab if w.isascii() and w.isalpha() and w.islower() and len(w) >= 4)
    return [w for w in words if tokenizer.tokenize(w) == [w]]


@dataclass
class Doc:
    """A test doc: ``key`` is the piece id of its first word."""

    id: str
    words: list[str]
    key: int = -1
    spaces: list[bool] | None = None  # default: a space after every word but the last

    def pb(self) -> pb.Doc:
        spaces = self.spaces if self.spaces is not None else [True] * (len(self.words) - 1) + [False]
        return pb.Doc(id=self.id, words=self.words, spaces=spaces)


class DocMaker:
    """Docs with a unique first word each, and random filler words after it."""

    def __init__(self, tokenizer: Any, seed: int = 0) -> None:
        self.tokenizer = tokenizer
        vocab = single_piece_words(tokenizer)
        self.rng = random.Random(seed)
        self.rng.shuffle(vocab)
        self._firsts = iter(vocab[200:])
        self.filler = vocab[:200]
        self._n = 0

    def doc(self, n_words: int | None = None, insert: str = "") -> Doc:
        """A doc of n_words (random 1-20) filler words after its key word; ``insert`` goes at a
        random place after the key."""
        first = next(self._firsts)
        n = n_words if n_words is not None else self.rng.randint(1, 20)
        words = [first, *self.rng.choices(self.filler, k=n - 1)]
        if insert:
            words.insert(self.rng.randint(1, len(words)), insert)
        self._n += 1
        return Doc(f"d{self._n}-{first}", words, self.tokenizer.convert_tokens_to_ids(first))

    def reserve(self) -> tuple[str, int]:
        """A word no doc made here contains (unless inserted): a marker for a fault hook."""
        word = next(self._firsts)
        return word, self.piece(word)

    def piece(self, word: str) -> int:
        assert self.tokenizer.tokenize(word) == [word], word
        return int(self.tokenizer.convert_tokens_to_ids(word))


def channels(address: str, n: int) -> list[grpc.Channel]:
    """n separate connections (so n peers, n clients to the scheduler's fair sharing): channels
    to one target share a connection unless each has its own subchannel pool."""
    return [grpc.insecure_channel(address, options=[("grpc.use_local_subchannel_pool", 1)]) for _ in range(n)]


def embed_call(
    channel: grpc.Channel, docs: Iterable[Doc], options: pb.EmbedOptions | None = None, timeout: float = 60.0
) -> Any:
    """Start an Embed call now (the request is sent at once); iterate it later for the results."""
    request = pb.EmbedRequest(docs=[d.pb() for d in docs], options=options or pb.EmbedOptions())
    return pb_grpc.EmbedServiceStub(channel).Embed(request, timeout=timeout)


def results(call: Any) -> list[pb.DocResult]:
    """Every DocResult of a finished call (chunks joined is not needed: test docs are small)."""
    out = [r.result for r in call]
    assert all(not r.more for r in out), "test docs should fit in one message"
    return out


def rows(result: pb.DocResult) -> np.ndarray:
    t = result.tokens
    return np.frombuffer(t.data, dtype="<f4").reshape(tuple(t.shape))


class Batches:
    """Compose batches on a running server: hold docs in the queue, then flush them as one batch."""

    def __init__(self, server: ServerThread) -> None:
        self.server = server
        self.engine: Engine = server.server.engines[0]
        self.scheduler: Scheduler = self.engine.scheduler
        self.faults: Any = getattr(server.runner, "faults", None)  # the fake runner's hooks

    def queued_docs(self) -> int:
        return int(self.scheduler.queued[0])

    def hold(self) -> None:
        self.scheduler.max_wait_s = HOUR

    def flush(self, timeout: float = 10.0) -> None:
        """Let every queued doc go (as one batch when they fit the budget); wait until they left."""
        self.scheduler.max_wait_s = 0.0
        self.scheduler.wake()
        wait_until(lambda: self.queued_docs() == 0, timeout, "the queue to empty")
        self.hold()

    def wait_queued(self, n: int, timeout: float = 10.0) -> None:
        wait_until(lambda: self.queued_docs() == n, timeout, f"{n} queued docs (have {self.queued_docs()})")

    def submit_batch(self, channel: grpc.Channel, docs: list[Doc]) -> Any:
        """One call holding ``docs``, flushed as its own batch."""
        before = self.queued_docs()
        call = embed_call(channel, docs)
        self.wait_queued(before + len(docs))
        self.flush()
        return call

    def fill_pipeline(self, channel: grpc.Channel, plugs: list[Doc]) -> list[Any]:
        """Close the gate and send one batch per plug doc: the first holds the model."""
        self.hold()
        self.faults.gate.clear()
        return [self.submit_batch(channel, [plug]) for plug in plugs]

    def open(self) -> None:
        self.scheduler.max_wait_s = 0.0
        self.scheduler.wake()
        if self.faults is not None:
            self.faults.gate.set()

    def seen(self) -> set[int]:
        """Keys (first pieces) of every row the model has run so far."""
        return {key for call in list(self.faults.calls) for key in call}

    def solo(self, docs: Iterable[Doc], options: pb.EmbedOptions | None = None) -> dict[str, np.ndarray]:
        """Each doc alone in its own request, so alone in its batch: the reference rows."""
        self.open()
        out: dict[str, np.ndarray] = {}
        with grpc.insecure_channel(self.server.address) as channel:
            for doc in docs:
                [result] = results(embed_call(channel, [doc], options))
                assert not result.HasField("error"), result.error
                out[doc.id] = rows(result).copy()
        return out
