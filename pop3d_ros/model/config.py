"""Typed model configuration and named presets.

`ModelConfig.to_dict()` is what checkpoints store; `ModelConfig.from_dict()` rebuilds it, so a
checkpoint alone is enough to rebuild the network.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field, fields

from pop3d_ros.geometry.grid import VoxelGrid


@dataclass
class GridConfig:
    """The voxel grid in base_link (see `geometry.VoxelGrid`)."""

    x_range: tuple[float, float] = (-51.2, 51.2)  # metres along x (forward), [min, max)
    y_range: tuple[float, float] = (-51.2, 51.2)  # metres along y (left), [min, max)
    z_range: tuple[float, float] = (-5.0, 3.0)  # metres along z (up), [min, max)
    shape: tuple[int, int, int] = (100, 100, 8)  # voxels along x, y, z

    def voxel_grid(self) -> VoxelGrid:
        return VoxelGrid(
            tuple(self.x_range), tuple(self.y_range), tuple(self.z_range), tuple(self.shape)
        )


@dataclass
class BackboneConfig:
    """Image backbone: a torchvision ResNet trunk plus an FPN-like neck."""

    depth: int = 50  # ResNet depth: 18, 34, 50 or 101
    out_channels: int = 128  # C: channels of the neck's output feature map
    output_stride: int = 8  # stride of the neck's output w.r.t. the input image: 8 or 16
    last_stage: int = 4  # deepest ResNet stage used (3 = stop at stride 16, 4 = stride 32)
    weights: str | None = None  # optional local state-dict file for the ResNet trunk


@dataclass
class LiftingConfig:
    """Parameter-free 2D->3D lifting (bilinear sampling + masked mean over cameras)."""

    min_depth: float = 0.1  # metres: voxel centres closer to a camera than this are unseen
    # Also feed the number of cameras seeing each voxel as an extra channel; lets the decoder
    # tell "unseen" from "seen but dark".
    visibility_channel: bool = True
    # Depth-distribution lifting (BEVDepth / FlashOcc idea, model/depth.py): D > 0 adds a
    # depth-bin head on the image features and weights each voxel's sampled feature by the
    # predicted probability of the voxel's depth (a `sampling_depth` network input computed
    # from calibration). 0 = off: today's network, ONNX inputs and checkpoints unchanged.
    depth_bins: int = 0
    depth_min: float = 1.0  # metres along the optical axis: the near edge of bin 0
    depth_max: float = 60.0  # metres: the far edge of the last bin (farther -> last bin)
    # Bin spacing: "lid" (linear-increasing discretization, CaDDN; bin width grows linearly
    # with depth, so near bins are fine where a voxel spans many pixels and far bins coarse
    # where depth from one image is uncertain anyway) or "linear" (uniform bins).
    depth_spacing: str = "lid"


@dataclass
class DecoderConfig:
    """BEV decoder: Z folded into channels, 2D residual conv blocks, channels back to height."""

    bev_channels: int = 256  # width of the BEV 2D conv blocks
    n_blocks: int = 2  # residual blocks at full BEV resolution
    n_down_blocks: int = 2  # residual blocks at half resolution (receptive field), 0 = none
    voxel_channels: int = 128  # C_V: per-voxel feature width out of the decoder


@dataclass
class HeadsConfig:
    """The POP-3D heads: N blocks of Linear-Softplus-Linear then a final Linear (paper 3.1)."""

    occ_hidden: int = 512  # C_occ hidden width of the occupancy head g
    lang_hidden: int = 1024  # C_ft hidden width of the language head h
    clip_dim: int = 512  # C_ft^out: the text-space width (512 for CLIP ViT-B)
    n_blocks: int = 2  # N_occ = N_ft
    # What the occupancy head's 2 outputs mean. "logits": POP-3D's (empty, occupied) logits.
    # "density": a NeRF-style density field (RenderOcc): sigma = softplus(out[1] - out[0] +
    # density_shift) per voxel length, exported as occupancy_logits = [0, sigma -
    # density_threshold], so softmax(...)[1] = P(sigma > threshold) and the node's 0.5 cut
    # means "denser than density_threshold" (the ONNX outputs are unchanged).
    occupancy_output: str = "logits"
    density_threshold: float = 4.0  # sigma (per voxel length) above which a voxel is occupied
    density_shift: float = -4.0  # bias of the raw density: sigma ~ 0.018 (transparent) at init


@dataclass
class ModelConfig:
    """The whole model: grid, image size, backbone, lifting, decoder, heads, text space."""

    name: str = "custom"  # preset name, informative only
    image_size: tuple[int, int] = (448, 800)  # (H, W) of the network input, multiples of 32
    num_cameras: int = 6  # N_cam, in geometry.rig.CAMERA_NAMES order
    clip_model: str = "ViT-B-32"  # open_clip model whose text space the language head targets
    grid: GridConfig = field(default_factory=GridConfig)
    backbone: BackboneConfig = field(default_factory=BackboneConfig)
    lifting: LiftingConfig = field(default_factory=LiftingConfig)
    decoder: DecoderConfig = field(default_factory=DecoderConfig)
    heads: HeadsConfig = field(default_factory=HeadsConfig)

    def __post_init__(self):
        self.validate()

    def validate(self) -> None:
        h, w = self.image_size
        if h <= 0 or w <= 0 or h % 32 or w % 32:
            raise ValueError(f"image_size must be positive multiples of 32, got {(h, w)}")
        if self.backbone.depth not in (18, 34, 50, 101):
            raise ValueError(f"backbone depth must be 18, 34, 50 or 101, got {self.backbone.depth}")
        if self.backbone.output_stride not in (8, 16):
            raise ValueError(f"output_stride must be 8 or 16, got {self.backbone.output_stride}")
        if self.backbone.last_stage not in (3, 4):
            raise ValueError(f"last_stage must be 3 or 4, got {self.backbone.last_stage}")
        if self.backbone.output_stride > 2 ** (self.backbone.last_stage + 1):
            raise ValueError("output_stride is coarser than the deepest stage used")
        if self.heads.n_blocks < 1:
            raise ValueError("heads.n_blocks must be >= 1")
        if self.heads.occupancy_output not in ("logits", "density"):
            raise ValueError(
                f"heads.occupancy_output must be logits or density, "
                f"got {self.heads.occupancy_output!r}"
            )
        lift = self.lifting
        if lift.depth_bins < 0 or lift.depth_bins == 1:
            raise ValueError(f"lifting.depth_bins must be 0 (off) or >= 2, got {lift.depth_bins}")
        if not 0.0 < lift.depth_min < lift.depth_max:
            raise ValueError(
                f"lifting depth range must satisfy 0 < depth_min < depth_max, "
                f"got {lift.depth_min}, {lift.depth_max}"
            )
        if lift.depth_spacing not in ("lid", "linear"):
            raise ValueError(
                f"lifting.depth_spacing must be lid or linear, got {lift.depth_spacing!r}"
            )
        self.grid.voxel_grid()  # raises on a bad range/shape

    @property
    def voxel_grid(self) -> VoxelGrid:
        return self.grid.voxel_grid()

    @property
    def feature_hw(self) -> tuple[int, int]:
        """(H, W) of the backbone's output feature map."""
        s = self.backbone.output_stride
        return self.image_size[0] // s, self.image_size[1] // s

    @property
    def encoder_input_names(self) -> tuple[str, ...]:
        """The encoder graph's inputs in order (a depth-bin model adds `sampling_depth`)."""
        base = ("images", "sampling_grid", "sampling_mask")
        return base + ("sampling_depth",) if self.lifting.depth_bins else base

    def to_dict(self) -> dict:
        d = asdict(self)
        # Plain lists, so that the dict round-trips through JSON/YAML unchanged.
        d["image_size"] = list(self.image_size)
        for key in ("x_range", "y_range", "z_range", "shape"):
            d["grid"][key] = list(d["grid"][key])
        return d

    @classmethod
    def from_dict(cls, d: dict) -> ModelConfig:
        if not isinstance(d, dict):
            raise ValueError(f"model config must be a dict, got {type(d).__name__}")
        parts = {
            "grid": GridConfig,
            "backbone": BackboneConfig,
            "lifting": LiftingConfig,
            "decoder": DecoderConfig,
            "heads": HeadsConfig,
        }
        known = {f.name for f in fields(cls)}
        unknown = set(d) - known
        if unknown:
            raise ValueError(f"unknown model config keys: {sorted(unknown)}")
        kwargs = {}
        for key, value in d.items():
            if key in parts:
                kwargs[key] = _sub_from_dict(parts[key], value, key)
            elif key == "image_size":
                kwargs[key] = tuple(int(v) for v in value)
            else:
                kwargs[key] = value
        return cls(**kwargs)


