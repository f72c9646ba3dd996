"""The ``tokvec`` command: serve, embed, info, init-vectors, export-onnx, split."""

from __future__ import annotations

import argparse
import sys

from tokvec.cli import embed, export_onnx, info, init_vectors, serve, split


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="tokvec", description="Per-token embeddings from a shared transformer server."
    )
    commands = parser.add_subparsers(dest="command", required=True)
    for module in (serve, embed, info, init_vectors, export_onnx, split):
        module.add_parser(commands)
    args = parser.parse_args(argv)
    code: int = args.run(args)
    return code


if __name__ == "__main__":
    sys.exit(main())
