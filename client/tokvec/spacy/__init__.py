"""spaCy integration: the ``tokvec_transformer`` component, the ``tokvec.RemoteListener.v1``
layer and, for span-level components, ``tokvec.RemoteSpanReducer.v1`` and
``tokvec.RemoteSpanCategorizer.v1`` (needs the ``spacy`` extra). spaCy finds both through entry points; no import is needed
for config files or ``spacy.load``."""

from tokvec.spacy.component import TokvecTransformer, make_tokvec_transformer
from tokvec.spacy.errors import ModelMismatchError, PipelineError
from tokvec.spacy.listener import RemoteListener, remote_listener
from tokvec.spacy.remote import Remote, RemoteSettings
from tokvec.spacy.spans import RemoteSpanVectors, remote_span_categorizer, remote_span_reducer

__all__ = [
    "ModelMismatchError",
    "PipelineError",
    "Remote",
    "RemoteListener",
    "RemoteSettings",
    "RemoteSpanVectors",
    "TokvecTransformer",
    "make_tokvec_transformer",
    "remote_listener",
    "remote_span_categorizer",
    "remote_span_reducer",
]
