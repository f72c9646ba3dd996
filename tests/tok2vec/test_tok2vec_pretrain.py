"""``spacy pretrain`` (characters objective, a few steps on EWT text) initialises a tok2vec
(spaCy's ``initialize.init_tok2vec``), and tokvec serves that tok2vec like any other."""

from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import pytest
from serving import ServerProcess

import tokvec

BASE_CONFIG = """
[paths]
raw_text = null

[nlp]
lang = "en"
pipeline = ["tok2vec"]

[components]

[components.tok2vec]
factory = "tok2vec"

[components.tok2vec.model]
@architectures = "spacy.Tok2Vec.v2"

[components.tok2vec.model.embed]
@architectures = "spacy.MultiHashEmbed.v2"
width = 64
attrs = ["NORM", "PREFIX", "SUFFIX", "SHAPE", "SPACY"]
rows = [2000, 1000, 1000, 1000, 50]
include_static_vectors = false

[components.tok2vec.model.encode]
@architectures = "spacy.MaxoutWindowEncoder.v2"
width = 64
depth = 2
window_size = 1
maxout_pieces = 3

[corpora]

[corpora.pretrain]
@readers = "spacy.JsonlCorpus.v1"
path = ${paths.raw_text}

[pretraining]
max_epochs = 1
component = "tok2vec"
corpus = "corpora.pretrain"

[pretraining.objective]
@architectures = "spacy.PretrainCharacters.v1"
maxout_pieces = 3
hidden_size = 64
n_characters = 4
"""


def spacy_cli(*args: str) -> None:
    done = subprocess.run([sys.executable, "-m", "spacy", *args], capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stdout + done.stderr


@pytest.mark.slow
def test_a_tok2vec_initialised_from_spacy_pretrain_weights_is_served(tmp_path, ewt_docs):
    import spacy
    from spacy.tokens import Doc
    from spacy.training import Example
    from spacy.training.initialize import init_tok2vec

    with (tmp_path / "ewt.jsonl").open("w") as f:
        for d in ewt_docs:
            f.write(
                json.dumps({"text": "".join(w + (" " if s else "") for w, s in zip(d["words"], d["spaces"]))}) + "\n"
            )
    (tmp_path / "base.cfg").write_text(BASE_CONFIG)
    spacy_cli("init", "fill-config", str(tmp_path / "base.cfg"), str(tmp_path / "pretrain.cfg"), "--pretraining")
    spacy_cli(
        "pretrain",
        str(tmp_path / "pretrain.cfg"),
        str(tmp_path / "pretrained"),
        "--paths.raw_text",
        str(tmp_path / "ewt.jsonl"),
    )
    weights = tmp_path / "pretrained" / "model-last.bin"

    config = spacy.util.load_config(tmp_path / "pretrain.cfg")
    nlp = spacy.util.load_model_from_config(config, auto_fill=True)
    sample = [Doc(nlp.vocab, words=d["words"], spaces=d["spaces"]) for d in ewt_docs[:10]]
    nlp.initialize(lambda: [Example(doc, doc) for doc in sample])
    model = nlp.get_pipe("tok2vec").model
    untrained = model.to_bytes()
    assert init_tok2vec(nlp, config["pretraining"], {"init_tok2vec": str(weights)})
    assert model.to_bytes() != untrained
    assert model.to_bytes() == weights.read_bytes()  # the pretrained weights, all of them
    nlp.to_disk(tmp_path / "pipeline")

    server = ServerProcess("--model", str(tmp_path / "pipeline"), "--backend", "tok2vec")
    try:
        with tokvec.Client(server.address) as client:
            results = client.embed_results(ewt_docs)
            info = client.info().model
    finally:
        server.stop()
    expected = model.predict([Doc(nlp.vocab, words=d["words"], spaces=d["spaces"]) for d in ewt_docs])
    for result, rows in zip(results, expected):
        np.testing.assert_allclose(result.rows, rows, atol=1e-5, rtol=0)
    assert (info.backend, info.width, info.name) == ("tok2vec", 64, "pipeline")
