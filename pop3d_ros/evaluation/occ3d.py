"""Occ3D-style evaluation next to POP-3D's: dense semantic ground truth, camera-visible voxels.

Occ3D (Tian et al., 2023) scores a prediction against dense semantic occupancy, but only at
voxels a camera observes (`mask_camera`): voxels a camera ray crosses before it hits a
surface, plus the surface voxel itself. On the synthetic world we compute that mask by
casting one ray per pixel (every `pixel_stride`-th) through the grid up to the pixel's
rendered depth (sky: to the grid's far side). Metrics over visible, non-ignored voxels:
class-agnostic IoU of "occupied" and mIoU over the 16 classes + free (`occ3d_iou`,
`occ3d_miou`, `occ3d_per_class`), and the occupancy prior's IoU in the same protocol.

The Occ3D-nuScenes ground-truth format is read by `read_occ3d_labels` (`labels.npz` with
`semantics`, `mask_lidar`, `mask_camera`; 200 x 200 x 16 voxels of 0.4 m over x, y in
[-40, 40] m, z in [-1, 5.4] m; class 0 = others, 1..16 = our 16 classes, 17 = free).
A model on another grid is scored there by nearest-centre lookup (`resample_to_grid`).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from pop3d_ros.data.classes import CLASS_NAMES, EMPTY, IGNORE, NUM_CLASSES
from pop3d_ros.evaluation.metrics import ConfusionMatrix
from pop3d_ros.geometry.grid import VoxelGrid

OCC3D_GRID = VoxelGrid((-40.0, 40.0), (-40.0, 40.0), (-1.0, 5.4), (200, 200, 16))
OCC3D_FREE = 17
OCC3D_OTHERS = 0


def occ3d_to_ours(semantics: np.ndarray) -> np.ndarray:
    """Occ3D class ids -> ours: 1..16 -> 0..15, 17 (free) -> EMPTY, 0 (others) -> IGNORE."""
    s = np.asarray(semantics).astype(np.int64)
    out = np.full(s.shape, IGNORE, np.uint8)
    cls = (s >= 1) & (s <= NUM_CLASSES)
    out[cls] = (s[cls] - 1).astype(np.uint8)
    out[s == OCC3D_FREE] = EMPTY
    return out


def read_occ3d_labels(path) -> dict:
    """An Occ3D-nuScenes `labels.npz` -> {"semantics": uint8 (200, 200, 16) in our ids,
    "mask_lidar": bool, "mask_camera": bool}. Raises ValueError on another layout."""
    path = Path(path)
    try:
        with np.load(path) as data:
            arrays = {k: np.asarray(data[k]) for k in ("semantics", "mask_lidar", "mask_camera")}
    except KeyError as exc:
        raise ValueError(f"{path}: not an Occ3D labels.npz (missing {exc})") from None
    shape = tuple(OCC3D_GRID.shape)
    for k, v in arrays.items():
        if v.shape != shape:
            raise ValueError(f"{path}: {k} has shape {v.shape}, expected {shape}")
    return {
        "semantics": occ3d_to_ours(arrays["semantics"]),
        "mask_lidar": arrays["mask_lidar"].astype(bool),
        "mask_camera": arrays["mask_camera"].astype(bool),
    }


def find_occ3d_labels(root, sample: dict) -> Path:
    """`<root>/<scene name>/<sample token>/labels.npz` (Occ3D's `gts/` layout); the scene
    folder may be any when the sample does not name it."""
    root = Path(root)
    token = str(sample.get("token", ""))
    direct = root / str(sample.get("scene", "")) / token / "labels.npz"
    if direct.exists():
        return direct
    found = sorted(root.glob(f"*/{token}/labels.npz"))
    if not found:
        raise FileNotFoundError(f"no Occ3D labels for sample {token!r} under {root}")
    return found[0]


def resample_to_grid(values: np.ndarray, source: VoxelGrid, target: VoxelGrid, fill) -> np.ndarray:
    """Values on `source` (X, Y, Z) read at every `target` voxel centre (nearest voxel);
    `fill` where the centre lies outside `source`. -> target.shape."""
    centres = target.centers().reshape(-1, 3)
    idx, inside = source.points_to_index(centres)
    out = np.full(len(centres), fill, dtype=np.asarray(values).dtype)
    out[inside] = np.asarray(values).reshape(-1)[source.flat_index(idx[inside])]
    return out.reshape(target.shape)


def camera_visibility(
    sample: dict,
    grid: VoxelGrid,
    pixel_stride: int = 2,
    step_voxels: float = 0.5,
    ego_to_grid=None,
    max_range: float | None = None,
) -> np.ndarray:
    """bool (X, Y, Z): voxels a camera ray crosses up to (and into) the surface it hits.

    One ray per `pixel_stride`-th pixel of each camera, marched every `step_voxels` of the
    smallest voxel edge from the camera to the pixel's depth (`sample["depth"]`, along the
    optical axis; inf = sky: to the grid's far side), plus a quarter voxel into the surface.
    `ego_to_grid` (4x4): the grid lies in another frame (a map's world-aligned grid);
    `max_range`: rays stop this many metres from the camera.
    """
    if sample.get("depth") is None:
        raise ValueError("camera visibility needs per-pixel depth (synthetic samples have it)")
    depth_maps = np.asarray(sample["depth"], np.float64)
    vox = float(min(grid.voxel_size))
    step = step_voxels * vox
    corners = np.stack(np.meshgrid(*zip(grid.lower, grid.upper, strict=True), indexing="ij"), -1)
    seen = np.zeros(grid.num_voxels, bool)
    _, H, W = depth_maps.shape
    v, u = np.mgrid[0:H:pixel_stride, 0:W:pixel_stride]
    u, v = u.ravel().astype(np.float64), v.ravel().astype(np.float64)
    for c in range(depth_maps.shape[0]):
        K = np.asarray(sample["intrinsics"][c], np.float64)
        T = np.asarray(sample["cam_to_ego"][c], np.float64)
        # optical-frame direction with z = 1: a point at axis depth z is z * d
        d = np.stack([(u - K[0, 2]) / K[0, 0], (v - K[1, 2]) / K[1, 1], np.ones_like(u)], -1)
        norm = np.linalg.norm(d, axis=-1)
        if ego_to_grid is not None:
            T = np.asarray(ego_to_grid, np.float64) @ T
        origin = T[:3, 3]
        far = float(np.linalg.norm(corners.reshape(-1, 3) - origin, axis=-1).max())
        if max_range is not None:
            far = min(far, float(max_range))
        z = depth_maps[c, v.astype(int), u.astype(int)]
        length = np.where(np.isfinite(z), z * norm + 0.25 * vox, far)  # metres along the ray
        dirs = (d / norm[:, None]) @ T[:3, :3].T
        # no ray marches past where it leaves the grid's box (it could mark nothing there)
        with np.errstate(divide="ignore", invalid="ignore"):
            t_lo = (grid.lower - origin) / dirs
            t_hi = (grid.upper - origin) / dirs
        exit_t = np.nan_to_num(np.maximum(t_lo, t_hi), nan=np.inf).min(axis=1)
        length = np.minimum(np.minimum(length, far), exit_t + step)
        n_steps = int(np.ceil(min(length.max(), far) / step)) + 1
        for t0 in range(0, n_steps, 32):  # chunks of 32 steps keep memory small
            t = (np.arange(t0, min(t0 + 32, n_steps)) + 0.5) * step
            live = length[:, None] >= t[None]
            if not live.any():
                break
            r, k = np.nonzero(live)
            pts = origin + dirs[r] * t[k, None]
            idx, inside = grid.points_to_index(pts)
            seen[grid.flat_index(idx[inside])] = True
    return seen.reshape(grid.shape)


class Occ3DMetrics:
    """Accumulates the Occ3D-style metrics of predicted semantic occupancy over frames."""

    def __init__(self):
        names = list(CLASS_NAMES) + ["free"]
        self.sem = ConfusionMatrix(NUM_CLASSES + 1, names)
        self.occ = ConfusionMatrix(2, ["free", "occupied"])
        self.prior_occ = ConfusionMatrix(2, ["free", "occupied"])

    def add(self, pred: np.ndarray, gt: np.ndarray, visible: np.ndarray, prior=None) -> None:
        """pred, gt: class id / EMPTY per voxel (gt may be IGNORE); visible: bool mask."""
        pred = np.asarray(pred).reshape(-1).astype(np.int64)
        gt = np.asarray(gt).reshape(-1).astype(np.int64)
        keep = np.asarray(visible).reshape(-1) & (gt != IGNORE)
        gt_k = np.where(keep, gt, -1)  # -1 = skipped by the confusion matrix
        self.sem.update(pred, gt_k)
        gt_occ = np.where(keep, (gt != EMPTY).astype(np.int64), -1)
        self.occ.update((pred != EMPTY).astype(np.int64), gt_occ)
        if prior is not None:
            self.prior_occ.update(np.asarray(prior).reshape(-1).astype(np.int64), gt_occ)

    def all_reduce(self) -> None:
        for cm in (self.sem, self.occ, self.prior_occ):
            cm.all_reduce()

    def result(self) -> dict:
        def num(x):
            return None if x is None or not np.isfinite(x) else round(float(x), 4)

        has_prior = self.prior_occ.matrix.sum() > 0
        return {
            "occ3d_iou": num(self.occ.iou()[1]),
            "occ3d_miou": num(self.sem.miou()),
            "occ3d_prior_iou": num(self.prior_occ.iou()[1]) if has_prior else None,
            "occ3d_per_class": {k: num(v) for k, v in self.sem.per_class().items()},
            "occ3d_visible_voxels": int(self.occ.matrix.sum()),
        }


class Occ3DEvaluation:
    """The Evaluator hook: `add(sample, pred, prior)` with the model's semantic prediction
    on the model grid. Synthetic samples: their own GT occupancy and camera mask; with
    `labels_root`: Occ3D-nuScenes labels, the prediction resampled onto the Occ3D grid."""

    def __init__(self, grid: VoxelGrid, labels_root=None, pixel_stride: int = 2):
        self.grid = grid
        self.labels_root = labels_root
        self.pixel_stride = pixel_stride
        self.metrics = Occ3DMetrics()

    def add(self, sample: dict, pred: np.ndarray, prior=None) -> None:
        if self.labels_root is not None:
            labels = read_occ3d_labels(find_occ3d_labels(self.labels_root, sample))
            pred = resample_to_grid(pred.reshape(self.grid.shape), self.grid, OCC3D_GRID, EMPTY)
            if prior is not None:
                prior = resample_to_grid(prior.reshape(self.grid.shape), self.grid, OCC3D_GRID, 0)
            self.metrics.add(pred, labels["semantics"], labels["mask_camera"], prior)
            return
        gt = sample.get("occupancy")
        if gt is None or sample.get("depth") is None:
            return  # no dense ground truth (real data without Occ3D labels)
        if tuple(gt.shape) != tuple(self.grid.shape):
            raise ValueError(f"GT occupancy {gt.shape} is not on the model grid {self.grid.shape}")
        visible = camera_visibility(sample, self.grid, self.pixel_stride)
        self.metrics.add(pred, gt, visible, prior)

    def all_reduce(self) -> None:
        self.metrics.all_reduce()

    def result(self) -> dict:
        if self.metrics.occ.matrix.sum() == 0:
            return {}
        return self.metrics.result()
