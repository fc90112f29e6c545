"""Relative depth sources: `source(sample) -> (N_cam, H, W) float32` relative inverse depth.

Like Depth Anything, a source returns *relative inverse depth* (larger = nearer), correct only
up to an unknown per-image affine map; `calibrate` turns it into metric depth. A source reads
`images` (and, for the synthetic VFM only, the synthetic world's `depth`) from the sample.

- `DepthAnythingSource`: a Depth-Anything-family model (`transformers`
  `DepthAnythingForDepthEstimation`) from a local directory (`config.json` + weights);
  transformers and the weights are loaded on first use.
- `SyntheticVFM`: the synthetic world's true depth through the failure modes of a real
  relative-depth model: blurred across depth edges, a smooth low-frequency distortion,
  multiplicative noise, then an unknown affine map (scale and shift per image) in inverse depth.
"""

from __future__ import annotations

import zlib
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


class RelativeDepthSource:
    """Interface: `__call__(sample) -> (N_cam, H, W) float32` relative inverse depth at the
    images' resolution; `describe() -> dict` (JSON-able, recorded with cached results)."""

    def __call__(self, sample: dict) -> np.ndarray:
        raise NotImplementedError

    def describe(self) -> dict:
        raise NotImplementedError


@dataclass
class SyntheticVFMConfig:
    """Degradations of the synthetic relative-depth model (all in inverse depth)."""

    scale_range: tuple[float, float] = (0.5, 20.0)  # per-image affine scale, log-uniform
    shift_range: tuple[float, float] = (-0.05, 0.3)  # per-image affine shift, uniform
    distortion: float = 0.15  # amplitude of the smooth multiplicative distortion (+-)
    distortion_waves: int = 3  # low-frequency cosine waves summed per image
    noise_std: float = 0.03  # multiplicative per-pixel Gaussian noise
    edge_blur_px: float = 1.5  # Gaussian blur sigma (pixels): smears depth edges
    seed: int = 0  # combined with the frame token: deterministic per frame


class SyntheticVFM(RelativeDepthSource):
    """The synthetic world's `depth` made relative (see the module docstring)."""

    def __init__(self, config: SyntheticVFMConfig | None = None):
        self.config = config or SyntheticVFMConfig()

    def describe(self) -> dict:
        return {"kind": "synthetic", **asdict(self.config)}

    def __call__(self, sample: dict) -> np.ndarray:
        if "depth" not in sample:
            raise ValueError("the synthetic VFM needs a synthetic sample with 'depth'")
        c = self.config
        depth = np.asarray(sample["depth"], np.float64)
        rng = np.random.default_rng([c.seed, zlib.crc32(str(sample.get("token", "")).encode())])
        inv = np.where(np.isfinite(depth) & (depth > 0), 1.0 / np.maximum(depth, 1e-6), 0.0)
        inv = _gaussian_blur(inv, c.edge_blur_px)
        n, H, W = inv.shape
        v, u = np.meshgrid(np.linspace(0, 1, H), np.linspace(0, 1, W), indexing="ij")
        out = np.empty_like(inv)
        for k in range(n):
            warp = np.zeros((H, W))
            for _ in range(c.distortion_waves):
                fu, fv = rng.uniform(0.2, 1.5, 2)
                phase = rng.uniform(0, 2 * np.pi)
                warp += np.cos(2 * np.pi * (fu * u + fv * v) + phase)
            warp *= c.distortion / max(c.distortion_waves, 1) ** 0.5
            x = inv[k] * (1.0 + warp) * (1.0 + c.noise_std * rng.standard_normal((H, W)))
            lo, hi = np.log(c.scale_range[0]), np.log(c.scale_range[1])
            a = float(np.exp(rng.uniform(lo, hi)))
            b = float(rng.uniform(*c.shift_range))
            out[k] = a * np.maximum(x, 0.0) + b
        return out.astype(np.float32)


