"""spaCy integration: the ``tokvec_transformer`` component and the ``tokvec.RemoteListener.v1``
layer (needs the ``spacy`` extra). spaCy finds both through entry points; no import is needed
for config files or ``spacy.load``."""

from tokvec.spacy.component import TokvecTransformer, make_tokvec_transformer
from tokvec.spacy.errors import ModelMismatchError, PipelineError
from tokvec.spacy.listener import RemoteListener, remote_listener
from tokvec.spacy.remote import Remote, RemoteSettings

__all__ = [
    "ModelMismatchError",
    "PipelineError",
    "Remote",
    "RemoteListener",
    "RemoteSettings",
    "TokvecTransformer",
    "make_tokvec_transformer",
    "remote_listener",
]
