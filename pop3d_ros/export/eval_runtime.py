"""A `Pop3DRuntime` (ONNX Runtime / TensorRT, any precision) behind the torch-module surface
`training.evaluate.Evaluator` calls, so deployed graphs are scored with the same protocol as
checkpoints (`pop3d eval --backend onnxruntime --precision int8`)."""

from __future__ import annotations

import numpy as np
import torch


class _Head:
    def __init__(self, backend):
        self.backend = backend

    def __call__(self, voxel_features: torch.Tensor) -> torch.Tensor:
        feats = np.ascontiguousarray(voxel_features.detach().cpu().numpy(), dtype=np.float32)
        if feats.shape[0] == 0:
            return torch.zeros((0, self.backend.outputs[0].shape[-1]), dtype=torch.float32)
        return torch.from_numpy(self.backend.infer({"voxel_features": feats})["language_features"])


class RuntimeModel:
    """Callable like `Pop3D`: (images, sampling_grid, sampling_mask[, sampling_depth]) -> dict
    of tensors."""

    def __init__(self, runtime):
        self.runtime = runtime
        self.cfg = runtime.config
        self.language_head = _Head(runtime.language_head)

    def eval(self):
        return self

    def to(self, _device):
        return self

    def __call__(self, *inputs: torch.Tensor) -> dict[str, torch.Tensor]:
        names = self.cfg.encoder_input_names
        if len(inputs) != len(names):
            raise ValueError(f"the encoder takes {list(names)}, got {len(inputs)} inputs")
        feed = {
            n: t.detach().cpu().numpy().astype(np.float32)
            for n, t in zip(names, inputs, strict=True)
        }
        out = self.runtime.encoder.infer(feed)
        return {k: torch.from_numpy(np.asarray(v, np.float32)) for k, v in out.items()}
