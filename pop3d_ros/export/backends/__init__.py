"""Inference backends behind one interface (`Backend.infer(dict) -> dict`, numpy in/out).

Each concrete backend imports its library (torch, onnxruntime, tensorrt) only when created.
"""

from pop3d_ros.export.backends.base import Backend, TensorSpec

__all__ = ["Backend", "TensorSpec"]