def _sub_from_dict(klass, d: dict, where: str):
    known = {f.name for f in fields(klass)}
    unknown = set(d) - known
    if unknown:
        raise ValueError(f"unknown keys in model config '{where}': {sorted(unknown)}")
    d = dict(d)
    for key in ("x_range", "y_range", "z_range"):
        if key in d:
            d[key] = tuple(float(v) for v in d[key])
    if "shape" in d:
        d["shape"] = tuple(int(v) for v in d["shape"])
    return klass(**d)


def _pop3d_base() -> ModelConfig:
    """POP-3D grid and head widths with a ResNet-50 image backbone at 448 x 800.

    Grid 100 x 100 x 8 over x, y in [-51.2, 51.2] m, z in [-5, 3] m; C = 128, C_V = 128,
    heads 512 / 1024 -> 2 / 512. Forward (6 cameras, batch 1, encoder + occupancy head) is
    600 GFLOPs; the language head costs 7.6 MFLOPs per voxel it runs on (~0.6 TFLOPs if run
    densely on all 80k voxels). Measured with torch.utils.flop_counter, see
    `model.flops.estimate_gflops`; 35.8 M parameters.
    """
    return ModelConfig(
        name="pop3d-base",
        image_size=(448, 800),
        grid=GridConfig(),
        backbone=BackboneConfig(depth=50, out_channels=128, output_stride=8, last_stage=4),
        decoder=DecoderConfig(bev_channels=256, n_blocks=2, n_down_blocks=2, voxel_channels=128),
        heads=HeadsConfig(occ_hidden=512, lang_hidden=1024, clip_dim=512, n_blocks=2),
    )


