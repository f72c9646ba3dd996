"""The Python client's own cost per call, with no network and no server in the way: building the
request (docs and options into an EmbedRequest, serialized as gRPC sends it) and decoding the reply
(the server's own response messages, parsed and joined into Embeddings, chunks of a large doc
included). Prints one JSON object.

    .venv/bin/python bench/client_cost.py [--repeat 7]

The replies are made by the server's own conversion (tokvec_server.rpc.convert) from rows of the
right shapes, so the client decodes exactly what it gets on the wire. Each figure is the median of
``--repeat`` timings, each over enough calls to take ~0.2 s; the machine is shared, so compare
figures of one run.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import time
from collections.abc import Callable
from typing import Any

import numpy as np

from tokvec import _wire
from tokvec.client import Client
from tokvec.v1 import tokvec_pb2 as pb
from tokvec_server.alignment import DocPlan
from tokvec_server.batching.jobs import DocOutput
from tokvec_server.rpc import convert
from tokvec_server.types import DType, Tokens

WIDTH = 384
# (name, words per doc, docs per call): one short doc, a request of 16, one doc big enough to
# travel in several messages (3 MiB of rows each: 5 chunks).
CASES = (("1 doc x 40 words", 40, 1), ("16 docs x 40 words", 40, 16), ("1 doc x 10,000 words", 10_000, 1))


def replies(words: int, docs: int) -> list[bytes]:
    """The server's response messages for ``docs`` docs of ``words`` words, serialized."""
    rng = np.random.default_rng(0)
    out = []
    for i in range(docs):
        plan = DocPlan(
            n_tokens=words,
            span_ids=[np.zeros(words + 2, np.int64)],
            span_tokens=np.array([[0, words]]),
            piece_offsets=np.zeros((words + 2, 2), np.int64),
            align_lengths=np.ones(words, np.int64),
            align_indices=np.arange(1, words + 1),
            truncated=np.zeros(0, np.int64),
        )
        rows = rng.standard_normal((words, WIDTH), dtype=np.float32)
        output = DocOutput(Tokens(str(i), ["w"] * words, [True] * words, None), plan, rows, [], None, None)
        out += [
            pb.EmbedResponse(result=msg).SerializeToString() for msg in convert.results(i, output, "fp", DType.FLOAT32)
        ]
    return out


def per_call_us(fn: Callable[[], Any], repeat: int) -> float:
    """Median over ``repeat`` timings of microseconds per call."""
    fn()
    started, n = time.perf_counter(), 0
    while time.perf_counter() - started < 0.05:
        fn()
        n += 1
    calls = max(1, int(n * 4))  # ~0.2 s a timing
    timings = []
    for _ in range(repeat):
        t0 = time.perf_counter()
        for _ in range(calls):
            fn()
        timings.append((time.perf_counter() - t0) / calls * 1e6)
    return statistics.median(timings)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--repeat", type=int, default=7)
    args = parser.parse_args()
    client = Client("127.0.0.1:1")  # never connects: only its request building is used
    out: dict[str, Any] = {"loadavg": os.getloadavg(), "cases": {}}
    for name, words, n_docs in CASES:
        docs = [
            {"words": [f"w{k}" for k in range(words)], "spaces": [True] * words, "id": str(i)} for i in range(n_docs)
        ]
        messages = replies(words, n_docs)

        def build() -> bytes:  # what embed_results does before it sends (gRPC serializes it)
            options = client._options(None, pooling=None, dtype=None, outputs=("tokens",), hidden_layers=())
            return pb.EmbedRequest(
                options=options, docs=[_wire.to_doc(d, i) for i, d in enumerate(docs)]
            ).SerializeToString()

        def decode() -> list[_wire.Embedding]:
            assembler = _wire.Assembler()
            done = []
            for data in messages:
                if (result := assembler.add(pb.EmbedResponse.FromString(data).result)) is not None:
                    done.append(result)
            return done

        got = decode()
        assert [e.rows.shape for e in got] == [(words, WIDTH)] * n_docs
        out["cases"][name] = {
            "messages": len(messages),
            "reply_bytes": sum(map(len, messages)),
            "build_request_us": per_call_us(build, args.repeat),
            "decode_reply_us": per_call_us(decode, args.repeat),
        }
    print(json.dumps(out))


if __name__ == "__main__":
    main()
