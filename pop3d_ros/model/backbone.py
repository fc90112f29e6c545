"""Image backbone: torchvision ResNet trunk + FPN-like neck to C channels at one stride.

Random initialisation unless a local weights file is given; never touches the network.
"""

from __future__ import annotations

from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn
from torchvision.models import resnet18, resnet34, resnet50, resnet101

from pop3d_ros.model.config import BackboneConfig

_RESNETS = {18: resnet18, 34: resnet34, 50: resnet50, 101: resnet101}
# Output channels of ResNet stages 1..4 (basic blocks for 18/34, bottlenecks for 50/101).
_STAGE_CHANNELS = {
    18: (64, 128, 256, 512),
    34: (64, 128, 256, 512),
    50: (256, 512, 1024, 2048),
    101: (256, 512, 1024, 2048),
}


def _load_trunk_weights(trunk: nn.Module, path: str) -> None:
    p = Path(path)
    try:
        state = torch.load(p, map_location="cpu", weights_only=True)
    except FileNotFoundError as exc:
        raise FileNotFoundError(f"{p}: backbone weights file not found") from exc
    except Exception as exc:  # noqa: BLE001 - any unpickling failure means a bad file
        raise ValueError(f"{p}: not a readable backbone state dict ({exc})") from exc
    if isinstance(state, dict) and "state_dict" in state:
        state = state["state_dict"]
    if not isinstance(state, dict) or trunk.load_trunk_state(state) == 0:
        raise ValueError(f"{p}: no ResNet trunk weights (conv1.*, bn1.*, layerN.*) in the file")


class ResNetFPN(nn.Module):
    """ResNet stages 1..last_stage; lateral 1x1 convs from every stage at or below the output
    stride, top-down upsample-and-add to the output stride, then a 3x3 smoothing conv.

    Input (N, 3, H, W) normalised images -> (N, C, H/stride, W/stride).
    """

    def __init__(self, cfg: BackboneConfig):
        super().__init__()
        net = _RESNETS[cfg.depth](weights=None)
        self.stem = nn.Sequential(net.conv1, net.bn1, net.relu, net.maxpool)
        stages = [net.layer1, net.layer2, net.layer3, net.layer4][: cfg.last_stage]
        self.stages = nn.ModuleList(stages)
        # Stage s (1-based) has stride 2 ** (s + 1); fuse those at or coarser than the output.
        first = {8: 2, 16: 3}[cfg.output_stride]
        self.fused = list(range(first, cfg.last_stage + 1))
        chans = _STAGE_CHANNELS[cfg.depth]
        c = cfg.out_channels
        self.laterals = nn.ModuleList(nn.Conv2d(chans[s - 1], c, 1) for s in self.fused)
        self.smooth = nn.Sequential(
            nn.Conv2d(c, c, 3, padding=1, bias=False), nn.BatchNorm2d(c), nn.ReLU(inplace=True)
        )
        if cfg.weights:
            _load_trunk_weights(self, cfg.weights)

    def load_trunk_state(self, state: dict) -> int:
        """Load torchvision ResNet weights (keys like 'layer1.0.conv1.weight'); the classifier
        and stages beyond last_stage are ignored. Returns how many tensors were loaded."""
        own = self.state_dict()
        mapped = {}
        for k, v in state.items():
            if k.startswith("conv1."):
                k = "stem.0." + k[len("conv1.") :]
            elif k.startswith("bn1."):
                k = "stem.1." + k[len("bn1.") :]
            elif k.startswith("layer") and k[5:6].isdigit():
                k = f"stages.{int(k[5]) - 1}." + k.split(".", 1)[1]
            if k in own and own[k].shape == v.shape:
                mapped[k] = v
        self.load_state_dict(mapped, strict=False)
        return len(mapped)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.stem(x)
        feats = {}
        for s, stage in enumerate(self.stages, start=1):
            x = stage(x)
            feats[s] = x
        out = None
        # Top-down: start at the deepest stage, upsample by 2 and add each finer lateral.
        for lateral, s in zip(reversed(self.laterals), reversed(self.fused), strict=True):
            lat = lateral(feats[s])
            if out is None:
                out = lat
            else:
                # Fixed scale factor (not size=) keeps the ONNX Resize free of shape arithmetic.
                out = F.interpolate(out, scale_factor=2.0, mode="bilinear", align_corners=False)
                out = out + lat
        return self.smooth(out)
