"""ONNX -> strongly typed TensorRT engine, valid on TensorRT 10.x and 11.x (lazily imported).

Uses only API present in both (`trt.Builder`, `create_network(1 << STRONGLY_TYPED)`,
`OnnxParser.parse_from_file`, `set_memory_pool_limit`, optimisation profiles,
`build_serialized_network`). Precision is a property of the ONNX graph (an fp16 graph or a
Q/DQ int8 graph, export.precision), never a builder flag: TensorRT 11 removed
`BuilderFlag.FP16/INT8`, `int8_calibrator`, `set_calibration_profile`, `platform_has_fast_*`
and the `IInt8*Calibrator` classes (weak typing, deprecated since 10.12; implicit int8
calibration deprecated since 10.1). The implicit calibrator this module once had is gone:
Q/DQ graphs build on every supported version, so it had no version left to serve.
A missing API is one TensorRTUnavailableError line. TensorRT cannot be installed in this
project's workplace; test_engine_builder_fake.py drives this code against recording
stand-ins of the 10.x and 11.x API surfaces.
"""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Annotated, Literal

import numpy as np
import tyro

from pop3d_ros.export.engine_cache import PRECISIONS, EngineKey
from pop3d_ros.export.errors import EngineError, TensorRTUnavailableError

Log = Callable[[str], None]
SUPPORTED_TENSORRT = "tensorrt>=10.0,<12"  # also the `tensorrt` extra in setup.py


def import_tensorrt():
    """The `tensorrt` module, or TensorRTUnavailableError with the import failure in one line."""
    try:
        import tensorrt as trt
    except Exception as e:  # ImportError, or OSError from missing libnvinfer
        raise TensorRTUnavailableError(None, f"TensorRT is not installed: {e}") from None
    if not hasattr(trt, "Builder"):
        # The PyPI stub packages install a module without the bindings.
        raise TensorRTUnavailableError(None, "TensorRT is not installed: stub package only")
    return trt


def gpu_identity() -> tuple[str, str]:
    """(GPU name, compute capability "major.minor") of CUDA device 0, via torch."""
    try:
        import torch

        if not torch.cuda.is_available():
            raise RuntimeError("torch.cuda.is_available() is False")
        major, minor = torch.cuda.get_device_capability(0)
        return torch.cuda.get_device_name(0), f"{major}.{minor}"
    except Exception as e:
        raise TensorRTUnavailableError(None, f"no usable CUDA GPU: {e}") from None


@dataclass
class BuildOptions:
    """How to build one engine."""

    precision: Literal["fp32", "fp16", "int8"] = "fp16"  # the precision the ONNX graph carries
    workspace_mib: int = 2048  # builder workspace memory pool limit (MiB)
    # input name -> (min, opt, max) shapes; required for every input with dynamic dims (set
    # per graph by the caller, so not a command-line option)
    profiles: Annotated[dict[str, tuple[tuple, tuple, tuple]], tyro.conf.Suppress] = field(
        default_factory=dict
    )
    progress_interval_s: float = 5.0  # seconds between "still building" log lines

    def __post_init__(self):
        if self.precision not in PRECISIONS:
            raise ValueError(f"precision must be one of {PRECISIONS}, got {self.precision!r}")
        if self.workspace_mib <= 0:
            raise ValueError(f"workspace_mib must be positive, got {self.workspace_mib}")
        if self.progress_interval_s <= 0:
            raise ValueError(
                f"progress_interval_s must be positive, got {self.progress_interval_s}"
            )
        for name, shapes in self.profiles.items():
            lo, opt, hi = (tuple(int(d) for d in s) for s in shapes)
            if not (len(lo) == len(opt) == len(hi)):
                raise ValueError(f"profile for '{name}': min/opt/max ranks differ")
            if not all(a <= b <= c for a, b, c in zip(lo, opt, hi, strict=True)):
                raise ValueError(f"profile for '{name}' needs min <= opt <= max, got {shapes}")
            self.profiles[name] = (lo, opt, hi)

    def profile_key(self) -> tuple:
        return tuple((n, *self.profiles[n]) for n in sorted(self.profiles))


