"""load_settings: a TOML file, then flags, into a frozen Settings; nonsense refused by name."""

from __future__ import annotations

import dataclasses
import re
from pathlib import Path

import pytest

from tokvec_server.settings import BACKENDS, Batching, Limits, ModelSettings, Security, Settings, load_settings


def config(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "tokvec.toml"
    path.write_text(text)
    return path


def test_defaults_without_a_file() -> None:
    assert load_settings() == Settings()
    assert Settings().models == (ModelSettings(),)


def test_values_from_file(tmp_path: Path) -> None:
    path = config(
        tmp_path,
        """
address = "0.0.0.0:6000"
grace_s = 3.5
[limits]
max_tokens_per_doc = 100
[[models]]
path = "/models/minilm"
name = "minilm"
device = "cuda:1"
[models.batching]
max_wait_ms = 2.5
[[models]]
name = "fake"
backend = "fake"
""",
    )
    s = load_settings(path)
    assert (s.address, s.grace_s, s.limits) == ("0.0.0.0:6000", 3.5, Limits(max_tokens_per_doc=100))
    assert s.models == (
        ModelSettings(path="/models/minilm", name="minilm", device="cuda:1", batching=Batching(max_wait_ms=2.5)),
        ModelSettings(name="fake", backend="fake"),
    )
    with pytest.raises(dataclasses.FrozenInstanceError):
        s.address = "other"  # type: ignore[misc]


def test_flags_win_over_the_file_and_model_flags_apply_to_the_first_model(tmp_path: Path) -> None:
    path = config(
        tmp_path, 'address = "127.0.0.1:1"\n[[models]]\nname = "a"\nbackend = "fake"\n[[models]]\nname = "b"\n'
    )
    s = load_settings(path, server={"address": "127.0.0.1:2", "grace_s": None}, model={"path": "/m", "backend": None})
    assert (s.address, s.grace_s) == ("127.0.0.1:2", Settings().grace_s)
    assert s.models == (ModelSettings(path="/m", name="a", backend="fake"), ModelSettings(name="b"))


def test_security_flags_merge_with_the_file(tmp_path: Path) -> None:
    tokens = tmp_path / "tokens"
    tokens.write_text("secret\n")
    path = config(tmp_path, "[security]\nallow_insecure_token = true\n")
    s = load_settings(path, security={"token_file": str(tokens)})
    assert s.security == Security(token_file=str(tokens), allow_insecure_token=True)


@pytest.mark.parametrize(
    ("text", "names"),
    [
        ("colour = 1\n", ["tokvec.toml:", "'colour'"]),
        ("[limits]\nmax_tokens = 5\n", ["tokvec.toml.limits:", "'max_tokens'"]),
        ("[[models]]\nweights = 'x'\n", ["tokvec.toml.models[0]:", "'weights'"]),
        (
            "[[models]]\n[[models]]\n[models.batching]\nmax_wait = 5\n",
            ["tokvec.toml.models[1].batching:", "'max_wait'"],
        ),
        ("device = 'cpu'\n", ["tokvec.toml:", "'device'"]),  # a model setting at the top level
    ],
)
def test_unknown_key_is_named(tmp_path: Path, text: str, names: list[str]) -> None:
    with pytest.raises(ValueError) as info:
        load_settings(config(tmp_path, text))
    assert all(name in str(info.value) for name in names), str(info.value)


@pytest.mark.parametrize("group", ["server", "security", "model"])
def test_unknown_flag_is_named(group: str) -> None:
    with pytest.raises(ValueError, match="unknown setting 'colour'"):
        load_settings(**{group: {"colour": "red"}})  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("[limits]\nmax_tokens_per_doc = -1\n", "max_tokens_per_doc: -1 is not a non-negative number"),
        ('[limits]\nmax_docs_per_request = "many"\n', "max_docs_per_request: 'many' is not a non-negative number"),
        ("[[models]]\n[models.batching]\nmax_wait_ms = true\n", "max_wait_ms: True is not a non-negative number"),
        (
            "[[models]]\n[models.batching]\nmin_padding_efficiency = 1.5\n",
            "min_padding_efficiency: 1.5 > 1 (a share of the padded pieces)",
        ),
        ("[[models]]\n[models.batching]\nrearrival_ms = -1\n", "rearrival_ms: -1 is not a non-negative number"),
        ("[[models]]\n[models.batching]\nmax_batch_items = 100\n", "max_batch_items: 100 < 512 (one full-length span)"),
        ("[[models]]\n[[models]]\nbackend = 'tf'\n", f"backend: 'tf' is not one of {', '.join(BACKENDS)}"),
        ("[[models]]\ndtype = 'fp8'\n", "dtype: 'fp8' is not auto, float32, float16 or bfloat16"),
        ("[[models]]\ndevice = 'tpu'\n", "device: 'tpu' is not auto, cpu, cuda or cuda:N"),
        ("[[models]]\nquantize = 'int4'\n", "quantize: 'int4' is not int8"),
        ("[[models]]\nname = 'a'\n[[models]]\nname = 'a'\n", "models: names must differ, got ['a', 'a']"),
        ("models = []\n", "tokvec.toml.models: a non-empty list of [[models]] tables"),
        ("log_format = 'xml'\n", "log_format: 'xml' is not text or json"),
    ],
)
def test_bad_value_is_named(tmp_path: Path, text: str, expected: str) -> None:
    with pytest.raises(ValueError) as info:
        load_settings(config(tmp_path, text))
    assert re.fullmatch(f"(.*/)?{re.escape(expected)}", str(info.value)), str(info.value)  # a file path may lead


