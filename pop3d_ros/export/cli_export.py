"""`pop3d export --checkpoint CKPT --out DIR`: ONNX graphs + manifest.json."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--checkpoint", required=True, type=Path, help="model checkpoint (.pt)")
    parser.add_argument("--out", required=True, type=Path, help="output directory")
    parser.add_argument(
        "--no-verify",
        action="store_true",
        help="skip the ONNX Runtime vs PyTorch parity run on random inputs",
    )
    parser.add_argument(
        "--strict-ops",
        action="store_true",
        help="fail (exit 1) when a graph uses ops the TensorRT 10 ONNX parser does not support",
    )


def run(args: argparse.Namespace) -> int:
    from pop3d_ros.export.errors import DeploymentError
    from pop3d_ros.export.onnx_export import PARITY_ATOL, export_checkpoint
    from pop3d_ros.model.checkpoint import CheckpointError

    if args.out.exists() and not args.out.is_dir():
        print(f"pop3d export: error: {args.out}: exists and is not a directory", file=sys.stderr)
        return 2
    try:
        manifest = export_checkpoint(args.checkpoint, args.out, verify=not args.no_verify)
    except (DeploymentError, CheckpointError) as e:
        print(f"pop3d export: error: {e}", file=sys.stderr)
        return 1
    for g in manifest["graphs"].values():
        ins = ", ".join(f"{s['name']}{tuple(s['shape'])}" for s in g["inputs"])
        print(f"{g['file']}: sha256 {g['sha256'][:16]}..  inputs {ins}")
    bad = {k: v for k, v in manifest["tensorrt_op_check"]["unsupported"].items() if v}
    status = 0
    if bad:
        print(f"TensorRT op check: unsupported {bad}", file=sys.stderr)
        status = 1 if args.strict_ops else 0
    else:
        print(f"TensorRT op check ({manifest['tensorrt_op_check']['table']}): all ops supported")
    errors = manifest.get("parity_max_abs_error")
    if errors and max(errors.values()) > PARITY_ATOL * 10:
        print(f"pop3d export: error: ORT/torch parity failed {errors}", file=sys.stderr)
        status = 1
    return status
