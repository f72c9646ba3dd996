#!/usr/bin/env python3
"""A spaCy pipeline whose token vectors come from a tokvec server: the sidecar example.

spaCy tokenizes; tokvec embeds the pipeline's own tokens (one row per token, always) and each Doc
gets them as ``doc.tensor``. The same script runs in the compose sidecar example, in the Kubernetes
native-sidecar overlay and in tests/deploy/test_sidecar.py.

    python pipeline.py --address unix:/run/tokvec/tokvec.sock --text "Hello world."
    printf 'one doc per line\\n' | python pipeline.py --address 127.0.0.1:50051 -
    python pipeline.py --every 30            # a long-running worker: the sample texts every 30 s

One JSON line per doc on stdout; ``--out rows.npz`` also saves each doc's words and rows.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from collections.abc import Iterable
from typing import Any

import numpy as np
import spacy
from spacy.language import Language
from spacy.tokens import Doc

import tokvec

SAMPLE = [
    "The server embeds once; every pipeline that shares it listens.",
    "A sidecar talks to it over a unix socket on a shared volume.",
]


def embed(nlp: Language, client: tokvec.Client, texts: Iterable[str]) -> list[Doc]:
    """Tokenize with spaCy, then set ``doc.tensor`` (Shape: (n_tokens, width)) from tokvec."""
    docs = list(nlp.pipe(texts))
    for doc, result in zip(docs, client.embed_results(docs)):
        if result.error is not None:
            raise result.error
        doc.tensor = result.rows
        doc.user_data["tokvec_fingerprint"] = result.fingerprint
    return docs


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("inputs", nargs="*", help="'-' reads one text per line from stdin")
    parser.add_argument(
        "--address", default="unix:/run/tokvec/tokvec.sock", help="tokvec server (default unix:/run/tokvec/tokvec.sock)"
    )
    parser.add_argument("--lang", default="en", help="spaCy tokenizer language (default en)")
    parser.add_argument("--text", action="append", default=[], help="a text to process (repeatable)")
    parser.add_argument("--every", type=float, default=0.0, help="repeat every N seconds (default 0: once)")
    parser.add_argument("--out", help="save words and rows of every doc to this .npz")
    args = parser.parse_args(argv)

    texts = list(args.text)
    if "-" in args.inputs:
        texts += [line.rstrip("\n") for line in sys.stdin if line.strip()]
    texts = texts or SAMPLE
    nlp = spacy.blank(args.lang)
    with tokvec.Client(args.address) as client:
        while True:
            docs = embed(nlp, client, texts)
            for i, doc in enumerate(docs):
                print(
                    json.dumps(
                        {
                            "doc": i,
                            "tokens": len(doc),
                            "width": int(doc.tensor.shape[1]),
                            "fingerprint": doc.user_data["tokvec_fingerprint"],
                        }
                    ),
                    flush=True,
                )
            if args.out:
                arrays: dict[str, Any] = {f"rows_{i}": doc.tensor for i, doc in enumerate(docs)}
                arrays |= {f"words_{i}": np.array([t.text for t in doc]) for i, doc in enumerate(docs)}
                np.savez(args.out, **arrays)
            if args.every <= 0:
                return 0
            time.sleep(args.every)


if __name__ == "__main__":
    sys.exit(main())
