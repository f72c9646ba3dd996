"""Several models in one server: each by name with its own runner and queue, chosen per request."""

from __future__ import annotations

import numpy as np
import pytest

from serving import ServerThread
from tokvec import Client, ServerError
from tokvec_server.settings import ModelSettings, Settings


@pytest.fixture(scope="module")
def two_models():
    server = ServerThread(Settings(models=(ModelSettings(name="minilm"), ModelSettings(name="fake", backend="fake"))))
    yield server
    server.stop()


def test_info_lists_every_model_default_first(two_models):
    with Client(two_models.address) as client:
        info = client.info()
    assert [(m.name, m.backend, m.is_default) for m in info.models] == [("minilm", "torch", True), ("fake", "fake", False)]
    assert info.models[0].fingerprint != info.models[1].fingerprint
    engines = two_models.server.engines
    assert len({id(e.scheduler) for e in engines}) == 2 and len({id(e.runner) for e in engines}) == 2


def test_requests_choose_their_model_by_name(two_models, ewt_docs):
    doc = ewt_docs[3]
    with Client(two_models.address) as default, Client(two_models.address, model="minilm") as minilm, Client(two_models.address, model="fake") as fake:
        [by_default] = default.embed_results([doc])
        [by_name] = minilm.embed_results([doc])
        [faked] = fake.embed_results([doc])
    np.testing.assert_allclose(by_default.rows, by_name.rows, atol=1e-5)
    assert by_default.fingerprint == by_name.fingerprint != faked.fingerprint
    assert faked.rows.shape == by_default.rows.shape and np.abs(faked.rows - by_default.rows).max() > 0.1
    with pytest.raises(ServerError, match=r"options.model: 'other' is not served \(served: fake, minilm\)"):
        Client(two_models.address, model="other").embed([doc])
