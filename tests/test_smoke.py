import numpy as np

from tokvec import Client


def test_embed_real_model(minilm, ewt_docs):
    with Client(minilm.address) as client:
        rows = client.embed(ewt_docs[:3])
    assert [r.shape for r in rows] == [(len(d["words"]), 384) for d in ewt_docs[:3]]
    assert all(np.isfinite(r).all() and np.abs(r).sum() > 0 for r in rows)


def test_embed_fake_model(fake_server):
    with Client(fake_server.address) as client:
        rows = client.embed(["Hello world.", ["a", "b"]])
    assert [r.shape for r in rows] == [(3, 384), (2, 384)]
