"""`tokvec split`'s reading of a pipeline config, and the carrying over of a listening component's
weights, without a server: what it maps, and the errors that name the component and the setting."""

from __future__ import annotations

import copy
from typing import Any

import numpy as np
import pytest
import srsly
from spacy.ml.models import build_tagger_model
from thinc.api import Model

from tokvec.spacy import RemoteListener
from tokvec.spacy.errors import SplitError
from tokvec.spacy.split.plan import plan, rewrite
from tokvec.spacy.split.weights import carry_over, stand_in


def listener(pooling: str = "reduce_mean.v1", upstream: str = "*") -> dict[str, Any]:
    return {
        "@architectures": "spacy-transformers.TransformerListener.v1",
        "grad_factor": 1.0,
        "upstream": upstream,
        "pooling": {"@layers": pooling},
    }


def trf_config(**getter: Any) -> dict[str, Any]:
    return {
        "nlp": {"pipeline": ["transformer", "tagger", "parser"]},
        "components": {
            "transformer": {
                "factory": "transformer",
                "max_batch_items": 4096,
                "set_extra_annotations": {"@annotation_setters": "spacy-transformers.null_annotation_setter.v1"},
                "model": {
                    "@architectures": "spacy-transformers.TransformerModel.v3",
                    "name": "x",
                    "get_spans": getter
                    or {"@span_getters": "spacy-transformers.strided_spans.v1", "window": 128, "stride": 96},
                },
            },
            "tagger": {"factory": "tagger", "model": {"@architectures": "spacy.Tagger.v2", "tok2vec": listener()}},
            "parser": {
                "factory": "parser",
                "model": {
                    "@architectures": "spacy.TransitionBasedParser.v2",
                    "tok2vec": listener("reduce_max.v1", "transformer"),
                },
            },
        },
    }


def test_a_transformer_pipeline_is_mapped_with_each_listeners_pooling() -> None:
    p = plan(trf_config())
    assert (p.source, p.factory, p.spans, p.pooling, p.backends) == (
        "transformer",
        "transformer",
        "tokens:128:96",
        "mean",
        ("torch", "onnx"),
    )
    assert [(lst.component, lst.path, lst.pooling) for lst in p.listeners] == [
        ("tagger", ("model", "tok2vec"), "mean"),
        ("parser", ("model", "tok2vec"), "max"),
    ]
    out = rewrite(trf_config(), p, address="h:1", width=384, fingerprint="f-384", model="")
    assert out["components"]["transformer"] == {
        "factory": "tokvec_transformer",
        "address": "h:1",
        "pooling": "mean",
        "spans": "tokens:128:96",
        "fingerprint": "f-384",
        "model": "",
    }
    assert out["components"]["parser"]["model"]["tok2vec"] == {
        "@architectures": "tokvec.RemoteListener.v1",
        "width": 384,
        "upstream": "transformer",
        "pooling": "max",
    }
    assert out["components"]["parser"]["model"]["@architectures"] == "spacy.TransitionBasedParser.v2"


@pytest.mark.parametrize(
    ("getter", "spans"),
    [
        ({"@span_getters": "spacy-transformers.strided_spans.v1", "window": 40, "stride": 30}, "tokens:40:30"),
        ({"@span_getters": "spacy-transformers.doc_spans.v1"}, "doc"),
        ({"@span_getters": "spacy-transformers.sent_spans.v1"}, "sents"),
    ],
)
def test_span_getters_are_mapped(getter: dict[str, Any], spans: str) -> None:
    assert plan(trf_config(**getter)).spans == spans


def test_several_listeners_in_one_component() -> None:
    config = trf_config()
    config["components"]["tagger"]["model"]["tok2vec"] = {
        "@architectures": "my.Concat.v1",
        "first": listener("reduce_first.v1"),
        "second": listener("reduce_last.v1"),
    }
    p = plan(config)
    assert [(lst.component, lst.path[-1], lst.pooling) for lst in p.listeners] == [
        ("tagger", "first", "first"),
        ("tagger", "second", "last"),
        ("parser", "tok2vec", "max"),
    ]
    assert p.pooling == "first"  # the first listener's; the others are asked for beside it


def test_a_tok2vec_pipeline_is_mapped() -> None:
    config = {
        "nlp": {"pipeline": ["tok2vec", "tagger", "ner"]},
        "components": {
            "tok2vec": {"factory": "tok2vec", "model": {"@architectures": "spacy.Tok2Vec.v2"}},
            "tagger": {
                "factory": "tagger",
                "model": {
                    "@architectures": "spacy.Tagger.v2",
                    "tok2vec": {"@architectures": "spacy.Tok2VecListener.v1", "width": 96, "upstream": "tok2vec"},
                },
            },
            "ner": {
                "factory": "ner",
                "model": {
                    "@architectures": "spacy.TransitionBasedParser.v2",
                    "tok2vec": {"@architectures": "spacy.Tok2Vec.v2"},
                },
            },
        },
    }
    p = plan(config)
    assert (p.source, p.spans, p.backends, [(lst.component, lst.width, lst.pooling) for lst in p.listeners]) == (
        "tok2vec",
        "doc",
        ("tok2vec",),
        [("tagger", 96, "")],
    )
    out = rewrite(config, p, address="h:1", width=96, fingerprint="f-96", model="")
    assert out["components"]["tagger"]["model"]["tok2vec"] == {
        "@architectures": "tokvec.RemoteListener.v1",
        "width": 96,
        "upstream": "tok2vec",
    }
    assert out["components"]["ner"] == config["components"]["ner"]


