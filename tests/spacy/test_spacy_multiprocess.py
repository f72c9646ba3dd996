"""nlp.pipe(n_process=2) under fork and spawn (docs/reliability.md R14): no channel crosses a fork,
each worker opens its own, and the results equal n_process=1."""

from __future__ import annotations

import json
import pickle
from typing import Any

import pytest
import spacy
from spacy_support import upstream

# The parent annotates first (n_process=1), so it holds an open channel when nlp.pipe forks.
WORKERS = r"""
import json, multiprocessing, sys
import numpy as np
import spacy


def main(method, pipeline, texts):
    multiprocessing.set_start_method(method, force=True)
    nlp = spacy.load(pipeline)
    one = list(nlp.pipe(texts, batch_size=4))
    two = list(nlp.pipe(texts, batch_size=4, n_process=2))
    print(json.dumps({
        "same_annotations": [[(t.tag_, t.head.i, t.dep_) for t in d] for d in one] == [[(t.tag_, t.head.i, t.dep_) for t in d] for d in two],
        "max_row_diff": max(float(np.abs(a._.tokvec - b._.tokvec).max()) for a, b in zip(one, two)),
        "n": len(two),
    }))


if __name__ == "__main__":  # spawn workers import this file again
    main(sys.argv[1], sys.argv[2], json.loads(sys.argv[3]))
"""


@pytest.mark.parametrize("method", ["fork", "spawn"])
def test_two_processes(method: str, trained: Any, texts: list[str], run_python: Any) -> None:
    out = run_python(WORKERS, method, str(trained), json.dumps(texts[:16]))
    assert out["n"] == 16 and out["same_annotations"]
    assert out["max_row_diff"] <= 3e-5  # rows travel back with the docs; batching noise only


def test_pickling_drops_the_channel(trained: Any, texts: list[str]) -> None:
    nlp = spacy.load(trained)
    nlp(texts[0])
    component = upstream(nlp)
    assert component.remote._client is not None
    copy = pickle.loads(pickle.dumps(component))
    assert copy.remote._client is None and copy.cfg == component.cfg
    assert copy(nlp.make_doc(texts[1]))._.tokvec.shape[1] == 384
