"""What the tokvec component leaves on each Doc, as plain arrays so that Docs keep crossing
process boundaries (nlp.pipe(n_process=...), DocBin) with their rows."""

from __future__ import annotations

from typing import Any

import numpy as np
from spacy.tokens import Doc

from tokvec._wire import Embedding

ROWS = "tokvec"  # Floats2d, Shape: (n_tokens, width): the pooled rows listeners receive
FINGERPRINT = "tokvec_fingerprint"  # str: the model that made the rows
POOLING = "tokvec_pooling"  # str: how ROWS were pooled ("mean", ...; None on docs from before it was kept)
POOLED = "tokvec_pooled"  # dict pooling -> rows, for listeners pooling otherwise than ROWS; or None
PIECES = "tokvec_pieces"  # dict of arrays (the fields of tokvec.Pieces) or None
PIECE_FIELDS = ("hidden", "ids", "span_lengths", "span_tokens", "align_lengths", "align_indices")


def install_extensions() -> None:
    for name in (ROWS, FINGERPRINT, POOLING, POOLED, PIECES):
        if not Doc.has_extension(name):
            Doc.set_extension(name, default=None)


def set_doc_data(doc: Doc, result: Embedding, *, pooling: str, more_poolings: tuple[str, ...], pieces: bool) -> None:
    """``result.rows`` pooled by ``pooling``, ``result.pooled`` by ``more_poolings`` (in order)."""
    doc._.set(ROWS, result.rows)
    doc._.set(FINGERPRINT, result.fingerprint)
    doc._.set(POOLING, pooling)
    doc._.set(POOLED, dict(zip(more_poolings, result.pooled)) if more_poolings else None)
    if pieces and result.pieces is not None:
        # A dict, not the dataclass: Doc.to_bytes (multiprocessing, DocBin) serialises arrays only.
        doc._.set(PIECES, {name: getattr(result.pieces, name) for name in PIECE_FIELDS})


def doc_rows(doc: Doc, pooling: str) -> tuple[np.ndarray | None, str]:
    """The rows stored on ``doc`` under ``pooling`` (None if none) and the fingerprint of the
    model that made them."""
    rows: Any = doc._.get(ROWS) if Doc.has_extension(ROWS) else None
    if rows is None:
        return None, ""
    made_by = doc._.get(POOLING)
    if made_by is not None and made_by != pooling:
        rows = (doc._.get(POOLED) or {}).get(pooling)
    return rows, doc._.get(FINGERPRINT) or ""
