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
    parser.add_argument(
        "--precision",
        choices=("fp32", "fp16", "int8"),
        default="fp32",
        help="also write this precision's graphs next to the fp32 ones: fp16 (*.fp16.onnx) or "
        "int8 Q/DQ (*.int8.onnx, needs --calib); an existing fp32 export in --out is reused",
    )
    parser.add_argument(
        "--calib",
        type=Path,
        default=None,
        help="int8: calibration frames from `pop3d calib-frames` (a directory of .npz files "
        "or a text file listing them)",
    )
    parser.add_argument("--calib-limit", type=int, default=64, help="int8: use at most N frames")


def run(args: argparse.Namespace) -> int:
    from pop3d_ros.export.errors import DeploymentError
    from pop3d_ros.export.onnx_export import PARITY_ATOL
    from pop3d_ros.model.checkpoint import CheckpointError

    if args.out.exists() and not args.out.is_dir():
        print(f"pop3d export: error: {args.out}: exists and is not a directory", file=sys.stderr)
        return 2
    if args.precision == "int8" and (args.calib is None or not args.calib.exists()):
        print(
            "pop3d export: error: --precision int8 needs --calib FRAMES (existing)", file=sys.stderr
        )
        return 2
    try:
        manifest = _fp32_export(args)
        if args.precision != "fp32":
            for graph, path in _variants(args, manifest).items():
                print(f"{graph} ({args.precision}): {path}")
    except (DeploymentError, CheckpointError, ValueError) as e:
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


def _fp32_export(args) -> dict:
    """The fp32 export in --out: reused when it is a verified export of this checkpoint."""
    from pop3d_ros.export.errors import DeploymentError
    from pop3d_ros.export.manifest import verify_export
    from pop3d_ros.export.onnx_export import export_checkpoint
    from pop3d_ros.model.checkpoint import checkpoint_sha256

    if args.precision != "fp32" and (args.out / "manifest.json").is_file():
        try:
            manifest = verify_export(args.out, checkpoint_sha256(args.checkpoint))
            print(f"reusing the fp32 export in {args.out}")
            return manifest
        except DeploymentError as e:
            print(f"re-exporting: {e}")
    return export_checkpoint(args.checkpoint, args.out, verify=not args.no_verify)


def _variants(args, manifest: dict) -> dict:
    from pop3d_ros.export.precision import ensure_fp16, quantize_export

    if args.precision == "fp16":
        return {
            g: ensure_fp16(args.out / manifest["graphs"][g]["file"])
            for g in ("encoder", "language_head")
        }
    from pop3d_ros.export.trt_builder import load_calibration_feeds

    names = [s["name"] for s in manifest["graphs"]["encoder"]["inputs"]]
    feeds = load_calibration_feeds(args.calib, names, args.calib_limit)
    return quantize_export(args.out, feeds)
