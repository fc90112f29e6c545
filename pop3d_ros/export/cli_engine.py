"""`pop3d build-engine`: ONNX export -> strongly typed TensorRT engines in the cache.

The precision is the graph's (export.precision): fp16 builds `*.fp16.onnx` (converted on
demand), int8 builds the Q/DQ `*.int8.onnx` (quantized here from `--calib` frames when the
export has none yet). Arguments are checked before TensorRT is imported, so mistakes get an
argparse-style error on any machine; without TensorRT the command ends with one line saying
so (exit 1).
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

GRAPHS = ("encoder", "language_head")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    src = parser.add_mutually_exclusive_group(required=True)
    src.add_argument("--checkpoint", type=Path, help="checkpoint; exported to the cache first")
    src.add_argument("--onnx-dir", type=Path, help="a directory written by `pop3d export`")
    parser.add_argument(
        "--cache-dir", type=Path, default=None, help="export/engine cache (~/.cache/pop3d_ros)"
    )
    parser.add_argument("--precision", choices=("fp32", "fp16", "int8"), default="fp16")
    parser.add_argument("--workspace-mib", type=int, default=2048, help="builder workspace")
    parser.add_argument("--graphs", default=",".join(GRAPHS), help="comma list of graphs")
    parser.add_argument("--lang-min", type=int, default=1, help="language head profile min N")
    parser.add_argument("--lang-opt", type=int, default=4096, help="language head profile opt N")
    parser.add_argument(
        "--lang-max", type=int, default=0, help="language head profile max N (0 = all voxels)"
    )
    parser.add_argument(
        "--calib",
        type=Path,
        default=None,
        help="int8: calibration frames (`pop3d calib-frames`: .npz per frame with the encoder's "
        "inputs), a directory or a text file listing them; used to write the Q/DQ graph when "
        "the export has none",
    )
    parser.add_argument("--calib-limit", type=int, default=64, help="int8: at most this many")
    parser.add_argument(
        "--progress-interval", type=float, default=5.0, help="seconds between progress lines"
    )
    parser.add_argument(
        "--build-only",
        action="store_true",
        help="build (or validate cached) engines and exit, without a test inference",
    )


def _fail(msg: str, code: int = 1) -> int:
    print(f"pop3d build-engine: error: {msg}", file=sys.stderr)
    return code


def _check_args(args) -> str | None:
    graphs = [g.strip() for g in args.graphs.split(",") if g.strip()]
    unknown = [g for g in graphs if g not in GRAPHS]
    if not graphs or unknown:
        return f"--graphs must name some of {', '.join(GRAPHS)}, got {args.graphs!r}"
    if args.workspace_mib <= 0:
        return f"--workspace-mib must be positive, got {args.workspace_mib}"
    if args.lang_min < 1 or args.lang_opt < args.lang_min:
        return f"need 1 <= --lang-min <= --lang-opt, got {args.lang_min}, {args.lang_opt}"
    if args.lang_max and args.lang_max < args.lang_opt:
        return f"need --lang-opt <= --lang-max, got {args.lang_opt} > {args.lang_max}"
    if args.calib is not None and not args.calib.exists():
        return f"{args.calib}: calibration frames not found"
    if args.onnx_dir is not None and not args.onnx_dir.is_dir():
        return f"{args.onnx_dir}: not a directory"
    if args.checkpoint is not None and not args.checkpoint.is_file():
        return f"{args.checkpoint}: checkpoint file not found"
    if args.progress_interval <= 0:
        return "--progress-interval must be positive"
    args.graphs = graphs
    return None


def run(args: argparse.Namespace) -> int:
    problem = _check_args(args)
    if problem:
        return _fail(problem, 2)
    from pop3d_ros.export.errors import DeploymentError
    from pop3d_ros.model.checkpoint import CheckpointError

    try:
        return _run(args)
    except (DeploymentError, CheckpointError, ValueError) as e:
        return _fail(str(e))


def _run(args) -> int:
    from pop3d_ros.export.engine_cache import ensure_engine
    from pop3d_ros.export.hashing import sha256_file
    from pop3d_ros.export.manifest import verify_export
    from pop3d_ros.export.precision import quantize_export, resolve_variant, variant_problem
    from pop3d_ros.export.runtime import default_cache_dir, ensure_export
    from pop3d_ros.export.trt_builder import (
        BuildOptions,
        build_serialized_engine,
        engine_key,
        gpu_identity,
        import_tensorrt,
        load_calibration_feeds,
    )
    from pop3d_ros.model.checkpoint import checkpoint_sha256, read_checkpoint
    from pop3d_ros.model.config import ModelConfig

    # Fail fast, before a possibly long export, where engines cannot be built at all.
    import_tensorrt()
    gpu_identity()
    if args.checkpoint is not None:
        cfg = ModelConfig.from_dict(read_checkpoint(args.checkpoint)["config"])
        cache = args.cache_dir or default_cache_dir()
        export_dir, manifest = ensure_export(
            args.checkpoint, checkpoint_sha256(args.checkpoint), cfg, cache
        )
    else:
        export_dir = args.onnx_dir
        manifest = verify_export(export_dir)
        cfg = ModelConfig.from_dict(manifest["model_config"])
    c_v, n_vox = cfg.decoder.voxel_channels, cfg.voxel_grid.num_voxels
    lang_max = args.lang_max or n_vox
    lang_opt = min(args.lang_opt, lang_max)
    files = [export_dir / manifest["graphs"][g]["file"] for g in GRAPHS]
    if args.precision == "int8" and any(variant_problem(f, "int8") for f in files):
        if args.calib is None:
            return _fail(
                f"{export_dir}: no int8 (Q/DQ) graphs yet: give --calib FRAMES "
                "(from `pop3d calib-frames`) to write them"
            )
        names = [s["name"] for s in manifest["graphs"]["encoder"]["inputs"]]
        quantize_export(export_dir, load_calibration_feeds(args.calib, names, args.calib_limit))
    engines = {}
    for graph in args.graphs:
        onnx_path = resolve_variant(export_dir / manifest["graphs"][graph]["file"], args.precision)
        profiles = {}
        if graph == "language_head":
            profiles = {"voxel_features": ((args.lang_min, c_v), (lang_opt, c_v), (lang_max, c_v))}
        options = BuildOptions(
            precision=args.precision,
            workspace_mib=args.workspace_mib,
            profiles=profiles,
            progress_interval_s=args.progress_interval,
        )
        key = engine_key(sha256_file(onnx_path), options)
        engine_dir = export_dir / "engines"
        engines[graph] = (
            ensure_engine(
                engine_dir, graph, key, lambda p=onnx_path, o=options: build_serialized_engine(p, o)
            ),
            key,
        )
        print(f"{graph}: {engines[graph][0]}")
    if args.build_only:
        return 0
    import numpy as np

    from pop3d_ros.export.backends.trt_backend import TrtBackend
    from pop3d_ros.export.onnx_export import example_inputs

    rng = np.random.default_rng(0)
    for graph, (path, key) in engines.items():
        with TrtBackend(path, key) as backend:
            feed = (
                example_inputs(cfg)
                if graph == "encoder"
                else {"voxel_features": rng.standard_normal((lang_opt, c_v), dtype=np.float32)}
            )
            backend.infer(feed)  # warm-up
            t0 = time.perf_counter()
            backend.infer(feed)
            print(f"{graph}: test inference OK, {1e3 * (time.perf_counter() - t0):.2f} ms")
    return 0
