"""ONNX -> TensorRT engine with the TensorRT 10 Python API (lazily imported).

Written to the documented TensorRT 10 API (`trt.Builder`, `create_network(0)` — explicit
batch is the only mode in 10.x —, `trt.OnnxParser`, `set_memory_pool_limit`,
`BuilderFlag.FP16/INT8`, `IInt8EntropyCalibrator2`, optimisation profiles,
`build_serialized_network`). TensorRT cannot be installed in this project's workplace, so
this path is not executed by CI; the logic around it (options, calibration feeds, progress
thread, cache) is tested without the library.
"""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from pop3d_ros.export.engine_cache import PRECISIONS, EngineKey
from pop3d_ros.export.errors import EngineError, TensorRTUnavailableError

Log = Callable[[str], None]


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

    precision: str = "fp16"  # fp32 | fp16 | int8 (int8 also enables fp16 fallback)
    workspace_mib: int = 2048  # builder workspace memory pool limit
    # input name -> (min, opt, max) shapes; required for every input with dynamic dims
    profiles: dict[str, tuple[tuple, tuple, tuple]] = field(default_factory=dict)
    # int8 only: feeds for calibration (each a dict input name -> array with the opt shape)
    calibration_feeds: list[dict[str, np.ndarray]] = field(default_factory=list)
    calibration_cache: Path | None = None  # int8 only: read if present, written after
    progress_interval_s: float = 5.0  # seconds between "still building" log lines

    def __post_init__(self):
        if self.precision not in PRECISIONS:
            raise ValueError(f"precision must be one of {PRECISIONS}, got {self.precision!r}")
        if self.workspace_mib <= 0:
            raise ValueError(f"workspace must be positive, got {self.workspace_mib} MiB")
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


def _make_calibrator(trt, feeds: list[dict[str, np.ndarray]], cache_path: Path | None, log: Log):
    """An IInt8EntropyCalibrator2 fed from host arrays through torch CUDA tensors."""
    import torch

    class _Calibrator(trt.IInt8EntropyCalibrator2):
        def __init__(self):
            trt.IInt8EntropyCalibrator2.__init__(self)  # required by the pybind11 trampoline
            self._feeds = iter(feeds)
            self._device: dict[str, torch.Tensor] = {}  # kept alive while TRT reads them
            self._count = 0

        def get_batch_size(self):
            return 1  # explicit-batch networks: the batch is part of the input shapes

        def get_batch(self, names):
            feed = next(self._feeds, None)
            if feed is None:
                return None
            self._count += 1
            if self._count % 10 == 1:
                log(f"int8 calibration: frame {self._count}/{len(feeds)}")
            self._device = {n: torch.from_numpy(feed[n]).cuda() for n in names}
            return [int(self._device[n].data_ptr()) for n in names]

        def read_calibration_cache(self):
            if cache_path is not None and cache_path.is_file():
                log(f"int8 calibration: reusing cache {cache_path}")
                return cache_path.read_bytes()
            return None

        def write_calibration_cache(self, cache):
            if cache_path is not None:
                cache_path.parent.mkdir(parents=True, exist_ok=True)
                cache_path.write_bytes(bytes(cache))
                log(f"int8 calibration: cache written to {cache_path}")

    return _Calibrator()


def build_serialized_engine(
    onnx_path: str | os.PathLike, options: BuildOptions, log: Log = print
) -> bytes:
    """Parse an ONNX file and build a serialized engine; EngineError (one line) on failure."""
    trt = import_tensorrt()
    onnx_path = Path(onnx_path)
    logger = trt.Logger(trt.Logger.WARNING)
    builder = trt.Builder(logger)
    network = builder.create_network(0)
    parser = trt.OnnxParser(network, logger)
    if not parser.parse(onnx_path.read_bytes()):
        errors = "; ".join(str(parser.get_error(i)) for i in range(parser.num_errors))
        raise EngineError(onnx_path, f"TensorRT ONNX parser failed: {errors}")

    config = builder.create_builder_config()
    config.set_memory_pool_limit(trt.MemoryPoolType.WORKSPACE, options.workspace_mib << 20)
    # platform_has_fast_* are deprecated in late 10.x; absent means "assume yes".
    if options.precision in ("fp16", "int8") and getattr(builder, "platform_has_fast_fp16", True):
        config.set_flag(trt.BuilderFlag.FP16)

    profile = None
    for i in range(network.num_inputs):
        tensor = network.get_input(i)
        dynamic = any(d < 0 for d in tensor.shape)
        if tensor.name in options.profiles:
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

    if options.precision == "int8":
        if not getattr(builder, "platform_has_fast_int8", True):
            raise EngineError(onnx_path, "this GPU has no fast int8; use fp16")
        if not options.calibration_feeds and not (
            options.calibration_cache and options.calibration_cache.is_file()
        ):
            raise EngineError(onnx_path, "int8 needs calibration frames or a calibration cache")
        config.set_flag(trt.BuilderFlag.INT8)
        config.int8_calibrator = _make_calibrator(
            trt, options.calibration_feeds, options.calibration_cache, log
        )
        if profile is not None:
            config.set_calibration_profile(profile)

    with ProgressLogger(
        f"{onnx_path.name} ({options.precision})", options.progress_interval_s, log
    ):
        serialized = builder.build_serialized_network(network, config)
    if serialized is None:
        raise EngineError(onnx_path, "TensorRT build failed (see the TensorRT log above)")
    return bytes(serialized)
