"""``tokvec serve``: run the server (needs the ``server`` extra)."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path


def add_parser(commands: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    p = commands.add_parser(
        "serve", help="serve an encoder: a HuggingFace or ONNX folder, or a trained spaCy pipeline's"
    )
    p.add_argument(
        "--model",
        help="a HuggingFace folder, an ONNX export, or a spaCy pipeline (folder or package name) with a "
        "spacy-transformers 'transformer' or a 'tok2vec' component (default: the embedded all-MiniLM-L6-v2)",
    )
    p.add_argument("--address", help="HOST:PORT or unix:PATH (default 127.0.0.1:50051; port 0 picks one)")
    p.add_argument("--device", help="auto | cpu | cuda | cuda:N")
    p.add_argument("--dtype", help="compute dtype: auto | float32 | float16 | bfloat16")
    p.add_argument(
        "--backend",
        help="auto (default: what --model holds decides) | torch | onnx | tok2vec (--model: a spaCy pipeline name or folder) | fake (deterministic test model)",
    )
    p.add_argument("--quantize", choices=["int8"], help="int8 dynamic quantization (onnx backend, CPU)")
    p.add_argument(
        "--vectors",
        help="also serve a static vectors table (VectorsService): a folder made by tokvec init-vectors, or a spaCy pipeline",
    )
    p.add_argument("--config", type=Path, help="TOML settings file (command-line flags win)")
    p.add_argument("--token-file", help="require a bearer token from this file (one per line; rotation: several)")
    p.add_argument("--tls-cert", help="PEM certificate chain: serve TLS")
    p.add_argument("--tls-key", help="PEM private key for --tls-cert")
    p.add_argument("--tls-client-ca", help="PEM CA: require client certificates (mutual TLS)")
    p.add_argument(
        "--allow-insecure-token", action="store_true", default=None, help="allow tokens over plaintext off loopback"
    )
    p.add_argument("--metrics-address", help="HOST:PORT for a Prometheus /metrics endpoint")
    p.add_argument("--log-format", choices=["text", "json"], help="text (default) | json: one JSON object per log line")
    p.add_argument("--reflection", action="store_true", default=None, help="enable gRPC server reflection")
    p.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    from tokvec_server.settings import load_settings  # no torch: a bad setting fails in a blink

    try:
        settings = load_settings(
            args.config,
            server={
                "address": args.address,
                "metrics_address": args.metrics_address,
                "reflection": args.reflection,
                "vectors": args.vectors,
                "log_format": args.log_format,
            },
            security={
                "token_file": args.token_file,
                "tls_cert": args.tls_cert,
                "tls_key": args.tls_key,
                "tls_client_ca": args.tls_client_ca,
                "allow_insecure_token": args.allow_insecure_token,
            },
            model={
                "path": args.model,
                "device": args.device,
                "dtype": args.dtype,
                "backend": args.backend,
                "quantize": args.quantize,
            },
        )
    except (ValueError, OSError) as exc:
        print(f"tokvec serve: {exc}", file=sys.stderr)
        return 2
    try:
        # torch and the model code load only once the settings are known to be good.
        from tokvec_server.rpc.server import run as run_server
        from tokvec_server.runners import StartupError
    except ImportError as exc:
        print(f"tokvec serve: the server is not installed ({exc.name}); pip install 'tokvec[server]'", file=sys.stderr)
        return 2
    try:
        return run_server(settings)
    except (StartupError, ValueError, OSError) as exc:
        # One line naming the path or setting and the cause; no traceback (docs/reliability.md R7).
        print(f"tokvec serve: {exc}", file=sys.stderr)
        return 2
