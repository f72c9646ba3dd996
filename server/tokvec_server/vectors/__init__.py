"""Serve a static word-vectors table (spaCy's Vectors: default or floret mode) beside the models:
per-token lookups with an explicit out-of-vocabulary policy, spaCy's similarity, and nearest
neighbours computed with torch on the server's device."""

from tokvec_server.vectors.service import SERVICE, VectorsService, add_vectors_service
from tokvec_server.vectors.table import VectorTable

__all__ = ["SERVICE", "VectorTable", "VectorsService", "add_vectors_service"]
