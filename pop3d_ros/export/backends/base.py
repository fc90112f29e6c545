"""The backend interface, after Polygraphy's runners: named numpy tensors in and out.

Backends validate feeds the same way (names, rank, fixed dims, dtype) so a caller gets the
same one-line error whichever library is underneath.
"""

from __future__ import annotations

import abc
from dataclasses import dataclass

import numpy as np

from pop3d_ros.export.errors import BackendError


@dataclass(frozen=True)
class TensorSpec:
    """One named graph input or output."""

    name: str
    shape: tuple  # ints for fixed dims, str (symbolic name) or None for dynamic dims
    dtype: str = "float32"  # numpy dtype name

    @classmethod
    def from_dict(cls, d: dict) -> TensorSpec:
        return cls(d["name"], tuple(d["shape"]), d.get("dtype", "float32"))

    def check(self, value: np.ndarray, owner: str) -> np.ndarray:
        """Return `value` as a contiguous array of this dtype, or raise BackendError."""
        arr = np.asarray(value)
        if arr.ndim != len(self.shape):
            raise BackendError(
                owner, f"input '{self.name}' has rank {arr.ndim}, expected shape {self.shape}"
            )
        for i, (got, want) in enumerate(zip(arr.shape, self.shape, strict=True)):
            if isinstance(want, int) and want > 0 and got != want:
                raise BackendError(
                    owner,
                    f"input '{self.name}' has shape {arr.shape}, expected {self.shape} (dim {i})",
                )
        if arr.dtype != np.dtype(self.dtype):
            if not np.can_cast(arr.dtype, self.dtype, casting="same_kind"):
                raise BackendError(
                    owner, f"input '{self.name}' has dtype {arr.dtype}, expected {self.dtype}"
                )
            arr = arr.astype(self.dtype)
        return np.ascontiguousarray(arr)


class Backend(abc.ABC):
    """A loaded graph that maps named numpy inputs to named numpy outputs."""

    #: "torch" | "onnxruntime" | "tensorrt"
    name: str = "backend"

    def __init__(self, inputs: list[TensorSpec], outputs: list[TensorSpec], source: str):
        self.inputs = list(inputs)
        self.outputs = list(outputs)
        #: what errors name: the ONNX/engine file or checkpoint this backend runs
        self.source = source
        self._closed = False

    @property
    def input_names(self) -> list[str]:
        return [s.name for s in self.inputs]

    @property
    def output_names(self) -> list[str]:
        return [s.name for s in self.outputs]

    @property
    def description(self) -> str:
        """One line for logs and diagnostics (library version, device/provider)."""
        return self.name

    def prepare_feed(self, feed: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        if self._closed:
            raise BackendError(self.source, f"{self.name} backend used after close()")
        missing = [n for n in self.input_names if n not in feed]
        extra = [n for n in feed if n not in self.input_names]
        if missing or extra:
            raise BackendError(
                self.source,
                f"feed names {sorted(feed)} do not match inputs {self.input_names}"
                + (f" (missing {missing})" if missing else "")
                + (f" (unexpected {extra})" if extra else ""),
            )
        return {s.name: s.check(feed[s.name], self.source) for s in self.inputs}

    def infer(self, feed: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        """Run once. Outputs are fresh numpy arrays owned by the caller."""
        return self._infer(self.prepare_feed(feed))

    @abc.abstractmethod
    def _infer(self, feed: dict[str, np.ndarray]) -> dict[str, np.ndarray]: ...

    def close(self) -> None:
        self._closed = True

    def __enter__(self):
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"<{type(self).__name__} {self.description} inputs={self.input_names}>"