def test_bad_flag_is_named() -> None:
    with pytest.raises(ValueError, match="^device: 'gpu'"):
        load_settings(model={"device": "gpu"})


def test_security_nonsense_is_named(tmp_path: Path) -> None:
    pem = tmp_path / "cert.pem"
    pem.write_text("x")
    cases = [
        ({"token_file": str(tmp_path / "none")}, {}, f"token_file: {tmp_path / 'none'} is not a readable file"),
        ({"tls_cert": str(pem)}, {}, "tls_cert and tls_key: set both or neither"),
        ({"tls_client_ca": str(pem)}, {}, "tls_client_ca: mutual TLS needs tls_cert and tls_key too"),
        (
            {"token_file": str(pem)},
            {"address": "0.0.0.0:50051"},
            "token_file: bearer tokens over plaintext on 0.0.0.0:50051",
        ),
    ]
    for security, server, expected in cases:
        with pytest.raises(ValueError) as info:
            load_settings(security=security, server=server)
        assert str(info.value).startswith(expected), str(info.value)
    load_settings(security={"token_file": str(pem)}, server={"address": "127.0.0.1:0"})  # loopback: fine
    load_settings(security={"token_file": str(pem)}, server={"address": "unix:/tmp/tokvec.sock"})


def test_broken_toml_names_the_file(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="^--config .*tokvec.toml: "):
        load_settings(config(tmp_path, "address = \n"))


def test_missing_file_names_the_file(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="^--config .*nowhere.toml: "):
        load_settings(tmp_path / "nowhere.toml")


@pytest.mark.parametrize("text", ["limits = 5\n", "models = [5]\n", "security = 5\n"])
def test_scalar_where_a_table_belongs(tmp_path: Path, text: str) -> None:
    with pytest.raises(ValueError, match="limits|models|security"):
        load_settings(config(tmp_path, text))


def test_top_level_types_are_checked(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="grace_s"):
        load_settings(config(tmp_path, 'grace_s = "soon"\n'))


@pytest.mark.parametrize("value", ["0", "-1", '"never"'])
def test_max_connection_age_must_be_a_positive_number(tmp_path: Path, value: str) -> None:
    with pytest.raises(ValueError, match=r"max_connection_age_s: .* is not a positive number"):
        load_settings(config(tmp_path, f"max_connection_age_s = {value}\n"))
    assert load_settings(config(tmp_path, "max_connection_age_s = 60\n")).max_connection_age_s == 60
