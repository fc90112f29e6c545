"""`pop3d export --checkpoint CKPT --out DIR`: ONNX graphs + manifest.json."""

from __future__ import annotations

import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from pop3d_ros.cli_config import run_command


@dataclass
class ExportCommand:
    """A checkpoint as ONNX graphs (encoder, language head) + manifest.json, checked against
    PyTorch on random inputs and against TensorRT 10's ONNX op table."""

    checkpoint: str  # model checkpoint (.pt)
    out: str  # output directory
    verify: bool = True  # run the ONNX Runtime vs PyTorch parity check on random inputs
    strict_ops: bool = False  # fail (exit 1) when a graph uses ops TensorRT 10 cannot parse
    # also write this precision's graphs next to the fp32 ones: fp16 (*.fp16.onnx) or int8
    # Q/DQ (*.int8.onnx, needs --calib); an existing fp32 export in --out is reused
    precision: Literal["fp32", "fp16", "int8"] = "fp32"
    # int8: calibration frames from `pop3d calib-frames` (a directory of .npz files or a text
    # file listing them)
    calib: str = ""
    calib_limit: int = 64  # int8: use at most this many calibration frames


def main(argv=None) -> int:
    argv = sys.argv[2:] if argv is None else argv
    return run_command(ExportCommand, argv, "pop3d export", run)


def run(args: ExportCommand) -> int:
    from pop3d_ros.export.errors import DeploymentError
    from pop3d_ros.export.onnx_export import PARITY_ATOL
    from pop3d_ros.model.checkpoint import CheckpointError

    out = Path(args.out)
    if out.exists() and not out.is_dir():
        raise ValueError(f"{out}: exists and is not a directory")
    if args.precision == "int8" and not (args.calib and Path(args.calib).exists()):
        raise ValueError("--precision int8 needs --calib FRAMES (existing)")
    try:
        manifest = _fp32_export(args, out)
        if args.precision != "fp32":
            for graph, path in _variants(args, out, manifest).items():
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


def _fp32_export(args: ExportCommand, out: Path) -> dict:
    """The fp32 export in --out: reused when it is a verified export of this checkpoint."""
    from pop3d_ros.export.errors import DeploymentError
    from pop3d_ros.export.manifest import verify_export
    from pop3d_ros.export.onnx_export import export_checkpoint
    from pop3d_ros.model.checkpoint import checkpoint_sha256

    checkpoint = Path(args.checkpoint)
    if args.precision != "fp32" and (out / "manifest.json").is_file():
        try:
            manifest = verify_export(out, checkpoint_sha256(checkpoint))
            print(f"reusing the fp32 export in {out}")
            return manifest
        except DeploymentError as e:
            print(f"re-exporting: {e}")
    return export_checkpoint(checkpoint, out, verify=args.verify)


def _variants(args: ExportCommand, out: Path, manifest: dict) -> dict:
    from pop3d_ros.export.precision import ensure_fp16, quantize_export

    if args.precision == "fp16":
        return {
            g: ensure_fp16(out / manifest["graphs"][g]["file"])
            for g in ("encoder", "language_head")
        }
    from pop3d_ros.export.trt_builder import load_calibration_feeds

    names = [s["name"] for s in manifest["graphs"]["encoder"]["inputs"]]
    feeds = load_calibration_feeds(Path(args.calib), names, args.calib_limit)
    return quantize_export(out, feeds)
