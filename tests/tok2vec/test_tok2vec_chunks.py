"""The tok2vec backend collects its rows on its own path, without chunk pooling: until it runs
behind the shared pipeline, a request for chunk vectors is refused by name, not answered wrong."""

from __future__ import annotations

import grpc
import pytest

import tokvec
from tokvec.errors import ServerError


def test_chunk_vectors_are_refused_by_name(tok2vec_server, ewt_docs):
    docs = ewt_docs[:2]
    with tokvec.Client(tok2vec_server.address) as client:
        with pytest.raises(ServerError) as caught:
            client.embed_results(docs, outputs=("tokens", "chunk_vectors"), chunks=[[(0, 2)], [(0, 1)]])
        assert caught.value.code == grpc.StatusCode.INVALID_ARGUMENT
        assert "options.outputs" in caught.value.details and "OUTPUT_CHUNK_VECTORS" in caught.value.details and "tok2vec" in caught.value.details
        assert client.embed_results(docs)[0].error is None  # the server goes on
