"""A static word-vectors table (spaCy's Vectors: default or floret mode) served beside the
models: per-token lookups with an explicit out-of-vocabulary policy, spaCy's similarity, and
nearest neighbours computed with torch on the server's device. The VectorsService that serves
them over gRPC is rpc/vectors.py."""

from tokvec_server.vectors.table import VectorTable

__all__ = ["VectorTable"]