def _gaussian_blur(x: np.ndarray, sigma: float) -> np.ndarray:
    """(N, H, W) blurred per image with a separable Gaussian (reflect padding)."""
    if sigma <= 0:
        return x
    r = max(1, int(round(3 * sigma)))
    k = np.exp(-0.5 * (np.arange(-r, r + 1) / sigma) ** 2)
    k = torch.from_numpy(k / k.sum())
    t = torch.from_numpy(x)[:, None]
    t = F.pad(t, (r, r, r, r), mode="reflect")
    t = F.conv2d(t, k.view(1, 1, 1, -1))
    t = F.conv2d(t, k.view(1, 1, -1, 1))
    return t[:, 0].numpy()


@dataclass
class DepthAnythingConfig:
    """How a Depth Anything checkpoint is run."""

    weights: str = ""  # local directory with config.json + model.safetensors (from_pretrained)
    input_height: int = 518  # network input height; width keeps the aspect ratio
    multiple: int = 14  # both input sides are rounded to a multiple of the ViT patch size
    device: str = "cpu"
    batch_size: int = 6


class DepthAnythingSource(RelativeDepthSource):
    """Depth Anything (v1/v2 share the architecture) loaded from a local weights directory.

    Preprocessing follows the model family: resize (bicubic) keeping the aspect ratio to a
    height of `input_height`, sides rounded to multiples of 14, ImageNet mean/std; the
    predicted relative inverse depth is resized back to the image size (bilinear).
    """

    def __init__(self, config: DepthAnythingConfig):
        if not config.weights or not (Path(config.weights) / "config.json").is_file():
            raise FileNotFoundError(
                f"Depth Anything weights {config.weights!r}: need a directory with config.json"
            )
        self.config = config
        self._model = None

    def describe(self) -> dict:
        c = self.config
        return {"kind": "depth_anything", "weights": str(c.weights), "input_height": c.input_height}

    @property
    def model(self):
        if self._model is None:
            try:
                from transformers import DepthAnythingForDepthEstimation
            except ImportError as exc:  # pragma: no cover - transformers is a dependency
                raise RuntimeError(f"Depth Anything needs transformers: {exc}") from exc
            model = DepthAnythingForDepthEstimation.from_pretrained(self.config.weights)
            self._model = model.eval().to(self.config.device)
        return self._model

    def input_size(self, h: int, w: int) -> tuple[int, int]:
        m = self.config.multiple
        ih = max(m, int(round(self.config.input_height / m)) * m)
        iw = max(m, int(round(self.config.input_height * w / h / m)) * m)
        return ih, iw

    @torch.no_grad()
    def __call__(self, sample: dict) -> np.ndarray:
        images = np.asarray(sample["images"])
        if images.ndim != 4 or images.shape[-1] != 3:
            raise ValueError(f"images must be (N, H, W, 3) uint8, got shape {images.shape}")
        n, H, W, _ = images.shape
        x = torch.from_numpy(np.ascontiguousarray(images)).permute(0, 3, 1, 2).float() / 255.0
        x = F.interpolate(x, size=self.input_size(H, W), mode="bicubic", align_corners=False)
        x = (x.clamp(0, 1) - torch.tensor(IMAGENET_MEAN).view(1, 3, 1, 1)) / torch.tensor(
            IMAGENET_STD
        ).view(1, 3, 1, 1)
        outs = []
        bs = max(1, self.config.batch_size)
        for s in range(0, n, bs):
            xb = x[s : s + bs].to(self.config.device)
            pred = self.model(pixel_values=xb).predicted_depth  # (b, h, w)
            pred = F.interpolate(pred[:, None], size=(H, W), mode="bilinear", align_corners=False)
            outs.append(pred[:, 0].float().cpu())
        return torch.cat(outs).numpy().astype(np.float32)


def make_depth_source(kind: str = "synthetic", weights: str | None = None, **kw):
    """`synthetic` (the synthetic VFM) or `depth_anything` (needs `weights`)."""
    if kind == "synthetic":
        return SyntheticVFM(SyntheticVFMConfig(**kw))
    if kind == "depth_anything":
        return DepthAnythingSource(DepthAnythingConfig(weights=weights or "", **kw))
    raise ValueError(f"unknown depth source {kind!r}: use synthetic or depth_anything")
