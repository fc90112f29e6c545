"""`pop3d build-engine`: ONNX export -> strongly typed TensorRT engines in the cache.

The precision is the graph's (export.precision): fp16 builds `*.fp16.onnx` (converted on
demand), int8 builds the Q/DQ `*.int8.onnx` (quantized here from `--calib` frames when the
export has none yet). Options come from `BuildEngineCommand` (tyro; `--build.*` is
`BuildOptions`). Arguments are checked before TensorRT is imported, so mistakes get a one-line
error (exit 2) on any machine; without TensorRT the command ends with one line saying so
(exit 1).
"""

from __future__ import annotations

import dataclasses
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

from pop3d_ros.cli_config import run_command
from pop3d_ros.export.trt_builder import BuildOptions

GRAPHS = ("encoder", "language_head")


@dataclass
class BuildEngineCommand:
    """ONNX export -> strongly typed TensorRT engines in the cache, from --checkpoint (exported
    first) or --onnx_dir. The precision is the graph's: fp16 builds *.fp16.onnx, int8 the Q/DQ
    *.int8.onnx (quantized from --calib frames when the export has none yet)."""

    checkpoint: str = ""  # checkpoint (.pt); exported to the cache first (this or --onnx_dir)
    onnx_dir: str = ""  # a directory written by `pop3d export` (this or --checkpoint)
    cache_dir: str = ""  # export/engine cache ("" = ~/.cache/pop3d_ros)
    graphs: tuple[Literal["encoder", "language_head"], ...] = GRAPHS  # graphs to build
    build: BuildOptions = field(default_factory=BuildOptions)
    lang_min: int = 1  # language head profile: smallest voxel count N
    lang_opt: int = 4096  # language head profile: the N the builder tunes for
    lang_max: int = 0  # language head profile: largest N (0 = all voxels of the grid)
    # int8: calibration frames (`pop3d calib-frames`: .npz per frame with the encoder's
    # inputs), a directory or a text file listing them; used to write the Q/DQ graph when the
    # export has none
    calib: str = ""
    calib_limit: int = 64  # int8: use at most this many calibration frames
    build_only: bool = False  # build (or validate cached) engines and exit, no test inference


def main(argv=None) -> int:
    argv = sys.argv[2:] if argv is None else argv
    return run_command(BuildEngineCommand, argv, "pop3d build-engine", _checked)


def _fail(msg: str, code: int = 1) -> int:
    print(f"pop3d build-engine: error: {msg}", file=sys.stderr)
    return code


def _check_args(args: BuildEngineCommand) -> None:
    """Mistakes are found before TensorRT is imported, so they read the same on any machine."""
    if bool(args.checkpoint) == bool(args.onnx_dir):
        raise ValueError("give exactly one of --checkpoint and --onnx_dir")
    if not args.graphs:
        raise ValueError(f"--graphs must name some of {', '.join(GRAPHS)}")
    if args.lang_min < 1 or args.lang_opt < args.lang_min:
        raise ValueError(
            f"need 1 <= --lang_min <= --lang_opt, got {args.lang_min}, {args.lang_opt}"
        )
    if args.lang_max and args.lang_max < args.lang_opt:
        raise ValueError(f"need --lang_opt <= --lang_max, got {args.lang_opt} > {args.lang_max}")
    if args.calib and not Path(args.calib).exists():
        raise ValueError(f"{args.calib}: calibration frames not found")
    if args.onnx_dir and not Path(args.onnx_dir).is_dir():
        raise ValueError(f"{args.onnx_dir}: not a directory")
    if args.checkpoint and not Path(args.checkpoint).is_file():
        raise ValueError(f"{args.checkpoint}: checkpoint file not found")


def _checked(args: BuildEngineCommand) -> int:
    _check_args(args)  # a ValueError here is exit code 2 (run_command)
    from pop3d_ros.export.errors import DeploymentError
    from pop3d_ros.model.checkpoint import CheckpointError

    try:
        return _run(args)
    except (DeploymentError, CheckpointError, ValueError) as e:
        return _fail(" ".join(str(e).split()))


def _run(args) -> int:
    from pop3d_ros.export.engine_cache import ensure_engine
    from pop3d_ros.export.hashing import sha256_file
    from pop3d_ros.export.manifest import verify_export
    from pop3d_ros.export.precision import quantize_export, resolve_variant, variant_problem
    from pop3d_ros.export.runtime import default_cache_dir, ensure_export
    from pop3d_ros.export.trt_builder import (
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
    if args.checkpoint:
        checkpoint = Path(args.checkpoint)
        cfg = ModelConfig.from_dict(read_checkpoint(checkpoint)["config"])
        cache = Path(args.cache_dir) if args.cache_dir else default_cache_dir()
        export_dir, manifest = ensure_export(checkpoint, checkpoint_sha256(checkpoint), cfg, cache)
    else:
        export_dir = Path(args.onnx_dir)
        manifest = verify_export(export_dir)
        cfg = ModelConfig.from_dict(manifest["model_config"])
    c_v, n_vox = cfg.decoder.voxel_channels, cfg.voxel_grid.num_voxels
    lang_max = args.lang_max or n_vox
    lang_opt = min(args.lang_opt, lang_max)
    files = [export_dir / manifest["graphs"][g]["file"] for g in GRAPHS]
    precision = args.build.precision
    if precision == "int8" and any(variant_problem(f, "int8") for f in files):
        if not args.calib:
            return _fail(
                f"{export_dir}: no int8 (Q/DQ) graphs yet: give --calib FRAMES "
                "(from `pop3d calib-frames`) to write them"
            )
        names = [s["name"] for s in manifest["graphs"]["encoder"]["inputs"]]
        feeds = load_calibration_feeds(Path(args.calib), names, args.calib_limit)
        quantize_export(export_dir, feeds)
    engines = {}
    for graph in dict.fromkeys(args.graphs):
        onnx_path = resolve_variant(export_dir / manifest["graphs"][graph]["file"], precision)
        profiles = {}
        if graph == "language_head":
            profiles = {"voxel_features": ((args.lang_min, c_v), (lang_opt, c_v), (lang_max, c_v))}
        options = dataclasses.replace(args.build, profiles=profiles)
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
