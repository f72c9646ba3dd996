"""Channel set-up shared by the sync and async clients: targets, retries, balancing, limits."""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import grpc

# round_robin spreads calls over every address a target resolves to (dns:///, several ipv4
# addresses); Info and Tokenize calls that fail with UNAVAILABLE are retried with backoff.
# Embed and EmbedStream are not: with a retry policy, grpcio's (1.85) threaded client never
# returns from a streaming call whose server dies under it, whatever its deadline (docs/reliability.md
# R6, R13). Client.embed resends an Embed itself (RETRY_PAUSES); a stream's UNAVAILABLE reaches
# the caller, who knows which docs to send again.
SERVICE_CONFIG = json.dumps(
    {
        "loadBalancingConfig": [{"round_robin": {}}],
        "methodConfig": [
            {
                "name": [
                    {"service": "tokvec.v1.EmbedService", "method": "Info"},
                    {"service": "tokvec.v1.EmbedService", "method": "Tokenize"},
                ],
                "retryPolicy": {
                    "maxAttempts": 5,
                    "initialBackoff": "0.1s",
                    "maxBackoff": "2s",
                    "backoffMultiplier": 2,
                    "retryableStatusCodes": ["UNAVAILABLE"],
                },
            }
        ],
    }
)

# The service whose health says the server is ready (the server sets it SERVING after warmup).
SERVICE = "tokvec.v1.EmbedService"

# Client.embed resends a whole Embed cut short by UNAVAILABLE after each of these pauses (seconds).
RETRY_PAUSES = (0.1, 0.3, 1.0, 2.0)

OPTIONS = [
    ("grpc.service_config", SERVICE_CONFIG),
    ("grpc.enable_retries", 1),
    ("grpc.max_receive_message_length", 8 * 1024 * 1024),
    ("grpc.max_send_message_length", 16 * 1024 * 1024),
    ("grpc.keepalive_time_ms", 60_000),
    ("grpc.keepalive_timeout_ms", 20_000),
]


def target(address: str | Sequence[str]) -> str:
    """One gRPC target for an address or a list of ``host:port`` addresses (balanced over)."""
    if isinstance(address, str):
        return address
    addresses = list(address)
    if len(addresses) == 1:
        return addresses[0]
    if any(":" not in a or a.startswith(("unix:", "dns:", "ipv4:", "ipv6:")) for a in addresses):
        raise ValueError(f"address: several addresses must each be host:port, got {addresses!r}")
    return "ipv4:" + ",".join(addresses)


@dataclass(frozen=True)
class Credentials:
    """How to reach a server: a bearer token and/or TLS (mutual when a client cert is given)."""

    token: str | None = None
    tls: bool = False
    root_certificates: bytes | None = None  # PEM CA; None = the system roots
    client_cert: bytes | None = None  # PEM chain + key: mutual TLS
    client_key: bytes | None = None
    allow_insecure_token: bool = False  # send a token over plaintext off loopback

    @property
    def secure(self) -> bool:
        return self.tls or self.root_certificates is not None or self.client_cert is not None

    def metadata(self) -> tuple[tuple[str, str], ...]:
        return (("authorization", f"Bearer {self.token}"),) if self.token else ()

    def check(self, target: str) -> None:
        if self.token and not self.secure and not self.allow_insecure_token and not is_local(target):
            raise ValueError(
                f"token: refusing to send a bearer token over plaintext to {target}; use tls=True or allow_insecure_token=True"
            )

    def channel_credentials(self) -> grpc.ChannelCredentials:
        return grpc.ssl_channel_credentials(self.root_certificates, self.client_key, self.client_cert)


def is_local(target: str) -> bool:
    if target.startswith(("unix:", "unix-abstract:")):
        return True
    hosts = target.removeprefix("ipv4:").removeprefix("dns:///").split(",")
    return all(h.rsplit(":", 1)[0].strip("[]") in ("localhost", "::1") or h.startswith("127.") for h in hosts)


def open_channel(target: str, credentials: Credentials, aio: bool) -> Any:
    module = grpc.aio if aio else grpc
    if credentials.secure:
        return module.secure_channel(target, credentials.channel_credentials(), options=OPTIONS)
    return module.insecure_channel(target, options=OPTIONS)