def engine_key(onnx_sha256: str, options: BuildOptions) -> EngineKey:
    """The cache key for building `options` on this machine (needs TensorRT and a GPU)."""
    trt = import_tensorrt()
    gpu, cc = gpu_identity()
    return EngineKey(
        onnx_sha256, options.precision, trt.__version__, gpu, cc, options.profile_key()
    )


class ProgressLogger:
    """Logs "<what>: still building, N s" every `interval` seconds while a build runs.

    TensorRT's builder can run for minutes without a word; a thread keeps the log alive.
    """

    def __init__(self, what: str, interval_s: float = 5.0, log: Log = print):
        self.what, self.interval_s, self.log = what, interval_s, log
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="trt-build-progress", daemon=True)
        self.lines = 0

    def _run(self):
        t0 = time.monotonic()
        while not self._stop.wait(self.interval_s):
            self.lines += 1
            self.log(f"{self.what}: still building, {time.monotonic() - t0:.0f} s")

    def __enter__(self):
        self._t0 = time.monotonic()
        self._thread.start()
        return self

    def __exit__(self, *exc):
        self._stop.set()
        self._thread.join()
        self.log(f"{self.what}: finished in {time.monotonic() - self._t0:.1f} s")


def load_calibration_feeds(
    source: str | os.PathLike | Iterable, input_names: list[str], limit: int | None = None
) -> list[dict[str, np.ndarray]]:
    """Calibration frames from .npz files (one per frame, keys = graph input names).

    `source` is a directory of .npz files, a text file listing .npz paths (one per line,
    '#' comments), or an iterable of paths. Errors name the offending file.
    """
    if isinstance(source, (str, os.PathLike)):
        p = Path(source)
        if p.is_dir():
            paths = sorted(p.glob("*.npz"))
        elif p.is_file() and p.suffix != ".npz":
            lines = [ln.split("#", 1)[0].strip() for ln in p.read_text().splitlines()]
            paths = [(p.parent / ln) for ln in lines if ln]
        else:
            paths = [p]
    else:
        paths = [Path(x) for x in source]
    if limit is not None:
        paths = paths[:limit]
    if not paths:
        raise ValueError(f"{source}: no calibration frames (.npz) found")
    feeds = []
    for path in paths:
        try:
            with np.load(path) as data:
                arrays = {n: data[n] for n in data.files}
        except Exception as e:  # OSError, ValueError (pickles/garbage), BadZipFile
            raise ValueError(f"{path}: unreadable calibration frame ({e})") from None
        missing = [n for n in input_names if n not in arrays]
        if missing:
            raise ValueError(f"{path}: calibration frame lacks inputs {missing}")
        feeds.append({n: np.ascontiguousarray(arrays[n], dtype=np.float32) for n in input_names})
    return feeds


def _major(version: str) -> int:
    try:
        return int(str(version).split(".")[0])
    except ValueError:
        return 0


def network_flags(trt) -> int:
    """`create_network` flags of a strongly typed network on TensorRT 10.x and 11.x.

    10.x: strong typing is opt-in (`1 << STRONGLY_TYPED`); 11.x: always on, the flag is kept
    (deprecated, ignored), so passing it is right on both; should a later version drop the
    flag, 0 is the same network. Before 10.0 there is no strongly typed ONNX build here.
    """
    if _major(trt.__version__) < 10:
        raise TensorRTUnavailableError(
            None, f"TensorRT {trt.__version__} is too old: need {SUPPORTED_TENSORRT}"
        )
    flags = getattr(trt, "NetworkDefinitionCreationFlag", None)
    flag = getattr(flags, "STRONGLY_TYPED", None)
    if flag is not None:
        return 1 << int(flag)
    if _major(trt.__version__) >= 11:
        return 0  # strongly typed is the only mode
    raise TensorRTUnavailableError(
        None, f"TensorRT {trt.__version__} lacks NetworkDefinitionCreationFlag.STRONGLY_TYPED"
    )