def broken(change: Any) -> dict[str, Any]:
    config = trf_config()
    change(config["components"])
    return config


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (
            lambda c: c["transformer"]["model"].update(get_spans={"@span_getters": "my.spans.v1"}),
            "component 'transformer': components.transformer.model.get_spans = 'my.spans.v1' is a span getter tokvec split cannot map",
        ),
        (
            lambda c: c["transformer"].update(set_extra_annotations={"@annotation_setters": "my.setter.v1"}),
            "component 'transformer': components.transformer.set_extra_annotations = 'my.setter.v1' is an annotation setter other components may read",
        ),
        (
            lambda c: c["tagger"]["model"].update(
                tok2vec={"@architectures": "spacy-transformers.TransformerListener.v2", "upstream": "*"}
            ),
            "component 'tagger': components.tagger.model.tok2vec.@architectures = 'spacy-transformers.TransformerListener.v2' is not a listener tokvec split can map",
        ),
        (
            lambda c: c["tagger"]["model"].update(tok2vec={"@architectures": "my.Listener.v1"}),
            "component 'tagger': components.tagger.model.tok2vec.@architectures = 'my.Listener.v1' is not a listener",
        ),
        (
            lambda c: c["parser"]["model"]["tok2vec"].update(pooling={"@layers": "my.attention.v1"}),
            "component 'parser': components.parser.model.tok2vec.pooling.@layers = 'my.attention.v1' is not a pooling tokvec serves",
        ),
        (
            lambda c: c["parser"]["model"]["tok2vec"].update(upstream="other"),
            "component 'parser': components.parser.model.tok2vec (spacy-transformers.TransformerListener.v1, upstream = 'other') listens to no component",
        ),
        (
            lambda c: c["tagger"]["model"].update(
                tok2vec={"@architectures": "spacy-transformers.Tok2VecTransformer.v3", "name": "x"}
            ),
            "component 'tagger': components.tagger.model.tok2vec.@architectures = 'spacy-transformers.Tok2VecTransformer.v3' is not a listener",
        ),
        (lambda c: c.update(tok2vec={"factory": "tok2vec"}), "2 components to serve"),
    ],
)
def test_what_cannot_be_mapped_is_named(change: Any, message: str) -> None:
    config = broken(change)
    if "tok2vec" in config["components"] and config["components"]["tok2vec"].get("factory") == "tok2vec":
        config["nlp"]["pipeline"].insert(0, "tok2vec")
    with pytest.raises(SplitError) as raised:
        plan(config)
    assert message in str(raised.value)


def test_no_encoder_to_serve_is_an_error() -> None:
    with pytest.raises(SplitError, match="no `transformer` .* or shared `tok2vec` component"):
        plan({"nlp": {"pipeline": ["tagger"]}, "components": {"tagger": {"factory": "tagger"}}})


def allocate(model: Model, seed: int) -> None:
    """Give every declared param of ``model`` random values (what training leaves)."""
    rng = np.random.default_rng(seed)
    for node in model.walk():
        for name in node.param_names:
            shape = {"W": (5, 7), "b": (5,)}.get(name, (3,))
            node.set_param(name, rng.normal(size=shape).astype("f"))
        if node.name == "softmax":
            node.set_dim("nO", 5)
            node.set_dim("nI", 7)


def test_weights_are_carried_over_past_a_listener_subtree_of_another_layout() -> None:
    from tokvec.spacy.split.plan import Listener

    lst = Listener("tagger", ("model", "tok2vec"), "spacy-transformers.TransformerListener.v1", "max", None)
    # The original: a tagger over spacy-transformers' listener layout (4 layers in its place).
    original = build_tagger_model(stand_in(lst), nO=5)
    allocate(original, 0)
    saved = original.to_bytes()
    assert (
        len(srsly.msgpack_loads(saved)["nodes"]) == len(list(original.walk())) == 7
    )  # chain, 4 listener layers, with_array, softmax
    remote = RemoteListener("transformer", 7, None, "max")
    remote.attrs["fingerprint"] = "f-7"
    split = build_tagger_model(remote, nO=5)
    split.from_bytes(carry_over(saved, split, [lst], "tagger"))
    before = {n.name: {p: n.get_param(p) for p in n.param_names} for n in original.walk() if n.param_names}
    after = {n.name: {p: n.get_param(p) for p in n.param_names} for n in split.walk() if n.param_names}
    assert before.keys() == after.keys() == {"softmax"}
    for name in before:
        for p in before[name]:
            np.testing.assert_array_equal(before[name][p], after[name][p])
    got = next(n for n in split.walk() if isinstance(n, RemoteListener))
    assert got is remote and got.attrs["fingerprint"] == "f-7" and got.get_dim("nO") == 7

    wrong = copy.deepcopy(lst.__dict__)
    wrong["pooling"] = "mean"  # the saved file holds reduce_max: refused, not guessed
    with pytest.raises(
        SplitError,
        match=r"component 'tagger': its saved model does not have the layout its config describes \(layer \d+ is 'reduce_max', expected 'reduce_mean'\)",
    ):
        carry_over(
            saved,
            build_tagger_model(RemoteListener("transformer", 7, None, "mean"), nO=5),
            [Listener(**wrong)],
            "tagger",
        )
