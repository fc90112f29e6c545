"""ONNX Runtime backend with an execution-provider list.

On a vehicle with `onnxruntime-gpu` and TensorRT, the TensorRT EP is a second, library-managed
route to TensorRT; here only the CPU EP exists. Precision is a property of the graph file the
caller loads (`export.precision`: fp16 graph, Q/DQ int8 graph), so the TensorRT EP gets neither
`trt_fp16_enable` nor `trt_int8_enable` (weak typing, removed in TensorRT 11): with both off it
builds a strongly typed network, which honours the graph's fp16 tensors and Q/DQ nodes. Dynamic
inputs get optimisation-profile shapes (`trt_profile_min/opt/max_shapes`). Requested
providers that this onnxruntime build lacks are dropped with a log line.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence

import numpy as np

from pop3d_ros.export.backends.base import Backend, TensorSpec
from pop3d_ros.export.errors import BackendError, OnnxFileError

TRT_EP = "TensorrtExecutionProvider"
CUDA_EP = "CUDAExecutionProvider"
CPU_EP = "CPUExecutionProvider"
DEFAULT_PROVIDERS = (TRT_EP, CUDA_EP, CPU_EP)
_ALIASES = {"tensorrt": TRT_EP, "trt": TRT_EP, "cuda": CUDA_EP, "cpu": CPU_EP}
_ORT_TYPES = {"tensor(float)": "float32", "tensor(float16)": "float16", "tensor(int64)": "int64"}

ProviderSpec = str | tuple[str, dict]
Profiles = dict[str, tuple[tuple, tuple, tuple]]  # input name -> (min, opt, max) shapes


def profile_shape_options(profiles: Profiles) -> dict[str, str]:
    """TensorRT EP profile options: {"trt_profile_min_shapes": "voxel_features:1x32", ...}."""
    if not profiles:
        return {}
    out = {}
    for i, key in enumerate(("min", "opt", "max")):
        out[f"trt_profile_{key}_shapes"] = ",".join(
            f"{name}:{'x'.join(str(int(d)) for d in shapes[i])}"
            for name, shapes in sorted(profiles.items())
        )
    return out


def resolve_providers(
    requested: Sequence[ProviderSpec] | None,
    available: Sequence[str],
    trt_cache_dir: str | os.PathLike | None = None,
    fp16: bool = False,
    log: Callable[[str], None] = print,
    trt_profiles: Profiles | None = None,
) -> list[tuple[str, dict]]:
    """Turn a provider request into onnxruntime's (name, options) list.

    Accepts full EP names or the aliases tensorrt/cuda/cpu, optionally with options. Fills in
    the TensorRT EP's engine cache and profile shapes and turns its weak-typing precision
    flags off (the graph file carries the precision; `fp16` is accepted for compatibility
    and only recorded), drops unavailable providers (logged), and always ends with the CPU
    EP so a session can be created.
    """
    out: list[tuple[str, dict]] = []
    dropped = []
    for item in requested if requested else DEFAULT_PROVIDERS:
        name, opts = (item, {}) if isinstance(item, str) else (item[0], dict(item[1]))
        name = _ALIASES.get(name.lower(), name)
        if name not in available:
            dropped.append(name)
            continue
        if name == TRT_EP:
            if trt_cache_dir is not None:
                os.makedirs(trt_cache_dir, exist_ok=True)
                opts.setdefault("trt_engine_cache_enable", True)
                opts.setdefault("trt_engine_cache_path", os.fspath(trt_cache_dir))
            # Strongly typed build: the loaded graph's types decide (fp16 / Q/DQ int8).
            opts.setdefault("trt_fp16_enable", False)
            opts.setdefault("trt_int8_enable", False)
            for k, v in profile_shape_options(trt_profiles or {}).items():
                opts.setdefault(k, v)
        if name not in [n for n, _ in out]:
            out.append((name, opts))
    if CPU_EP not in [n for n, _ in out]:
        out.append((CPU_EP, {}))
    if dropped and requested:
        # Only worth a line when the user asked for them; the default list always tries all.
        log(f"onnxruntime: providers not available here, skipped: {', '.join(dropped)}")
    return out


class OrtBackend(Backend):
    """An `onnxruntime.InferenceSession` over one ONNX file."""

    name = "onnxruntime"

    def __init__(
        self,
        onnx_path: str | os.PathLike,
        providers: Sequence[ProviderSpec] | None = None,
        trt_cache_dir: str | os.PathLike | None = None,
        fp16: bool = False,
        intra_op_threads: int = 0,
        log: Callable[[str], None] = print,
        trt_profiles: Profiles | None = None,
    ):
        import onnxruntime as ort

        path = os.fspath(onnx_path)
        if not os.path.isfile(path):
            raise OnnxFileError(path, "file not found")
        self._ort = ort
        chosen = resolve_providers(
            providers, ort.get_available_providers(), trt_cache_dir, fp16, log, trt_profiles
        )
        so = ort.SessionOptions()
        so.intra_op_num_threads = int(intra_op_threads)
        so.log_severity_level = 3  # errors only: ORT's warnings are noise in a node's log
        try:
            self._session = ort.InferenceSession(
                path,
                sess_options=so,
                providers=[n for n, _ in chosen],
                provider_options=[o for _, o in chosen],
            )
        except Exception as e:  # InvalidProtobuf, Fail, InvalidGraph, ...
            raise OnnxFileError(path, f"onnxruntime cannot load it ({e})") from None
        inputs = [self._spec(i) for i in self._session.get_inputs()]
        outputs = [self._spec(o) for o in self._session.get_outputs()]
        super().__init__(inputs, outputs, path)
        self.providers = self._session.get_providers()

    @staticmethod
    def _spec(node) -> TensorSpec:
        shape = tuple(d if isinstance(d, int) else (d or None) for d in node.shape)
        return TensorSpec(node.name, shape, _ORT_TYPES.get(node.type, "float32"))

    @property
    def description(self) -> str:
        return f"onnxruntime {self._ort.__version__} {self.providers[0]}"

    def _infer(self, feed: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        try:
            result = self._session.run(self.output_names, feed)
        except Exception as e:
            raise BackendError(self.source, f"onnxruntime run failed ({e})") from None
        return dict(zip(self.output_names, result, strict=True))

    def close(self) -> None:
        self._session = None
        super().close()
