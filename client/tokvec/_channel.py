"""Channel set-up shared by the sync and async clients: targets, retries, balancing, limits."""

from __future__ import annotations

import json
from typing import Sequence

# round_robin spreads calls over every address a target resolves to (dns:///, several ipv4
# addresses); calls that fail with UNAVAILABLE before any response are retried transparently.
SERVICE_CONFIG = json.dumps({
    "loadBalancingConfig": [{"round_robin": {}}],
    "methodConfig": [{
        "name": [{"service": "tokvec.v1.EmbedService"}],
        "retryPolicy": {
            "maxAttempts": 5,
            "initialBackoff": "0.1s",
            "maxBackoff": "2s",
            "backoffMultiplier": 2,
            "retryableStatusCodes": ["UNAVAILABLE"],
        },
    }],
})

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
