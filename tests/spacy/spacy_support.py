"""Helpers for the spaCy integration tests: EWT as spaCy Examples, the shipped example config."""

from __future__ import annotations

from typing import Any

from serving import ROOT
from spacy.language import Language
from spacy.tokens import Doc
from spacy.util import load_config, load_model_from_config

from tokvec.spacy import TokvecTransformer

CONFIG = ROOT / "examples" / "configs" / "tagger_parser_tokvec.cfg"


def example_pipeline(address: str, **overrides: Any) -> Language:
    """The shipped examples/configs/tagger_parser_tokvec.cfg, pointed at ``address``."""
    config = load_config(CONFIG, overrides={"components.tokvec.address": address, **overrides})
    return load_model_from_config(config, auto_fill=True)


def doc_annotations(docs: list[Doc]) -> list[list[tuple[str, int, str]]]:
    return [[(t.tag_, t.head.i, t.dep_) for t in doc] for doc in docs]


def upstream(nlp: Language) -> TokvecTransformer:
    component = nlp.get_pipe("tokvec")
    assert isinstance(component, TokvecTransformer)
    return component


def tagger(nlp: Language) -> Any:
    return nlp.get_pipe("tagger")
