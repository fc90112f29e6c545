"""TensorRT backend: one engine, named I/O tensors, `execute_async_v3` on a CUDA stream.

Device memory and the stream are torch CUDA objects (no pycuda autoinit global context).
The engine file is validated against its sidecar (engine_cache.check_engine) BEFORE TensorRT
sees a byte, because deserialising a truncated or foreign engine may crash the process.
Written to API present in TensorRT 10.x and 11.x; not executable in this workplace (no
TensorRT here; test_engine_builder_fake.py drives it against recording stand-ins).
"""

from __future__ import annotations

import os
from collections.abc import Callable

import numpy as np

from pop3d_ros.export.backends.base import Backend, TensorSpec
from pop3d_ros.export.engine_cache import EngineKey, check_engine
from pop3d_ros.export.errors import BackendError, EngineError
from pop3d_ros.export.trt_builder import gpu_identity, import_tensorrt


class TrtBackend(Backend):
    """Runs a serialized TensorRT engine. `expected_key` enables the pre-load validation."""

    name = "tensorrt"

    def __init__(
        self,
        engine_path: str | os.PathLike,
        expected_key: EngineKey | None = None,
        log: Callable[[str], None] = print,
    ):
        path = os.fspath(engine_path)
        if expected_key is not None:
            problem = check_engine(path, expected_key)
            if problem:
                raise EngineError(path, problem)
        elif not os.path.isfile(path):
            raise EngineError(path, "engine file not found")
        trt = import_tensorrt()
        gpu_identity()  # one-line error when no GPU, before TensorRT tries
        import torch

        self._trt, self._torch = trt, torch
        self._logger = trt.Logger(trt.Logger.WARNING)
        self._runtime = trt.Runtime(self._logger)
        with open(path, "rb") as f:
            self._engine = self._runtime.deserialize_cuda_engine(f.read())
        if self._engine is None:
            raise EngineError(path, "TensorRT could not deserialize it (corrupt or other version)")
        self._context = self._engine.create_execution_context()
        if self._context is None:  # e.g. out of device memory; TensorRT logs why
            self._engine = None
            raise EngineError(path, "TensorRT could not create an execution context (see its log)")
        self._stream = torch.cuda.Stream()
        inputs, outputs = [], []
        for i in range(self._engine.num_io_tensors):
            name = self._engine.get_tensor_name(i)
            shape = tuple(int(d) if d >= 0 else None for d in self._engine.get_tensor_shape(name))
            dtype = np.dtype(trt.nptype(self._engine.get_tensor_dtype(name))).name
            spec = TensorSpec(name, shape, dtype)
            is_input = self._engine.get_tensor_mode(name) == trt.TensorIOMode.INPUT
            (inputs if is_input else outputs).append(spec)
        super().__init__(inputs, outputs, path)
        log(f"tensorrt: loaded {os.path.basename(path)}")

    @property
    def description(self) -> str:
        return f"tensorrt {self._trt.__version__} on {self._torch.cuda.get_device_name(0)}"

    def _infer(self, feed: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        torch = self._torch
        ctx = self._context
        keep = []  # device tensors must outlive the asynchronous execution
        with torch.cuda.stream(self._stream):
            for spec in self.inputs:
                t = torch.from_numpy(feed[spec.name]).to("cuda", non_blocking=False)
                if not ctx.set_input_shape(spec.name, tuple(t.shape)):
                    raise BackendError(
                        self.source,
                        f"input '{spec.name}' shape {tuple(t.shape)} is outside the engine's "
                        "optimisation profile",
                    )
                ctx.set_tensor_address(spec.name, int(t.data_ptr()))
                keep.append(t)
            out = {}
            for spec in self.outputs:
                shape = tuple(ctx.get_tensor_shape(spec.name))
                dtype = torch.from_numpy(np.empty(0, spec.dtype)).dtype
                t = torch.empty(shape, dtype=dtype, device="cuda")
                ctx.set_tensor_address(spec.name, int(t.data_ptr()))
                out[spec.name] = t
            if not ctx.execute_async_v3(self._stream.cuda_stream):
                raise BackendError(self.source, "TensorRT execute_async_v3 failed")
        self._stream.synchronize()
        return {n: t.float().cpu().numpy() for n, t in out.items()}

    def close(self) -> None:
        self._context = None
        self._engine = None
        super().close()
