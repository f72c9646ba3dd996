"""``tokvec split PIPELINE OUT --address ADDR``: a trained pipeline, its shared encoder moved onto
a tokvec server (needs the ``spacy`` extra; not torch, nor spacy-transformers)."""

from __future__ import annotations

import argparse
import sys


def add_parser(commands: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    p = commands.add_parser(
        "split",
        help="copy a trained spaCy pipeline so that its transformer (or shared tok2vec) is read from a tokvec server",
        description="Writes OUT: PIPELINE with its `transformer` (or shared `tok2vec`) component replaced by tokvec_transformer "
        "and every listener by tokvec.RemoteListener.v1 (keeping its pooling); every other component and weight unchanged. "
        "The server at --address must serve PIPELINE's encoder (tokvec serve --model PIPELINE): its fingerprint is stored.",
    )
    p.add_argument("pipeline", metavar="PIPELINE", help="a pipeline folder or an installed pipeline package name")
    p.add_argument("out", metavar="OUT", help="the folder to write (must not exist)")
    p.add_argument("--address", required=True, action="append", help="HOST:PORT of the server (repeat for replicas)")
    p.add_argument("--model", default="", help="the served model's name, when the server serves several")
    p.add_argument("--timeout", type=float, default=60.0)
    p.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    try:
        from tokvec.spacy.split import split
    except ImportError as exc:
        print(f"tokvec split: spaCy is not installed ({exc.name}); pip install 'tokvec[spacy]'", file=sys.stderr)
        return 2
    from tokvec.errors import TokvecError

    address = args.address[0] if len(args.address) == 1 else args.address
    try:
        done = split(args.pipeline, args.out, address, model=args.model, timeout=args.timeout)
    except TokvecError as exc:
        print(f"tokvec split: {exc}", file=sys.stderr)
        return 1
    p = done.plan
    print(f"tokvec split: wrote {done.out}")
    print(
        f"  {p.source}: {p.factory} -> tokvec_transformer (spans {p.spans}, model {done.fingerprint}, width {done.width})"
    )
    for listener in p.listeners:
        print(
            f"  {listener.setting}: {listener.architecture} -> tokvec.RemoteListener.v1"
            + (f" (pooling {listener.pooling})" if listener.pooling else "")
        )
    return 0
