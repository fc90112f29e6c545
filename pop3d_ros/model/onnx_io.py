"""ONNX export of the two deployable graphs (names and shapes: docs/architecture.md).

- encoder: images, sampling_grid, sampling_mask[, sampling_depth] -> occupancy_logits,
  voxel_features (sampling_depth only for a depth-bin lifting, `cfg.encoder_input_names`;
  the depth logits stay inside the graph)
  (static shapes, batch 1; calibration enters only through the sampling inputs).
- language head: voxel_features (N, C_V), N dynamic -> language_features (N, D_clip).

Uses the TorchScript-based exporter (`dynamo=False`): it needs no onnxscript and yields plain
opset-17 ops (Conv, GridSample, Resize, Gemm/MatMul, ...) that TensorRT parses. The heads'
Softplus is exported as relu(x) - log(sigmoid(|x|)) (`heads.ExportSoftplus`, the same values,
faster in ONNX Runtime); `GRAPH_REVISION` says which form an export holds.
"""

from __future__ import annotations

import contextlib
import warnings
from pathlib import Path

import torch
from torch import nn

from pop3d_ros.model.config import ModelConfig

OPSET = 17
# 2: Softplus exported as relu(x) - log(sigmoid(|x|)). A cached export of an older revision
# is re-exported by the runtime (`export.runtime.ensure_export`).
GRAPH_REVISION = 2
ENCODER_INPUTS = ("images", "sampling_grid", "sampling_mask")
ENCODER_OUTPUTS = ("occupancy_logits", "voxel_features")
LANGUAGE_INPUTS = ("voxel_features",)
LANGUAGE_OUTPUTS = ("language_features",)


def encoder_example_inputs(cfg: ModelConfig, batch: int = 1) -> tuple[torch.Tensor, ...]:
    """Random inputs of the encoder graph's shapes (for export and parity checks)."""
    gen = torch.Generator().manual_seed(0)
    h, w = cfg.image_size
    n, v = cfg.num_cameras, cfg.voxel_grid.num_voxels
    images = torch.rand(batch, n, 3, h, w, generator=gen)
    grid = torch.rand(batch, n, v, 2, generator=gen) * 2.0 - 1.0
    mask = (torch.rand(batch, n, v, generator=gen) > 0.5).float()
    if not cfg.lifting.depth_bins:
        return images, grid, mask
    depth = torch.rand(batch, n, v, generator=gen) * (cfg.lifting.depth_bins - 1)
    return images, grid, mask, depth


class _EncoderGraph(nn.Module):
    """Tuple outputs in the contract's order (the exporter does not name dict outputs)."""

    def __init__(self, model):
        super().__init__()
        self.model = model

    def forward(self, *inputs):
        out = self.model(*inputs)
        return out["occupancy_logits"], out["voxel_features"]


class _LanguageGraph(nn.Module):
    def __init__(self, model):
        super().__init__()
        self.model = model

    def forward(self, voxel_features):
        return self.model.language_head(voxel_features)


def _export(module, args, path, inputs, outputs, dynamic_axes=None, rewrite_softplus=True):
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    module.eval()
    from pop3d_ros.model.heads import export_activations

    swap = export_activations(module) if rewrite_softplus else contextlib.nullcontext()
    with torch.no_grad(), warnings.catch_warnings(), swap:
        # The legacy exporter's deprecation notice is expected; everything else still shows.
        warnings.filterwarnings("ignore", category=DeprecationWarning)
        warnings.filterwarnings("ignore", message=".*dynamo.*")
        torch.onnx.export(
            module,
            args,
            str(path),
            input_names=list(inputs),
            output_names=list(outputs),
            dynamic_axes=dynamic_axes,
            opset_version=OPSET,
            do_constant_folding=True,
            dynamo=False,
        )
    return path


def export_encoder_onnx(
    model, path, cfg: ModelConfig | None = None, rewrite_softplus: bool = True
) -> Path:
    """Export encoder + occupancy head (batch 1, static shapes) to `path` (with
    `rewrite_softplus=False` the heads keep ONNX's Softplus op: the benchmark's reference)."""
    cfg = cfg or model.cfg
    was_training = model.training
    try:
        return _export(
            _EncoderGraph(model),
            encoder_example_inputs(cfg),
            path,
            cfg.encoder_input_names,
            ENCODER_OUTPUTS,
            rewrite_softplus=rewrite_softplus,
        )
    finally:
        model.train(was_training)


def export_language_head_onnx(model, path, cfg: ModelConfig | None = None) -> Path:
    """Export the language head with a dynamic number of voxels N to `path`."""
    cfg = cfg or model.cfg
    was_training = model.training
    example = torch.randn(
        16, cfg.decoder.voxel_channels, generator=torch.Generator().manual_seed(0)
    )
    try:
        return _export(
            _LanguageGraph(model),
            (example,),
            path,
            LANGUAGE_INPUTS,
            LANGUAGE_OUTPUTS,
            dynamic_axes={"voxel_features": {0: "N"}, "language_features": {0: "N"}},
        )
    finally:
        model.train(was_training)
