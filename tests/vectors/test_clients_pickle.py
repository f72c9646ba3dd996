"""Every client pickles without its channel, keeps its configuration, and works after: the sync
and async embed clients and the vectors client, against one server that serves both services."""

from __future__ import annotations

import asyncio
import pickle

import numpy as np

import tokvec

DOCS = [{"words": ["Hello", "world", "again"], "spaces": [True, True, False]}]


def same_configuration(a: object, b: object) -> None:
    for name in ("target", "timeout", "metadata", "credentials"):
        assert getattr(a, name) == getattr(b, name), name
    assert b._channel is None and b._stub is None


def test_sync_clients_pickle_and_work_after(vectors_server):
    embed = tokvec.Client(vectors_server.address, timeout=30, pooling="max", metadata=(("x-caller", "pickle-test"),))
    vectors = tokvec.VectorsClient(vectors_server.address, timeout=30)
    with embed, vectors:
        rows = embed.embed(DOCS)[0]
        looked = vectors.lookup(DOCS)[0].vectors
        assert embed._channel is not None and vectors._channel is not None  # used: a channel is open
        embed_copy, vectors_copy = pickle.loads(pickle.dumps(embed)), pickle.loads(pickle.dumps(vectors))
    same_configuration(embed, embed_copy)
    same_configuration(vectors, vectors_copy)
    assert embed_copy.defaults == embed.defaults
    with embed_copy, vectors_copy:
        np.testing.assert_array_equal(embed_copy.embed(DOCS)[0], rows)  # pooling="max" came along
        np.testing.assert_array_equal(vectors_copy.lookup(DOCS)[0].vectors, looked)


def test_the_async_client_pickles_and_works_after(vectors_server):
    async def main() -> None:
        async with tokvec.AsyncClient(vectors_server.address, timeout=30, pooling="max") as client:
            rows = (await client.embed(DOCS))[0]
            assert client._channel is not None
            copy = pickle.loads(pickle.dumps(client))
        same_configuration(client, copy)
        async with copy:
            np.testing.assert_array_equal((await copy.embed(DOCS))[0], rows)

    asyncio.run(main())
