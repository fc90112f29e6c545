"""The options of the rendering strategies (`render`, `pop3d_render`) and the strategy they
build. Defaults are RenderOcc as published, where it has the option."""

from __future__ import annotations

from dataclasses import dataclass, fields
from typing import Literal

RENDER_STRATEGIES = ("render", "pop3d_render")


@dataclass
class RenderConfig:
    """Rendering supervision (strategies render and pop3d_render only)."""

    aux_rays: bool = False  # add rays from the adjacent frames (-1, +1) via the ego poses
    # pool: a fixed pool of ray_pool rays per frame and adjacent frame, cached; renderocc:
    # RenderOcc as published, every LiDAR-pixel ray of the frame and its +-aux_frames
    # neighbours re-drawn every step by weighted sampling with the class balance over the
    # whole training set (implies aux_rays and weighted_sampling; training/ray_frames.py).
    ray_sampling: Literal["pool", "renderocc"] = "pool"
    # K: the adjacent frames -K..-1, 1..K (0 = the sampling's own: 1 with pool, 3 with
    # renderocc, RenderOcc's seven frames).
    aux_frames: int = 0
    # RenderOcc's weighted ray sampling: draw num_rays per frame by weight (else every
    # candidate ray is rendered)
    weighted_sampling: bool = False
    num_rays: int = 2048  # rays per frame per step with weighted_sampling
    ray_pool: int = 2048  # candidate rays cached per frame and per adjacent frame
    # Distortion loss weight (Mip-NeRF 360): gathers each ray's weights where it stops
    # instead of a haze (RenderOcc: 0.01).
    distortion_weight: float = 0.01
    # Ray-termination loss weight: -log of the rendering weight in the voxel of the ray's
    # LiDAR return (DS-NeRF's depth loss on the grid's cells; 0 = RenderOcc as published).
    termination_weight: float = 0.0
    # Free-space prior weight: mean voxel opacity, so voxels no ray reaches default to empty
    # (0 = RenderOcc as published).
    sparsity_weight: float = 0.0
    # Where the free-space prior applies: every voxel, or only the voxels no candidate ray of
    # the frame (current and adjacent) crosses or ends in.
    sparsity_scope: Literal["grid", "unseen"] = "grid"
    # How rays read the density grid: trilinear between voxel centres (RenderOcc) or constant
    # per voxel, the boxes occupancy is scored on.
    density_sampling: Literal["trilinear", "nearest"] = "trilinear"
    # Weight of the 2D semantic loss on the rendered features (needs 2D class maps: the
    # synthetic `semantic`; 0 = label-free).
    semantic_weight: float = 0.0
    # After training, choose the density threshold on this many training frames from their
    # own rays (training/density_calibration.py; 0 = keep model.density_threshold).
    calibration_frames: int = 0

    def validate(self) -> None:
        if self.num_rays <= 0 or self.ray_pool <= 0:
            raise ValueError("render num_rays and ray_pool must be positive")
        if min(self.distortion_weight, self.termination_weight, self.sparsity_weight) < 0:
            raise ValueError("render loss weights must be >= 0")
        if self.sparsity_scope != "grid" and not self.sparsity_weight > 0:
            raise ValueError("render.sparsity_scope unseen needs render.sparsity_weight > 0")
        if self.calibration_frames < 0:
            raise ValueError("render.calibration_frames must be >= 0")
        if self.aux_frames < 0:
            raise ValueError("render.aux_frames must be >= 0")
        if self.ray_sampling == "renderocc" and self.ray_pool != RenderConfig.ray_pool:
            raise ValueError("render.ray_pool sets the cached pool of ray_sampling pool")

    def aux_offsets(self) -> tuple[int, ...]:
        """The adjacent-frame offsets -K..-1, 1..K of aux_frames."""
        k = self.aux_frames or (3 if self.ray_sampling == "renderocc" else 1)
        return tuple(range(-k, 0)) + tuple(range(1, k + 1))


def refuse_unused(cfg: RenderConfig, strategy: str) -> None:
    """Rendering options change nothing outside the rendering strategies: a run of another
    strategy that sets them is refused rather than silently trained without them."""
    if strategy in RENDER_STRATEGIES:
        return
    default = RenderConfig()
    given = [f.name for f in fields(cfg) if getattr(cfg, f.name) != getattr(default, f.name)]
    if given:
        keys = ", ".join("render." + k for k in given)
        raise ValueError(f"{keys}: rendering options; strategy {strategy} does not render")


def build_render_strategy(
    cfg: RenderConfig,
    strategy: str,
    model_cfg,
    teacher,
    text_encoder,
    neighbour,
    common,
    key_of_token=None,
):
    """The RenderStrategy of `cfg` (`text_encoder()`: the run's text encoder; `neighbour`:
    the drive's adjacent frames; `key_of_token`: a prev/next token -> the frame's key, for
    RenderOcc sampling); switches the model config to a density field."""
    from pop3d_ros.evaluation.zeroshot import (
        ZeroShotClassifier,
        class_canonical_embeddings,
        class_phrase_embeddings,
    )
    from pop3d_ros.training.strategies.render import RenderStrategy

    cfg.validate()
    renderocc = cfg.ray_sampling == "renderocc"
    model_cfg.heads.occupancy_output = "density"
    encoder = text_encoder()
    built = RenderStrategy(
        teacher,
        ZeroShotClassifier(class_phrase_embeddings(encoder)),
        neighbour=neighbour,
        aux_offsets=cfg.aux_offsets(),
        aux=cfg.aux_rays or renderocc,
        weighted=cfg.weighted_sampling or renderocc,
        ray_sampling=cfg.ray_sampling,
        key_of_token=key_of_token,
        num_rays=cfg.num_rays,
        ray_pool=cfg.ray_pool,
        distortion_weight=cfg.distortion_weight,
        termination_weight=cfg.termination_weight,
        sparsity_weight=cfg.sparsity_weight,
        sparsity_scope=cfg.sparsity_scope,
        grid=model_cfg.voxel_grid,
        density_sampling=cfg.density_sampling,
        semantic_weight=cfg.semantic_weight,
        class_embeddings=class_canonical_embeddings(encoder) if cfg.semantic_weight > 0 else None,
        with_occupancy=strategy == "pop3d_render",
        **common,
    )
    # What the prepared cache holds (aux and weighting act per step, so they share it).
    if renderocc:  # every ray of the frame itself; the neighbours are read per step
        built.cache_settings = {"ray_sampling": "renderocc"}
    else:
        built.cache_settings = {"ray_pool": cfg.ray_pool, "aux_offsets": list(built.aux_offsets)}
    return built
