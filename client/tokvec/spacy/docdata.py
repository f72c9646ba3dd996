"""What the tokvec component leaves on each Doc, as plain arrays so that Docs keep crossing
process boundaries (nlp.pipe(n_process=...), DocBin) with their rows."""

from __future__ import annotations

from typing import Any

import numpy as np
from spacy.tokens import Doc

from tokvec._wire import Embedding

ROWS = "tokvec"  # Floats2d, Shape: (n_tokens, width): the pooled rows listeners receive
FINGERPRINT = "tokvec_fingerprint"  # str: the model that made the rows
PIECES = "tokvec_pieces"  # dict of arrays (the fields of tokvec.Pieces) or None
PIECE_FIELDS = ("hidden", "ids", "span_lengths", "span_tokens", "align_lengths", "align_indices")


def install_extensions() -> None:
    for name in (ROWS, FINGERPRINT, PIECES):
        if not Doc.has_extension(name):
            Doc.set_extension(name, default=None)


def set_doc_data(doc: Doc, result: Embedding, *, pieces: bool) -> None:
    doc._.set(ROWS, result.rows)
    doc._.set(FINGERPRINT, result.fingerprint)
    if pieces and result.pieces is not None:
        # A dict, not the dataclass: Doc.to_bytes (multiprocessing, DocBin) serialises arrays only.
        doc._.set(PIECES, {name: getattr(result.pieces, name) for name in PIECE_FIELDS})


def doc_rows(doc: Doc) -> tuple[np.ndarray | None, str]:
    """The rows stored on ``doc`` (None if none) and the fingerprint of the model that made them."""
    rows: Any = doc._.get(ROWS) if Doc.has_extension(ROWS) else None
    if rows is None:
        return None, ""
    return rows, doc._.get(FINGERPRINT) or ""
