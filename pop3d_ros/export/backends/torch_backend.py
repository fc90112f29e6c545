"""PyTorch eager backend: the reference every other backend is compared with."""

from __future__ import annotations

import numpy as np

from pop3d_ros.export.backends.base import Backend, TensorSpec


class TorchBackend(Backend):
    """Wraps a callable `fn(*tensors)` returning a tensor or a dict of tensors.

    `fn` receives the inputs positionally in `inputs` order; a bare tensor result is named
    after the single output.
    """

    name = "torch"

    def __init__(
        self,
        fn,
        inputs: list[TensorSpec],
        outputs: list[TensorSpec],
        source: str = "torch",
        device: str = "cpu",
    ):
        import torch

        super().__init__(inputs, outputs, source)
        self._torch = torch
        self._fn = fn
        self.device = torch.device(device)

    @property
    def description(self) -> str:
        return f"torch {self._torch.__version__} eager on {self.device}"

    def _infer(self, feed: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        torch = self._torch
        args = [torch.from_numpy(feed[n]).to(self.device) for n in self.input_names]
        with torch.inference_mode():
            result = self._fn(*args)
        if not isinstance(result, dict):
            result = {self.output_names[0]: result}
        return {n: result[n].detach().float().cpu().numpy() for n in self.output_names}
