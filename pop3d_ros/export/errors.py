"""Errors of the deployment layer: always one line that names the file and the problem.

They subclass ValueError so callers that already catch bad-input errors keep working, and a
CLI can print `str(err)` as is.
"""

from __future__ import annotations

import os


def _one_line(text: object) -> str:
    # Library messages (onnx, onnxruntime, TensorRT) often span lines; a log line must not.
    return " ".join(str(text).split())


class DeploymentError(ValueError):
    """Base class: `<path>: <problem>` in one line (path omitted when there is none)."""

    def __init__(self, path: str | os.PathLike | None, problem: object):
        self.path = None if path is None else os.fspath(path)
        self.problem = _one_line(problem)
        super().__init__(self.problem if self.path is None else f"{self.path}: {self.problem}")


class OnnxFileError(DeploymentError):
    """An ONNX file that is missing, unreadable, invalid, or not the graph we expect."""


class ManifestError(DeploymentError):
    """A manifest.json that is missing, corrupt, or describes another model/export."""


class EngineError(DeploymentError):
    """A TensorRT engine (or its sidecar) that is corrupt, mismatched, or cannot be built."""


class TensorRTUnavailableError(DeploymentError):
    """TensorRT (or a CUDA GPU) is not present, so engines can be neither built nor run."""


class BackendError(DeploymentError):
    """Bad feeds or a failing inference call in a backend."""


class RuntimeLoadError(DeploymentError):
    """The runtime could not be created from a checkpoint (one line naming file and problem)."""
