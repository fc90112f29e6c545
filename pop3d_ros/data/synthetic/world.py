"""The synthetic world: a generated street, an ego drive, six cameras and a LiDAR.

`SyntheticWorld(WorldConfig(seed=3)).sample(i)` returns frame i in the sample format of
docs/architecture.md (images, depth, per-pixel class and concept, LiDAR with labels,
concepts and instances, GT occupancy in classes and concepts, the objects in reach).
"""

from __future__ import annotations

import time

import numpy as np

from pop3d_ros.data.classes import IGNORE
from pop3d_ros.data.concepts import CONCEPT_ID, concept_to_class
from pop3d_ros.data.synthetic.config import WORLD_VERSION, WorldConfig
from pop3d_ros.data.synthetic.occupancy import concept_occupancy
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
            concept=s.concept[keep],
            instance=s.instance[keep],
        )
        return prims, pose

    def world_primitives(self, index: int, moving: bool | None = None) -> Primitives:
        """Every primitive in the world frame at frame `index`; `moving=False` keeps only the
        static ones (zero velocity), `moving=True` only the moving ones."""
        index = self._check(index)
        s = self.scene
        keep = np.ones(len(s.kind), bool)
        if moving is not None:
            keep = np.any(s.velocity != 0, axis=1) == bool(moving)
        centers = s.positions_at(index * self.config.frame_interval)[keep]
        return Primitives(kind=s.kind[keep], center=centers, half=s.half[keep], yaw=s.yaw[keep],
                          cls=s.cls[keep], index=np.nonzero(keep)[0], concept=s.concept[keep],
                          instance=s.instance[keep])  # fmt: skip

    # -- sensors ---------------------------------------------------------------------------
    def _ground_concept_ego(self, points, pose):
        """(concept ids, instance ids, world xy) of ground points given in the ego frame."""
        world = points[:, :2] @ pose[:2, :2].T + pose[:2, 3]
        concept, inst = self.scene.ground_concept(world[:, 0], world[:, 1])
        return concept, inst, world

    def render_camera(self, cam_index: int, prims: Primitives, pose: np.ndarray):
        """(rgb uint8 (H, W, 3), depth float32 (H, W), semantic uint8 (H, W), concept
        uint8 (H, W)); sky = IGNORE in both label images."""
        rays = self._camera_rays[cam_index]
        t, pid, normal = rays.cast(prims)
        H, W = t.shape
        dirs = rays.dirs.reshape(-1, 3)
        t, pid, normal = t.ravel(), pid.ravel(), normal.reshape(-1, 3)
        hit = np.isfinite(t)
        concept = np.full(H * W, IGNORE, dtype=np.uint8)
        rgb = sky_color(dirs)
        points = rays.origin + dirs[hit] * t[hit, None]
        gmask = pid[hit] < 0
        g_idx = np.nonzero(hit)[0][gmask]
        o_idx = np.nonzero(hit)[0][~gmask]
        if len(g_idx):
            g_con, _, world = self._ground_concept_ego(points[gmask], pose)
            concept[g_idx] = g_con
            alb = ground_albedo(concept_to_class(g_con), world[:, 0], world[:, 1], self._lanes,
                                g_con)  # fmt: skip
            rgb[g_idx] = shade(alb, normal[g_idx], dirs[g_idx], t[g_idx])
        if len(o_idx):
            p = pid[o_idx]
            concept[o_idx] = prims.concept[p]
            rgb[o_idx] = shade(self._object_albedo(prims, p, points[~gmask], normal[o_idx]),
                               normal[o_idx], dirs[o_idx], t[o_idx])  # fmt: skip
        depth = np.where(hit, t * rays.cos_axis.ravel(), np.inf).astype(np.float32)
        image = np.clip(np.round(rgb * 255.0), 0, 255).astype(np.uint8)
        semantic = concept_to_class(concept)
        return (image.reshape(H, W, 3), depth.reshape(H, W), semantic.reshape(H, W),
                concept.reshape(H, W))  # fmt: skip

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
        return object_albedo(prims.cls[p], base, local, z_rel, points[:, 2], n_local,
                             prims.concept[p])  # fmt: skip

    def scan_lidar(self, prims: Primitives, pose: np.ndarray):
        """LiDAR returns in the ego frame: (points float32 (N, 3), labels uint8 (N,),
        concepts uint8 (N,), instance ids int32 (N,), 0 = no object)."""
        rays = self._lidar
        t, pid, _ = rays.cast(prims)
        t, pid = t.ravel(), pid.ravel()
        hit = np.isfinite(t) & (t <= self.config.lidar_range)
        dirs = rays.dirs.reshape(-1, 3)[hit]
        points = rays.origin + dirs * t[hit, None]
        pid = pid[hit]
        ground = pid < 0
        points[ground, 2] = 0.0  # exactly on the plane: no float jitter across voxel layers
        concepts = np.empty(len(points), dtype=np.uint8)
        instances = np.zeros(len(points), dtype=np.int32)
        concepts[ground], instances[ground], _ = self._ground_concept_ego(points[ground], pose)
        concepts[~ground] = prims.concept[pid[~ground]]
        instances[~ground] = prims.instance[pid[~ground]]
        return points.astype(np.float32), concept_to_class(concepts), concepts, instances

    def instances(self, prims: Primitives, pose: np.ndarray, reach: float | None = None) -> dict:
        """The objects in reach, in the ego frame: ids, concepts, axis-aligned box centres
        and sizes (primitive objects; crosswalks and manhole covers flat at z = 0). `reach`:
        metres from the ego for the flat objects (default: the sensors' reach)."""
        ids, concepts, centres, sizes = [], [], [], []
        if len(prims):
            corners = prims.corners()
            order = np.argsort(prims.instance, kind="stable")
            inst = prims.instance[order]
            starts = np.flatnonzero(np.r_[True, inst[1:] != inst[:-1]])
            for a, b in zip(starts, np.r_[starts[1:], len(inst)], strict=True):
                pts = corners[order[a:b]].reshape(-1, 3)
                lo, hi = pts.min(0), pts.max(0)
                ids.append(inst[a])
                concepts.append(prims.concept[order[a]])
                centres.append((lo + hi) / 2)
                sizes.append(hi - lo)
        s, inv = self.scene, np.linalg.inv(pose)
        flat = [((x0 + x1) / 2, 0.0, x1 - x0, 2 * s.road_half, "crosswalk")
                for x0, x1 in s.crosswalks]  # fmt: skip
        flat += [(mx, my, 2 * r, 2 * r, "manhole") for mx, my, r in s.manholes]
        if reach is None:
            reach = max(self.config.camera_range, self.config.lidar_range, 80.0)
        for k, (x, y, sx, sy, name) in enumerate(flat):
            c = inv[:3, :3] @ np.array([x, y, 0.0]) + inv[:3, 3]
            if np.hypot(c[0], c[1]) > reach + max(sx, sy) / 2:
                continue
            ids.append(s.ground_instances[k])  # crosswalks, then manholes, as in `flat`
            concepts.append(CONCEPT_ID[name])
            yaw = abs(np.arctan2(inv[1, 0], inv[0, 0]))
            w = np.array([sx * abs(np.cos(yaw)) + sy * abs(np.sin(yaw)),
                          sx * abs(np.sin(yaw)) + sy * abs(np.cos(yaw)), 0.0])  # fmt: skip
            centres.append(c)
            sizes.append(w)
        return {
            "instance_ids": np.asarray(ids, np.int32).reshape(-1),
            "instance_concepts": np.asarray(concepts, np.uint8).reshape(-1),
            "instance_centers": np.asarray(centres, np.float32).reshape(-1, 3),
            "instance_sizes": np.asarray(sizes, np.float32).reshape(-1, 3),
        }

    # -- samples ---------------------------------------------------------------------------
    def sample(self, index: int, grid: VoxelGrid | None = None, occupancy: bool = True) -> dict:
        """Frame `index` as a sample dict (architecture.md), GT occupancy on `grid`."""
        return self.render_timed(index, grid=grid, occupancy=occupancy)[0]

    def render_timed(self, index: int, grid: VoxelGrid | None = None, occupancy: bool = True):
        """(sample, timings in seconds: {"cameras", "lidar", "occupancy", "total"})."""
        t0 = time.perf_counter()
        prims, pose = self.primitives(index)
        images, depths, semantics, concepts = zip(
            *(self.render_camera(k, prims, pose) for k in range(len(self.cameras))),
            strict=True,
        )
        t1 = time.perf_counter()
        points, labels, point_concepts, point_instances = self.scan_lidar(prims, pose)
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
            "concept": np.stack(concepts),
            "lidar_concepts": point_concepts,
            "lidar_instances": point_instances,
            "world_version": WORLD_VERSION,
            **self.instances(prims, pose),
        }
        if occupancy:
            occ = concept_occupancy(self.scene, prims, pose, grid or self.config.grid)
            sample["occupancy"] = concept_to_class(occ)
            sample["occupancy_concept"] = occ
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
