"""tokvec: per-token embeddings from a shared transformer server, aligned to your own tokens."""

from tokvec._channel import Credentials
from tokvec._results import ModelInfo, ServerInfo, TokenizedDoc
from tokvec._wire import Embedding, Pieces
from tokvec.aio import AsyncClient
from tokvec.client import Client
from tokvec.errors import DocError, ServerError, TokvecError
from tokvec.rows import Rows, open_rows
from tokvec.vectors import VectorsClient

__version__ = "0.1.0"

__all__ = [
    "AsyncClient",
    "Client",
    "Credentials",
    "DocError",
    "Embedding",
    "ModelInfo",
    "Pieces",
    "Rows",
    "ServerError",
    "ServerInfo",
    "TokenizedDoc",
    "TokvecError",
    "VectorsClient",
    "__version__",
    "open_rows",
]
