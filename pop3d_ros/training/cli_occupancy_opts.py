"""`pop3d train` options of the LiDAR occupancy targets (`training/lidar_occupancy.py`)."""

from __future__ import annotations

from pop3d_ros.training.lidar_occupancy import LidarOccupancyConfig

# The ring-free targets the default model trains with (ablation in models/README.md).
RING_FREE = LidarOccupancyConfig(
    free_space="rays", core_z=0.5, sweeps=(-2, -1, 1, 2), remove_moving=True, moving_votes=2
)


def _offsets(text: str) -> tuple[int, ...]:
    try:
        return tuple(int(t) for t in text.split(",") if t.strip())
    except ValueError:
        raise ValueError(f"--occ-sweeps takes frame offsets like -2,-1,1,2, got {text!r}") from None


def add_occupancy_arguments(p) -> None:
    d = LidarOccupancyConfig()
    g = p.add_argument_group("LiDAR occupancy targets (pop3d, pop3d_render)")
    g.add_argument(
        "--ring-free",
        action="store_true",
        help="the default model's ring-free targets: --occ-free-space rays --occ-core-z 0.5 "
        "--occ-sweeps=-2,-1,1,2 --occ-remove-moving --occ-moving-votes 2 (overrides those flags)",
    )
    g.add_argument(
        "--occ-free-space",
        choices=["points", "rays"],
        default=d.free_space,
        help="points: POP-3D (voxels without a return are empty); rays: free only where a ray "
        "crossed, the rest unobserved (default: %(default)s)",
    )
    g.add_argument(
        "--occ-core-z",
        type=float,
        default=d.core_z,
        help="central fraction of a voxel's height where a ray frees it (default: %(default)s)",
    )
    g.add_argument(
        "--occ-sweeps",
        type=_offsets,
        default=d.sweeps,
        help="adjacent frames aggregated into the target, e.g. --occ-sweeps=-2,-1,1,2 "
        "(default: none)",
    )
    g.add_argument(
        "--occ-remove-moving",
        action="store_true",
        help="drop adjacent sweeps' returns in voxels other sweeps saw through",
    )
    g.add_argument("--occ-moving-votes", type=int, default=d.moving_votes)
    g.add_argument(
        "--occ-sweep-features",
        action="store_true",
        help="also average the teacher's features at the adjacent sweeps' returns into the "
        "language-head targets (needs sweeps; combines with --ring-free)",
    )
    g.add_argument(
        "--unobserved-weight",
        type=float,
        default=0.1,
        help="loss weight of unobserved voxels as empty (rays targets; default: %(default)s)",
    )


def occupancy_config(args) -> LidarOccupancyConfig:
    """The LidarOccupancyConfig these arguments ask for (validated)."""
    if args.ring_free:
        cfg = LidarOccupancyConfig(**RING_FREE.to_dict())
        cfg.sweeps = tuple(cfg.sweeps)
    else:
        cfg = LidarOccupancyConfig(
            free_space=args.occ_free_space,
            core_z=args.occ_core_z,
            sweeps=tuple(args.occ_sweeps),
            remove_moving=args.occ_remove_moving,
            moving_votes=args.occ_moving_votes,
        )
    cfg.sweep_features = bool(args.occ_sweep_features)
    cfg.validate()
    if args.unobserved_weight < 0:
        raise ValueError(f"--unobserved-weight must be >= 0, got {args.unobserved_weight}")
    return cfg