def _require(obj, attrs: tuple[str, ...], what: str, version: str) -> None:
    missing = [a for a in attrs if not hasattr(obj, a)]
    if missing:
        raise TensorRTUnavailableError(
            None, f"TensorRT {version} lacks {what}.{'/'.join(missing)} (need {SUPPORTED_TENSORRT})"
        )


def graph_precision(onnx_path: Path) -> str:
    """The precision an ONNX file carries (its `export.precision` sidecar; none = fp32)."""
    from pop3d_ros.export.precision import read_variant_info

    return (read_variant_info(onnx_path) or {}).get("precision", "fp32")


def build_serialized_engine(
    onnx_path: str | os.PathLike, options: BuildOptions, log: Log = print
) -> bytes:
    """Parse an ONNX file and build a strongly typed serialized engine; EngineError or
    TensorRTUnavailableError (one line) on failure.

    The precision is the graph's: `options.precision` must name the precision of the file
    (fp32 `encoder.onnx`, fp16 `encoder.fp16.onnx`, Q/DQ int8 `encoder.int8.onnx`; see
    export.precision). No weak-typing flag is set (TensorRT 11 has none).
    """
    trt = import_tensorrt()
    onnx_path = Path(onnx_path)
    carried = graph_precision(onnx_path)
    if carried != options.precision:
        raise EngineError(
            onnx_path,
            f"this graph is {carried}, the build asks for {options.precision}: precision is a "
            "property of the ONNX (build the .fp16.onnx / .int8.onnx variant)",
        )
    _require(
        trt, ("Builder", "OnnxParser", "Logger", "MemoryPoolType"), "tensorrt", trt.__version__
    )
    logger = trt.Logger(trt.Logger.WARNING)
    builder = trt.Builder(logger)
    network = builder.create_network(network_flags(trt))
    parser = trt.OnnxParser(network, logger)
    _require(parser, ("parse_from_file",), "OnnxParser", trt.__version__)
    # From the file, not bytes: ONNX with external weights resolves them next to the file.
    if not parser.parse_from_file(os.fspath(onnx_path)):
        errors = "; ".join(str(parser.get_error(i)) for i in range(parser.num_errors))
        raise EngineError(onnx_path, f"TensorRT ONNX parser failed: {errors or 'no details'}")

    config = builder.create_builder_config()
    _require(config, ("set_memory_pool_limit", "add_optimization_profile"), "IBuilderConfig",
             trt.__version__)  # fmt: skip
    config.set_memory_pool_limit(trt.MemoryPoolType.WORKSPACE, options.workspace_mib << 20)

    profile = None
    for i in range(network.num_inputs):
        tensor = network.get_input(i)
        dynamic = any(d < 0 for d in tensor.shape)
        if tensor.name in options.profiles:
            lo, _opt, hi = options.profiles[tensor.name]
            if len(lo) != len(tensor.shape) or any(
                d >= 0 and not (a <= d <= b) for d, a, b in zip(tensor.shape, lo, hi, strict=True)
            ):
                raise EngineError(
                    onnx_path,
                    f"profile for '{tensor.name}' {options.profiles[tensor.name]} does not fit "
                    f"the input's shape {tuple(tensor.shape)}",
                )
            profile = profile or builder.create_optimization_profile()
            profile.set_shape(tensor.name, *options.profiles[tensor.name])
        elif dynamic:
            raise EngineError(
                onnx_path,
                f"input '{tensor.name}' has dynamic shape {tuple(tensor.shape)} "
                "but no optimisation profile was given",
            )
    if profile is not None:
        config.add_optimization_profile(profile)

    with ProgressLogger(
        f"{onnx_path.name} ({options.precision})", options.progress_interval_s, log
    ):
        serialized = builder.build_serialized_network(network, config)
    if serialized is None:
        raise EngineError(onnx_path, "TensorRT build failed (see the TensorRT log above)")
    return bytes(serialized)
