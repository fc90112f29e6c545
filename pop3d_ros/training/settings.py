"""Everything one training stage is made of, as one typed tree of component configs.

`pop3d train`'s options, the recipe files under `config/recipes/` and the `recipe` record in
every checkpoint all have this shape: `model`, `data`, `teacher`, `train`, `loss`, `occupancy`,
`render`, `vfm`, `eval`, plus where the weights start (`init_from`, `init_backbone`).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

from pop3d_ros.data.sources import DataConfig
from pop3d_ros.teachers.select import TeacherConfig
from pop3d_ros.training.config import LossConfig, TrainConfig
from pop3d_ros.training.lidar_occupancy import LidarOccupancyConfig
from pop3d_ros.training.periodic_eval import PeriodicEvalConfig
from pop3d_ros.training.strategies.render_config import RenderConfig
from pop3d_ros.vfm.options import VFMConfig

STRATEGIES = ("pop3d", "supervised_3d", "vfm", "render", "pop3d_render")
# Strategies whose frames carry LiDAR depth, which a depth-bin lifting trains on.
LIDAR_STRATEGIES = ("pop3d", "supervised_3d", "render", "pop3d_render")


@dataclass
class ModelChoice:
    """The network: a preset of model/config.py and the options that change it."""

    preset: str = "cpu-small"  # model preset: cpu-small, pop3d-base, pop3d-nuscenes
    # Depth bins D of the lifting (model config lifting.depth_bins; 0 = the plain bilinear
    # lifting). Needs a strategy with LiDAR depth.
    depth_bins: int = 0
    # Density above which a voxel is occupied, for the rendering strategies (model config
    # heads.density_threshold; None = the preset's; "renderocc" = RenderOcc's published cut,
    # raw > 8.5, i.e. sigma > 0.0049 per voxel length: training/render.py).
    density_threshold: float | Literal["renderocc"] | None = None

    def build(self, strategy: str):
        """The ModelConfig of this choice for `strategy` (validated)."""
        from pop3d_ros.model.config import get_preset

        cfg = get_preset(self.preset)
        if self.depth_bins:
            if strategy not in LIDAR_STRATEGIES:
                raise ValueError(
                    f"model.depth_bins needs LiDAR depth targets; strategy {strategy!r} has none "
                    f"(use one of {list(LIDAR_STRATEGIES)})"
                )
            cfg.lifting.depth_bins = int(self.depth_bins)
        if self.density_threshold == "renderocc":
            from pop3d_ros.training.render import RENDEROCC_DENSITY_CUT

            cfg.heads.density_threshold = RENDEROCC_DENSITY_CUT
        elif self.density_threshold is not None:
            cfg.heads.density_threshold = float(self.density_threshold)
        cfg.validate()
        return cfg


@dataclass
class TrainSettings:
    """One training stage, fully resolved."""

    model: ModelChoice = field(default_factory=ModelChoice)
    data: DataConfig = field(default_factory=DataConfig)
    teacher: TeacherConfig = field(default_factory=TeacherConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    loss: LossConfig = field(default_factory=LossConfig)
    occupancy: LidarOccupancyConfig = field(default_factory=LidarOccupancyConfig)
    render: RenderConfig = field(default_factory=RenderConfig)
    vfm: VFMConfig = field(default_factory=VFMConfig)
    eval: PeriodicEvalConfig = field(default_factory=PeriodicEvalConfig)
    # Start from this checkpoint's weights (same preset; fresh optimizer and schedule), or
    # from an earlier stage of the recipe by its name. "" = random initialisation.
    init_from: str = ""
    # Start the image backbone + neck from this checkpoint (pop3d pretrain2d, or any run with
    # the same backbone); the rest stays at its initialisation.
    init_backbone: str = ""
