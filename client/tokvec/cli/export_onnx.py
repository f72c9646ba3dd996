"""``tokvec export-onnx``: export a HuggingFace encoder for ``tokvec serve --backend onnx``
(needs the ``server`` extra)."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path


def add_parser(commands: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    p = commands.add_parser(
        "export-onnx",
        help="export a HuggingFace encoder folder (or a spaCy pipeline's transformer) to ONNX for --backend onnx",
        description="Export MODEL_DIR (a local HuggingFace encoder) into OUT_DIR: model.onnx with ORT's transformer fusions, "
        "the tokenizer and config files, and tokvec_onnx.json (source fingerprint, opset, IR version, fusions, quantization). "
        "Serve it with: tokvec serve --model OUT_DIR --backend onnx",
    )
    p.add_argument(
        "model_dir",
        type=Path,
        metavar="MODEL_DIR",
        help="a HuggingFace encoder folder, or a spaCy pipeline (folder or package name) with a spacy-transformers component",
    )
    p.add_argument("out_dir", type=Path, metavar="OUT_DIR", help="created, or replaced if it holds an earlier export")
    p.add_argument("--opset", type=int, default=None, help="ONNX opset, 14 to 20 (default 17)")
    p.add_argument(
        "--optimize",
        action=argparse.BooleanOptionalAction,
        default=True,
        help="apply ORT's transformer fusions (default: on)",
    )
    p.add_argument(
        "--quantize",
        choices=["int8"],
        default="",
        help="dynamic int8 weights, for CPU serving (changes the fingerprint)",
    )
    p.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    try:
        from tokvec_server.export import DEFAULT_OPSET, ExportError, export_onnx
    except ImportError as exc:
        print(
            f"tokvec export-onnx: the server is not installed ({exc.name}); pip install 'tokvec[server]'",
            file=sys.stderr,
        )
        return 2
    try:
        meta = export_onnx(
            args.model_dir,
            args.out_dir,
            opset=args.opset or DEFAULT_OPSET,
            optimize=args.optimize,
            quantize=args.quantize,
        )
    except (ExportError, OSError) as exc:
        print(f"tokvec export-onnx: {exc}", file=sys.stderr)
        return 2
    fused = ", ".join(f"{op} x{n}" for op, n in sorted(meta.fusions.items())) or "none"
    print(f"exported     {args.out_dir}")
    print(f"fingerprint  {meta.fingerprint}")
    print(f"opset        {meta.opset} (IR version {meta.ir_version})")
    print(f"fusions      {fused}")
    print(f"quantize     {meta.quantize or 'none (float32)'}")
    print(f"check        max |onnx - torch| = {meta.check_max_abs_diff:.1e} on a padded batch")
    return 0
