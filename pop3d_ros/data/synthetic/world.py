"""The synthetic world: a generated street, an ego drive, six cameras and a LiDAR.

`SyntheticWorld(WorldConfig(seed=3)).sample(i)` returns frame i in the sample format of
docs/architecture.md (images, depth, per-pixel class, LiDAR with labels, GT occupancy).
"""

from __future__ import annotations

import time

import numpy as np

from pop3d_ros.data.classes import IGNORE
from pop3d_ros.data.synthetic.config import WorldConfig
from pop3d_ros.data.synthetic.occupancy import semantic_occupancy
from pop3d_ros.data.synthetic.raycast import CameraRays, LidarRays, Primitives
from pop3d_ros.data.synthetic.scene import generate_scene
from pop3d_ros.data.synthetic.texture import (
    ground_albedo,
    object_albedo,
    shade,
    sky_color,
)
from pop3d_ros.geometry.grid import VoxelGrid
from pop3d_ros.geometry.rig import CAMERA_NAMES, load_rig
from pop3d_ros.geometry.transforms import make_transform, yaw_rotation

_BASE_TIME_US = 1_600_000_000_000_000


class SyntheticWorld:
    """A deterministic procedural drive; frames are rendered on demand."""

    def __init__(self, config: WorldConfig | None = None, **overrides):
        if config is None:
            config = WorldConfig(**overrides)
        elif overrides:
            raise TypeError("pass either a WorldConfig or keyword overrides, not both")
        self.config = config
        self.scene = generate_scene(config)
        self.cameras = load_rig(
            config.rig_file, names=CAMERA_NAMES, width=config.image_width,
            height=config.image_height,
        )  # fmt: skip
        self._camera_rays = [CameraRays(cam, config.camera_range) for cam in self.cameras]
        lo, hi = config.lidar_elevation_deg
        elevations = np.deg2rad(np.linspace(lo, hi, config.lidar_beams))
        self._lidar = LidarRays(
            config.lidar_origin, elevations, config.lidar_azimuths, config.lidar_range
        )
        self._lanes = self.scene.lanes

    def __len__(self) -> int:
        return self.config.num_frames

    # -- identity and poses ----------------------------------------------------------------
    @property
    def scene_id(self) -> str:
        return f"synthetic-s{self.config.seed}"

    def token(self, index: int) -> str:
        return f"synthetic-s{self.config.seed}-f{index:04d}"

    def timestamp(self, index: int) -> int:
        c = self.config
        return _BASE_TIME_US + c.seed * 3_600_000_000 + round(index * c.frame_interval * 1e6)

    def ego_to_world(self, index: int) -> np.ndarray:
        x, y, yaw = self.scene.ego_pose(index * self.config.frame_interval, self.config.ego_speed)
        return make_transform(yaw_rotation(yaw), [x, y, 0.0])

    def _check(self, index: int) -> int:
        if not 0 <= int(index) < len(self):
            raise IndexError(f"frame {index} out of range: this drive has {len(self)} frames")
        return int(index)

    def primitives(self, index: int) -> tuple[Primitives, np.ndarray]:
        """Primitives near the ego in the ego frame at frame `index`, and ego_to_world."""
        index = self._check(index)
        s = self.scene
        t = index * self.config.frame_interval
        pose = self.ego_to_world(index)
        centers = s.positions_at(t)
        rel = centers[:, :2] - pose[:2, 3]
        reach = max(self.config.camera_range, self.config.lidar_range, 80.0)
        keep = np.linalg.norm(rel, axis=1) - np.linalg.norm(s.half[:, :2], axis=1) < reach
        rot = pose[:2, :2]
        ego_xy = rel[keep] @ rot  # world -> ego: R^T (p - t)
        yaw_ego = np.arctan2(rot[1, 0], rot[0, 0])
        prims = Primitives(
            kind=s.kind[keep],
            center=np.concatenate([ego_xy, centers[keep, 2:3]], axis=1),
            half=s.half[keep],
            yaw=s.yaw[keep] - yaw_ego,
            cls=s.cls[keep],
            index=np.nonzero(keep)[0],
        )
        return prims, pose

    # -- sensors ---------------------------------------------------------------------------
    def _ground_class_ego(self, points, pose):
        world = points[:, :2] @ pose[:2, :2].T + pose[:2, 3]
        return self.scene.ground_class(world[:, 0], world[:, 1]), world

    def render_camera(self, cam_index: int, prims: Primitives, pose: np.ndarray):
        """(rgb uint8 (H, W, 3), depth float32 (H, W), semantic uint8 (H, W))."""
        rays = self._camera_rays[cam_index]
        t, pid, normal = rays.cast(prims)
        H, W = t.shape
        dirs = rays.dirs.reshape(-1, 3)
        t, pid, normal = t.ravel(), pid.ravel(), normal.reshape(-1, 3)
        hit = np.isfinite(t)
        semantic = np.full(H * W, IGNORE, dtype=np.uint8)
        rgb = sky_color(dirs)
        points = rays.origin + dirs[hit] * t[hit, None]
        gmask = pid[hit] < 0
        g_idx = np.nonzero(hit)[0][gmask]
        o_idx = np.nonzero(hit)[0][~gmask]
        if len(g_idx):
            g_cls, world = self._ground_class_ego(points[gmask], pose)
            semantic[g_idx] = g_cls
            alb = ground_albedo(g_cls, world[:, 0], world[:, 1], self._lanes)
            rgb[g_idx] = shade(alb, normal[g_idx], dirs[g_idx], t[g_idx])
        if len(o_idx):
            p = pid[o_idx]
            semantic[o_idx] = prims.cls[p]
            rgb[o_idx] = shade(self._object_albedo(prims, p, points[~gmask], normal[o_idx]),
                               normal[o_idx], dirs[o_idx], t[o_idx])  # fmt: skip
        depth = np.where(hit, t * rays.cos_axis.ravel(), np.inf).astype(np.float32)
        image = np.clip(np.round(rgb * 255.0), 0, 255).astype(np.uint8)
        return image.reshape(H, W, 3), depth.reshape(H, W), semantic.reshape(H, W)

    def _object_albedo(self, prims, p, points, normals):
        c, s = np.cos(prims.yaw[p]), np.sin(prims.yaw[p])
        rel = points - prims.center[p]
        local = np.stack([c * rel[:, 0] + s * rel[:, 1], -s * rel[:, 0] + c * rel[:, 1],
                          rel[:, 2] + prims.half[p, 2]], axis=1)  # fmt: skip
        n_local = np.stack(
            [c * normals[:, 0] + s * normals[:, 1], -s * normals[:, 0] + c * normals[:, 1],
             normals[:, 2]], axis=1,
        )  # fmt: skip
        z_rel = local[:, 2] / (2 * prims.half[p, 2])
        base = self.scene.color[prims.index[p]]
        return object_albedo(prims.cls[p], base, local, z_rel, points[:, 2], n_local)

    def scan_lidar(self, prims: Primitives, pose: np.ndarray):
        """LiDAR returns in the ego frame: (points float32 (N, 3), labels uint8 (N,))."""
        rays = self._lidar
        t, pid, _ = rays.cast(prims)
        t, pid = t.ravel(), pid.ravel()
        hit = np.isfinite(t) & (t <= self.config.lidar_range)
        dirs = rays.dirs.reshape(-1, 3)[hit]
        points = rays.origin + dirs * t[hit, None]
        pid = pid[hit]
        ground = pid < 0
        points[ground, 2] = 0.0  # exactly on the plane: no float jitter across voxel layers
        labels = np.empty(len(points), dtype=np.uint8)
        labels[ground] = self._ground_class_ego(points[ground], pose)[0]
        labels[~ground] = prims.cls[pid[~ground]]
        return points.astype(np.float32), labels

    # -- samples ---------------------------------------------------------------------------
    def sample(self, index: int, grid: VoxelGrid | None = None, occupancy: bool = True) -> dict:
        """Frame `index` as a sample dict (architecture.md), GT occupancy on `grid`."""
        return self.render_timed(index, grid=grid, occupancy=occupancy)[0]

    def render_timed(self, index: int, grid: VoxelGrid | None = None, occupancy: bool = True):
        """(sample, timings in seconds: {"cameras", "lidar", "occupancy", "total"})."""
        t0 = time.perf_counter()
        prims, pose = self.primitives(index)
        images, depths, semantics = zip(
            *(self.render_camera(k, prims, pose) for k in range(len(self.cameras))),
            strict=True,
        )
        t1 = time.perf_counter()
        points, labels = self.scan_lidar(prims, pose)
        t2 = time.perf_counter()
        n = len(self)
        sample = {
            "token": self.token(index),
            "scene": self.scene_id,
            "timestamp": self.timestamp(index),
            "prev": self.token(index - 1) if index > 0 else None,
            "next": self.token(index + 1) if index + 1 < n else None,
            "camera_names": list(CAMERA_NAMES),
            "images": np.stack(images),
            "intrinsics": np.stack([c.K for c in self.cameras]).astype(np.float32),
            "cam_to_ego": np.stack([c.cam_to_ego for c in self.cameras]).astype(np.float32),
            "ego_to_world": pose.astype(np.float32),
            "lidar_points": points,
            "lidar_labels": labels,
            "lidar_origin": np.asarray(self.config.lidar_origin, dtype=np.float32),
            "depth": np.stack(depths),
            "semantic": np.stack(semantics),
        }
        if occupancy:
            sample["occupancy"] = semantic_occupancy(
                self.scene, prims, pose, grid or self.config.grid
            )
        t3 = time.perf_counter()
        timings = {"cameras": t1 - t0, "lidar": t2 - t1, "occupancy": t3 - t2, "total": t3 - t0}
        return sample, timings


def render_benchmark(config: WorldConfig | None = None, frames: int = 3) -> dict:
    """Mean seconds per frame for each component over `frames` frames (for `make bench`)."""
    world = SyntheticWorld(config or WorldConfig(num_frames=max(frames, 1)))
    totals: dict[str, float] = {}
    for i in range(min(frames, len(world))):
        _, timings = world.render_timed(i)
        for k, v in timings.items():
            totals[k] = totals.get(k, 0.0) + v
    n = min(frames, len(world))
    return {f"{k}_s": v / n for k, v in totals.items()} | {"frames": n}
