"""UD English EWT as spaCy Examples, as `spacy convert` makes them (shared by the spaCy tests)."""

from __future__ import annotations

import gzip
from pathlib import Path

from serving import DATA
from spacy.language import Language
from spacy.tokens import Doc, DocBin
from spacy.training import Example
from spacy.training.converters import conllu_to_docs  # type: ignore[attr-defined]

# The train split is stored compressed (data/ewt/README.md).
CONLLU = {"train": DATA / "en_ewt-ud-train.conllu.gz", "test": DATA / "en_ewt-ud-test.conllu"}


def conllu_head(path: Path, n_sents: int, skip: int = 0) -> str:
    raw = path.read_bytes()
    text = (gzip.decompress(raw) if path.suffix == ".gz" else raw).decode("utf-8")
    blocks = [b for b in text.split("\n\n") if b.strip()]
    return "\n\n".join(blocks[skip : skip + n_sents]) + "\n\n"


def ewt_examples(nlp: Language, split: str, n_sents: int, skip: int = 0) -> list[Example]:
    """Gold EWT sentences (10 a doc), as spacy convert makes them, against unannotated docs."""
    gold = list(
        conllu_to_docs(  # type: ignore[no-untyped-call]
            conllu_head(CONLLU[split], n_sents, skip), n_sents=10, no_print=True
        )
    )
    docs = DocBin(docs=gold, store_user_data=False).get_docs(nlp.vocab)  # into this pipeline's vocab
    return [
        Example(Doc(nlp.vocab, words=[t.text for t in d], spaces=[bool(t.whitespace_) for t in d]), d) for d in docs
    ]