def _cpu_small() -> ModelConfig:
    """A model that trains on a 2-core CPU: ResNet-18 up to stride 16, 128 x 224 images.

    Grid 64 x 64 x 8 voxels of 0.8 m over x, y in [-25.6, 25.6] m and z in [-2.0, 4.4] m
    (the near field the cameras see well; same voxel count order as a 50x50 grid over the full
    range but finer voxels). C = 48, C_V = 32, heads 128 / 256 -> 2 / 512 (the text-space
    width stays 512). Forward (6 cameras, batch 1, encoder + occupancy head) is 17.0 GFLOPs;
    the language head costs 0.67 MFLOPs per voxel it runs on (`model.flops.estimate_gflops`);
    3.9 M parameters. Forward ~0.5 s, training step (fwd+bwd, 4k language voxels) ~1 s on
    one CPU thread of this machine.
    """
    return ModelConfig(
        name="cpu-small",
        image_size=(128, 224),
        grid=GridConfig(
            x_range=(-25.6, 25.6), y_range=(-25.6, 25.6), z_range=(-2.0, 4.4), shape=(64, 64, 8)
        ),
        backbone=BackboneConfig(depth=18, out_channels=48, output_stride=8, last_stage=3),
        decoder=DecoderConfig(bev_channels=96, n_blocks=1, n_down_blocks=1, voxel_channels=32),
        heads=HeadsConfig(occ_hidden=128, lang_hidden=256, clip_dim=512, n_blocks=2),
    )


def _pop3d_nuscenes() -> ModelConfig:
    """`pop3d-base` on POP-3D's exact nuScenes volume. POP-3D defines its 100 x 100 x 8 grid
    over x, y in [-51.2, 51.2] m, z in [-5, 3] m of the LIDAR_TOP frame; nuScenes mounts
    LIDAR_TOP at (0.94, 0, 1.84) m in base_link with yaw -90 deg, so in base_link that volume
    is x in [-50.26, 52.14], y in [-51.2, 51.2], z in [-3.16, 4.84] m (same voxels, 1.024 m x
    1.024 m x 1 m). Scored voxel for voxel by `pop3d eval --volume pop3d-nuscenes`
    (evaluation/volume.py), the default on nuScenes.
    """
    cfg = _pop3d_base()
    cfg.name = "pop3d-nuscenes"
    cfg.grid = GridConfig((-50.26, 52.14), (-51.2, 51.2), (-3.16, 4.84), (100, 100, 8))
    return cfg


PRESETS = {"pop3d-base": _pop3d_base, "pop3d-nuscenes": _pop3d_nuscenes, "cpu-small": _cpu_small}


def get_preset(name: str, **overrides) -> ModelConfig:
    """A fresh config of a named preset; `overrides` replace top-level fields."""
    if name not in PRESETS:
        raise ValueError(f"unknown model preset {name!r}; choose one of {sorted(PRESETS)}")
    cfg = PRESETS[name]()
    for key, value in overrides.items():
        if not hasattr(cfg, key):
            raise ValueError(f"unknown model config field {key!r}")
        setattr(cfg, key, value)
    cfg.validate()
    return cfg
