"""R11 auth: bearer tokens from a file (several, for rotation), checked in constant time before any
parsing or queueing, never logged, health exempt; no token over plaintext off loopback unless told;
the TLS / mutual TLS matrix with throwaway certificates (trustme), an expired one included; a unix
socket created 0600."""

from __future__ import annotations

import datetime
import hmac
import os
import stat
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import grpc
import pytest
import trustme
from load import health
from serving import ServerProcess, ServerThread

import tokvec
from tokvec.v1 import tokvec_pb2 as pb
from tokvec_server.rpc import auth
from tokvec_server.settings import ModelSettings, Security, Settings

TOKENS = ["rotated-in-9f8e7d6c5b4a", "still-valid-0a1b2c3d4e5f"]
DOCS = [{"words": ["Hello", "world"], "spaces": [True, False]}]


def fake(security: Security) -> ServerThread:
    return ServerThread(Settings(models=(ModelSettings(backend="fake"),), security=security))


def code_of(address: str, credentials: tokvec.Credentials | None = None) -> str:
    """What an Info call gets: OK or the status code name."""
    try:
        with tokvec.Client(address, timeout=5, credentials=credentials) as client:
            client.info()
    except tokvec.ServerError as exc:
        return str(exc.code.name)
    return "OK"


@pytest.fixture(scope="module")
def token_file(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("auth") / "tokens"
    path.write_text(
        f"# tokvec tokens: the new one first, the old one until every client has moved\n{TOKENS[0]}\n\n{TOKENS[1]}\n"
    )
    return path


@pytest.fixture(scope="module")
def token_server(token_file: Path) -> Iterator[ServerThread]:
    server = fake(Security(token_file=str(token_file)))
    yield server
    server.stop()


@pytest.mark.parametrize(
    "token,expected",
    [
        (TOKENS[0], "OK"),
        (TOKENS[1], "OK"),  # rotation: both tokens of the file work at once
        (None, "UNAUTHENTICATED"),
        ("wrong", "UNAUTHENTICATED"),
        (TOKENS[0][:-1], "UNAUTHENTICATED"),  # a prefix of a token
        (TOKENS[0] + "x", "UNAUTHENTICATED"),
        ("", "UNAUTHENTICATED"),
    ],
)
def test_bearer_tokens(token_server: ServerThread, token: str | None, expected: str) -> None:
    credentials = tokvec.Credentials(token=token) if token is not None else None
    assert code_of(token_server.address, credentials) == expected


def test_health_is_exempt(token_server: ServerThread) -> None:
    assert health(token_server.address) == "SERVING"


def raw_call(address: str, method: str, payload: bytes, metadata: tuple[tuple[str, str], ...] = ()) -> str:
    with grpc.insecure_channel(address) as channel:
        call = channel.unary_stream(
            f"/tokvec.v1.EmbedService/{method}", request_serializer=None, response_deserializer=None
        )
        try:
            list(call(payload, timeout=5, metadata=metadata))
        except grpc.RpcError as exc:
            return str(exc.code().name)
    return "OK"


def test_denied_before_any_parsing_or_queueing(token_server: ServerThread) -> None:
    faults = token_server.runner.faults
    calls = len(faults.calls)
    corrupt = b"\xff\xff\xff\xff garbage that is no EmbedRequest"
    good = pb.EmbedRequest(docs=[pb.Doc(words=["Hello"], spaces=[False])]).SerializeToString()
    bearer = (("authorization", f"Bearer {TOKENS[0]}"),)
    # A corrupt message without a token is refused for the token, not for the bytes: never parsed.
    assert raw_call(token_server.address, "Embed", corrupt) == "UNAUTHENTICATED"
    assert raw_call(token_server.address, "Embed", corrupt, bearer) == "INVALID_ARGUMENT"  # control
    for _ in range(20):
        assert raw_call(token_server.address, "Embed", good) == "UNAUTHENTICATED"
    engine = token_server.server.engines[0]
    assert len(faults.calls) == calls and engine.scheduler.queued == (0, 0)
    assert raw_call(token_server.address, "Embed", good, bearer) == "OK"
    assert len(faults.calls) == calls + 1


def test_tokens_are_compared_in_constant_time(monkeypatch: pytest.MonkeyPatch) -> None:
    """Every request is compared with every token, with hmac.compare_digest, whichever matches:
    the time taken says nothing about how much of a token was right, nor which one matched."""
    tokens = [t.encode() for t in TOKENS] + [b"third-token"]
    compared: list[tuple[bytes, bytes]] = []
    real = hmac.compare_digest

    def counting(a: bytes, b: bytes) -> bool:
        compared.append((a, b))
        return real(a, b)

    monkeypatch.setattr(hmac, "compare_digest", counting)  # the module auth.py calls through
    check = auth.TokenAuth(tokens)
    for given, allowed in [(TOKENS[0], True), ("third-token", True), ("third-tokex", False), ("x", False)]:
        compared.clear()
        assert check._allowed((("authorization", f"Bearer {given}"),)) is allowed
        assert [b for _, b in compared] == tokens, given


def test_the_token_is_never_logged(tmp_path: Path, token_file: Path) -> None:
    server = ServerProcess("--backend", "fake", "--token-file", str(token_file))
    try:
        secrets = [TOKENS[0], "wrong-but-secret-7c6b5a"]
        for token in secrets:
            for credentials in (tokvec.Credentials(token=token),):
                with tokvec.Client(server.address, timeout=5, credentials=credentials) as client:
                    try:
                        client.embed_results([*DOCS, {"words": ["x"] * 20_000}])  # one bad doc: the server logs
                    except tokvec.ServerError as exc:
                        assert token not in str(exc) and exc.code == grpc.StatusCode.UNAUTHENTICATED
    finally:
        server.stop()
    output = "".join(server.lines)
    assert "tokvec: ready" in output
    for token in [*secrets, *TOKENS]:
        assert token not in output


def test_no_token_over_plaintext_off_loopback(token_file: Path) -> None:
    # The server refuses to start (R7 checks the line); told to, it serves.
    server = ServerProcess(
        "--backend", "fake", "--address", "0.0.0.0:0", "--token-file", str(token_file), "--allow-insecure-token"
    )
    try:
        port = server.address.rsplit(":", 1)[1]
        assert code_of(f"127.0.0.1:{port}", tokvec.Credentials(token=TOKENS[0])) == "OK"
    finally:
        assert server.stop() == 0
    # The client likewise: no token to a remote plaintext address unless told; TLS is fine.
    with pytest.raises(ValueError, match="plaintext"):
        tokvec.Client("10.1.2.3:50051", credentials=tokvec.Credentials(token="t"))
    with pytest.raises(ValueError, match="plaintext"):
        tokvec.AsyncClient(["10.1.2.3:50051", "127.0.0.1:50051"], credentials=tokvec.Credentials(token="t"))
    tokvec.Client("10.1.2.3:50051", credentials=tokvec.Credentials(token="t", allow_insecure_token=True))
    tokvec.Client("10.1.2.3:50051", credentials=tokvec.Credentials(token="t", tls=True))
    tokvec.Client("localhost:50051", credentials=tokvec.Credentials(token="t"))


# --- TLS and mutual TLS ------------------------------------------------------------------------


class Pki:
    """Throwaway CAs and certificates (trustme), written to files the server reads."""

    def __init__(self, folder: Path) -> None:
        self.folder = folder
        self.ca, self.client_ca, self.foreign_ca = trustme.CA(), trustme.CA(), trustme.CA()
        now = datetime.datetime.now(datetime.UTC)
        self.server = self.ca.issue_cert("127.0.0.1", "localhost")
        self.expired_server = self.ca.issue_cert(
            "127.0.0.1",
            "localhost",
            not_before=now - datetime.timedelta(days=30),
            not_after=now - datetime.timedelta(days=1),
        )
        self.client = self.client_ca.issue_cert("client@tokvec.test")
        self.expired_client = self.client_ca.issue_cert(
            "client@tokvec.test",
            not_before=now - datetime.timedelta(days=30),
            not_after=now - datetime.timedelta(days=1),
        )
        self.foreign_client = self.foreign_ca.issue_cert("client@tokvec.test")

    def files(self, name: str, leaf: Any) -> tuple[str, str]:
        cert, key = self.folder / f"{name}.pem", self.folder / f"{name}.key"
        cert.write_bytes(b"".join(b.bytes() for b in leaf.cert_chain_pems))
        key.write_bytes(leaf.private_key_pem.bytes())
        return str(cert), str(key)

    def ca_file(self, ca: trustme.CA, name: str) -> str:
        path = self.folder / f"{name}-ca.pem"
        path.write_bytes(ca.cert_pem.bytes())
        return str(path)

    def credentials(self, ca: trustme.CA | None = None, leaf: Any = None, **kw: Any) -> tokvec.Credentials:
        chain = b"".join(b.bytes() for b in leaf.cert_chain_pems) if leaf else None
        key = leaf.private_key_pem.bytes() if leaf else None
        return tokvec.Credentials(
            tls=True, root_certificates=(ca or self.ca).cert_pem.bytes(), client_cert=chain, client_key=key, **kw
        )


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> Pki:
    return Pki(tmp_path_factory.mktemp("pki"))


def test_tls(pki: Pki) -> None:
    cert, key = pki.files("server", pki.server)
    server = fake(Security(tls_cert=cert, tls_key=key))
    try:
        assert code_of(server.address, pki.credentials()) == "OK"
        assert code_of(server.address, pki.credentials(token="over-tls")) == "OK"  # no token file: ignored
        assert code_of(server.address) == "UNAVAILABLE"  # plaintext to a TLS port
        assert code_of(server.address, pki.credentials(ca=pki.foreign_ca)) == "UNAVAILABLE"  # wrong CA
        with tokvec.Client(server.address, credentials=pki.credentials()) as client:
            assert client.embed(DOCS)[0].shape == (2, 384)
    finally:
        server.stop()


def test_mutual_tls(pki: Pki) -> None:
    cert, key = pki.files("server", pki.server)
    server = fake(Security(tls_cert=cert, tls_key=key, tls_client_ca=pki.ca_file(pki.client_ca, "client")))
    try:
        assert code_of(server.address, pki.credentials(leaf=pki.client)) == "OK"
        assert code_of(server.address, pki.credentials()) == "UNAVAILABLE"  # no client certificate
        assert (
            code_of(server.address, pki.credentials(leaf=pki.foreign_client)) == "UNAVAILABLE"
        )  # signed by another CA
        assert code_of(server.address, pki.credentials(leaf=pki.expired_client)) == "UNAVAILABLE"
        assert code_of(server.address) == "UNAVAILABLE"  # plaintext
        assert code_of(server.address, pki.credentials(leaf=pki.client)) == "OK"  # still serving
    finally:
        server.stop()


def test_an_expired_server_certificate_is_refused(pki: Pki) -> None:
    cert, key = pki.files("expired", pki.expired_server)
    server = fake(Security(tls_cert=cert, tls_key=key))
    try:
        assert code_of(server.address, pki.credentials()) == "UNAVAILABLE"
    finally:
        server.stop()


def test_a_unix_socket_is_created_0600(tmp_path: Path) -> None:
    path = tmp_path / "tokvec.sock"
    old_umask = os.umask(0o000)  # the most permissive umask: the server must not rely on ours
    try:
        server = ServerProcess("--backend", "fake", "--address", f"unix:{path}")
    finally:
        os.umask(old_umask)
    try:
        assert server.address == f"unix:{path}"
        mode = path.stat().st_mode
        assert stat.S_ISSOCK(mode) and stat.S_IMODE(mode) == 0o600, oct(mode)
        with tokvec.Client(server.address, timeout=10) as client:
            assert client.embed(DOCS)[0].shape == (2, 384)
    finally:
        assert server.stop() == 0
