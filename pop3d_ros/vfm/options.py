"""The options of the VFM recipe, shared by `pop3d vfm-labels` and `pop3d train` with
strategy vfm, and the labeler they build."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Literal

from pop3d_ros.vfm.calibrate import CalibrationConfig
from pop3d_ros.vfm.pseudo_labels import PseudoLabelConfig


@dataclass
class VFMConfig:
    """LiDAR-free pseudo labels (strategy vfm): relative depth made metric, back-projected."""

    cache: str = ""  # calibrated depth + pseudo-label cache directory ("" = <run>/vfm)
    depth_source: Literal["synthetic", "depth_anything"] = "synthetic"  # relative depth model
    depth_weights: str = ""  # Depth Anything directory (config.json + weights)
    calibration: CalibrationConfig = field(default_factory=CalibrationConfig)
    labels: PseudoLabelConfig = field(default_factory=PseudoLabelConfig)

    def validate(self) -> None:
        if self.depth_source == "depth_anything" and not self.depth_weights:
            raise ValueError("vfm.depth_source depth_anything needs vfm.depth_weights DIR")
        self.calibration.validate()


def build_labeler(
    cfg: VFMConfig, grid, teacher, text_space: dict, fetch, cache_dir, teacher_meta=None,
    text_encoder=None,
):  # fmt: skip
    """The `VFMLabeler` of `cfg` (pixel semantics from `text_space`'s encoder;
    `text_encoder()`, where given, returns that encoder already built)."""
    from pop3d_ros.text.factory import text_encoder_from_spec
    from pop3d_ros.vfm.depth_source import make_depth_source
    from pop3d_ros.vfm.labeler import VFMLabeler
    from pop3d_ros.vfm.semantics import pixel_semantics_from_encoder

    cfg.validate()
    source = (
        make_depth_source(cfg.depth_source, weights=cfg.depth_weights)
        if cfg.depth_source == "depth_anything"
        else make_depth_source("synthetic")
    )
    encoder = text_encoder() if text_encoder else text_encoder_from_spec(text_space)
    return VFMLabeler(
        teacher,
        pixel_semantics_from_encoder(encoder),
        source,
        fetch,
        grid,
        cache_dir,
        cfg.calibration,
        cfg.labels,
        teacher_meta,
    )


def vfm_settings(cfg: VFMConfig) -> dict:
    """What the prepared frames of `pop3d train` with strategy vfm depend on."""
    return {
        "depth_source": cfg.depth_source,
        "depth_weights": cfg.depth_weights or None,
        "calibration": asdict(cfg.calibration),
        "labels": asdict(cfg.labels),
    }
