"""R12 connections: an abusive pinger gets GOAWAY too_many_pings; a frozen peer's connection and
its queued docs are dropped within 3 s under test keepalive settings; a second server on the same
port fails to start; a stream outlives its connection's max age."""

from __future__ import annotations

import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator

import pytest
from load import health, wait_until
from serving import ServerThread

import tokvec
from tokvec_server.settings import Batching, ModelSettings, Settings

# HTTP/2 (RFC 9113) frame types and the error code gRPC sends with too_many_pings.
SETTINGS, PING, GOAWAY = 0x4, 0x6, 0x7
ENHANCE_YOUR_CALM = 0xB
PREFACE = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"


def frame(kind: int, flags: int = 0, payload: bytes = b"", stream: int = 0) -> bytes:
    return len(payload).to_bytes(3, "big") + bytes([kind, flags]) + stream.to_bytes(4, "big") + payload


def read_frames(sock: socket.socket, frames: list[tuple[int, int, bytes]]) -> None:
    """Append (type, flags, payload) of every frame the server sends, until it closes."""
    buffer = b""
    while True:
        try:
            data = sock.recv(65536)
        except OSError:
            return
        if not data:
            return
        buffer += data
        while len(buffer) >= 9:
            length = int.from_bytes(buffer[:3], "big")
            if len(buffer) < 9 + length:
                break
            frames.append((buffer[3], buffer[4], buffer[9 : 9 + length]))
            buffer = buffer[9 + length :]


@pytest.fixture(scope="module")
def server() -> Iterator[ServerThread]:
    settings = Settings(
        models=(ModelSettings(backend="fake", batching=Batching(max_batch_items=512)),),
        keepalive_s=1.0,
        keepalive_timeout_s=1.0,  # test keepalive settings: a silent peer goes in ~2 s
    )
    server = ServerThread(settings)
    yield server
    server.stop()


def test_an_abusive_pinger_gets_goaway_too_many_pings(server: ServerThread) -> None:
    host, port = server.address.rsplit(":", 1)
    frames: list[tuple[int, int, bytes]] = []
    with socket.create_connection((host, int(port)), timeout=10) as sock:
        sock.sendall(PREFACE + frame(SETTINGS))
        reader = threading.Thread(target=read_frames, args=(sock, frames), daemon=True)
        reader.start()
        wait_until(lambda: any(f[0] == SETTINGS and not f[1] & 1 for f in frames), 5, "the server's SETTINGS")
        sock.sendall(frame(SETTINGS, flags=1))  # ACK
        started = time.monotonic()
        sent = 0
        try:
            # A ping every 10 ms with no call open; the server allows one per 5 s without data.
            while time.monotonic() - started < 10 and not any(f[0] == GOAWAY for f in frames):
                sock.sendall(frame(PING, payload=sent.to_bytes(8, "big")))
                sent += 1
                time.sleep(0.01)
        except OSError:  # the server closed the connection under us
            pass
        cut_off = time.monotonic() - started
        reader.join(5)
    goaways = [payload for kind, _, payload in frames if kind == GOAWAY]
    assert goaways, f"no GOAWAY after {sent} pings in {cut_off:.1f}s"
    error_code = int.from_bytes(goaways[0][4:8], "big")
    assert error_code == ENHANCE_YOUR_CALM and goaways[0][8:] == b"too_many_pings", goaways[0]
    assert cut_off < 5.0
    print(f"R12: abusive pinger cut off after {sent} pings, {cut_off:.2f}s")
    # Only the abuser was cut off.
    assert health(server.address) == "SERVING"
    with tokvec.Client(server.address, timeout=10) as client:
        assert client.embed([["still", "serving"]])[0].shape == (2, 384)


FROZEN_CLIENT = """
import sys, time, tokvec
docs = [{"words": ["zebra"] + ["gentle"] * 100, "spaces": [True] * 101, "id": str(i)} for i in range(100)]
results = tokvec.Client(sys.argv[1]).stream(docs, batch_size=100)
next(results)  # the first row is back: all 100 docs are queued
print("queued", flush=True)
time.sleep(3600)
"""


def test_a_frozen_peer_and_its_queued_docs_are_dropped(server: ServerThread) -> None:
    engine = server.server.engines[0]
    faults = server.runner.faults
    zebra = server.runner.tokenizer.convert_tokens_to_ids("zebra")
    dropped_before = engine.scheduler.dropped["cancelled"]
    faults.delay_s = 0.2  # 4 docs a batch: 100 docs would take 5 s
    peer = subprocess.Popen([sys.executable, "-c", FROZEN_CLIENT, server.address], stdout=subprocess.PIPE, text=True)
    try:
        assert peer.stdout is not None and peer.stdout.readline().strip() == "queued"
        # SIGSTOP: the kernel still ACKs TCP, but nothing answers HTTP/2 pings any more.
        peer.send_signal(signal.SIGSTOP)
        frozen = time.monotonic()
        took = wait_until(
            lambda: engine.scheduler.dropped["cancelled"] > dropped_before and engine.scheduler.queued == (0, 0),
            10,
            "the frozen peer's docs to leave the queue",
        )
        ran = sum(row.count(zebra) for row in list(faults.calls))
        time.sleep(1.0)
        ran_later = sum(row.count(zebra) for row in list(faults.calls))
    finally:
        faults.delay_s = 0.0
        peer.send_signal(signal.SIGCONT)
        peer.kill()
        peer.wait()
        assert peer.stdout is not None
        peer.stdout.close()
    print(f"R12: frozen peer dropped after {took:.2f}s; {ran} of its 100 docs ran before")
    assert time.monotonic() - frozen - 1.0 >= took
    assert took <= 3.0, f"dropped after {took:.2f}s"
    assert ran < 100 and ran_later == ran, (ran, ran_later)  # nothing of it ran after the drop
    assert health(server.address) == "SERVING"


def test_a_second_server_on_the_same_port_fails_to_start(server: ServerThread) -> None:
    done = subprocess.run(
        [sys.executable, "-m", "tokvec", "serve", "--backend", "fake", "--address", server.address],
        capture_output=True,
        text=True,
        timeout=120,
    )
    lines = [line for line in done.stderr.splitlines() if line.strip()]
    assert done.returncode != 0
    assert len(lines) == 1 and server.address in lines[0] and "cannot bind" in lines[0], done.stderr
    # The first server has the port to itself still.
    for _ in range(5):
        with tokvec.Client(server.address, timeout=10) as client:
            assert client.embed([["mine"]])[0].shape == (1, 384)


def test_a_stream_outlives_its_connections_max_age() -> None:
    """Past max_connection_age the server sends GOAWAY, so new calls go to a new connection (and,
    behind a balancer, a new replica), but the stream open on the old one runs on to its end."""
    settings = Settings(models=(ModelSettings(backend="fake"),), max_connection_age_s=0.5)
    server = ServerThread(settings)
    try:
        with tokvec.Client(server.address, timeout=30) as client:

            def paced() -> Iterator[list[str]]:
                for i in range(16):  # 4 s: eight times the connection's age
                    time.sleep(0.25)
                    yield ["still", "here", str(i)]

            rows = [result.rows.shape for result in client.stream(paced(), batch_size=1)]
            later = client.embed([["a", "new", "call"]])
    finally:
        server.stop()
    assert rows == [(3, 384)] * 16
    assert later[0].shape == (3, 384)
