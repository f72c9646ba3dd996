"""``tokvec info``: what a server serves and its limits."""

from __future__ import annotations

import argparse
import sys

from tokvec.client import Client
from tokvec.errors import TokvecError


def add_parser(commands: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    p = commands.add_parser("info", help="show a server's model, fingerprint and limits")
    p.add_argument("--server", default="127.0.0.1:50051", help="HOST:PORT, unix:PATH or dns:///NAME:PORT")
    p.add_argument("--timeout", type=float, default=10.0)
    p.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    try:
        with Client(args.server, timeout=args.timeout) as client:
            info = client.info()
    except TokvecError as exc:
        print(f"tokvec info: {exc}", file=sys.stderr)
        return 1
    print(f"server       {args.server} (tokvec {info.version})")
    for m in info.models:
        print(f"model        {m.name}{' (default)' if m.is_default else ''}")
        if m.pipeline:
            print(f"pipeline     {m.pipeline} (component {m.component})")
        print(f"fingerprint  {m.fingerprint}")
        print(f"width        {m.width}")
        print(f"max length   {m.max_length} pieces")
        print(f"layers       {m.n_layers}")
        print(f"backend      {m.backend} on {m.device}, {m.dtype}")
    print("limits       " + ", ".join(f"{k}={v}" for k, v in info.limits.items()))
    return 0
