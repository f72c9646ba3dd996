"""A spaCy tok2vec runs behind the shared pipeline, so its chunk vectors are pooled like any
runner's: a tok2vec has one piece per token, so a chunk's vector pools the chunk's own rows."""

from __future__ import annotations

import numpy as np
import pytest

import tokvec


@pytest.mark.parametrize("pooling", ["mean", "max", "first", "last", "sum"])
def test_chunk_vectors_pool_the_chunks_rows(tok2vec_server, ewt_docs, pooling):
    docs = ewt_docs[:2]
    chunks = [[(0, 2), (1, 5)], [(0, 1), (2, len(docs[1]["words"]))]]
    reduce = {
        "mean": lambda a: a.mean(0),
        "max": lambda a: a.max(0),
        "first": lambda a: a[0],
        "last": lambda a: a[-1],
        "sum": lambda a: a.sum(0),
    }
    with tokvec.Client(tok2vec_server.address) as client:
        results = client.embed_results(docs, outputs=("tokens", "chunk_vectors"), chunks=chunks, pooling=pooling)
    for result, doc_chunks in zip(results, chunks):
        assert result.error is None
        (vectors,) = result.chunk_vectors
        expected = np.stack([reduce[pooling](result.rows[a:b]) for a, b in doc_chunks])
        np.testing.assert_allclose(vectors, expected, rtol=1e-5, atol=1e-5)
