"""Serve the ``tok2vec`` component of a spaCy pipeline: one row per caller token by construction
(the alignment is the identity), batched across callers like every other model."""

from tokvec_server.tok2vec.engine import Tok2VecEngine
from tokvec_server.tok2vec.runner import Tok2VecRunner

__all__ = ["Tok2VecEngine", "Tok2VecRunner"]
