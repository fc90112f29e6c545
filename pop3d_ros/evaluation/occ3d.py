"""Occ3D's evaluation next to POP-3D's: dense semantic ground truth, camera-visible voxels.

Occ3D (Tian et al., 2023) scores a prediction against dense semantic occupancy, but only at
voxels a camera observes (`mask_camera`): voxels a camera ray crosses before it hits a
surface, plus the surface voxel itself. On the synthetic world we compute that mask by
casting one ray per pixel (every `pixel_stride`-th) through the grid up to the pixel's
rendered depth (sky: to the grid's far side), a quarter voxel into the surface.

Metrics over the visible voxels, as Occ3D's `Metric_mIoU` computes them
(`utils/metric_util.py` of the Occ3D / CVPR2023-3D-Occupancy-Prediction devkit): one
18 x 18 confusion matrix of Occ3D class ids (0 others, 1-16 the 16 classes, 17 free; ground
truth 255 skipped); `occ3d_miou` = the mean IoU of classes 0-16 (free excluded, "others"
counted where the data has it), a class absent from both prediction and ground truth
nan-skipped; `occ3d_per_class` those IoUs (and free's, not in the mean);
`occ3d_classes_evaluated` the classes in the mean; `occ3d_iou` = the geometry IoU, occupied =
any class 0-16. `occ3d_miou_with_free` is the project's former average: the 16 classes + free,
over the classes present in the ground truth, "others" ignored. The occupancy prior's
geometry IoU in the same protocol: `occ3d_prior_iou`. RayIoU (`evaluation/ray_iou.py`,
SparseOcc's) on the same ground truth, the whole grid, no camera mask, as SparseOcc scores it.

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
from pop3d_ros.evaluation.ray_iou import OCC3D_NAMES, RayIoU, scene_origins
from pop3d_ros.geometry.grid import VoxelGrid

OCC3D_GRID = VoxelGrid((-40.0, 40.0), (-40.0, 40.0), (-1.0, 5.4), (200, 200, 16))
OCC3D_FREE = 17
OCC3D_OTHERS = 0


def ours_to_occ3d(ids: np.ndarray) -> np.ndarray:
    """Our class ids -> Occ3D's: 0..15 -> 1..16, EMPTY -> 17 (free), anything else -> 255."""
    s = np.asarray(ids).astype(np.int64)
    out = np.full(s.shape, 255, np.uint8)
    cls = (s >= 0) & (s < NUM_CLASSES)
    out[cls] = (s[cls] + 1).astype(np.uint8)
    out[s == EMPTY] = OCC3D_FREE
    return out


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
    "semantics_occ3d": the file's own ids ("others" kept), "mask_lidar": bool, "mask_camera":
    bool}. Raises ValueError on another layout."""
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
        "semantics_occ3d": arrays["semantics"].astype(np.uint8),
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
    """Accumulates the Occ3D metrics of predicted semantic occupancy over frames."""

    def __init__(self):
        self.std = ConfusionMatrix(len(OCC3D_NAMES), list(OCC3D_NAMES))
        self.with_free = ConfusionMatrix(NUM_CLASSES + 1, list(CLASS_NAMES) + ["free"])
        self.prior_occ = ConfusionMatrix(2, ["free", "occupied"])

    def add(self, pred, gt, visible, prior=None, gt_occ3d=None) -> None:
        """pred, gt: our class id / EMPTY per voxel (gt may be IGNORE); visible: bool mask;
        gt_occ3d: the same ground truth in Occ3D ids where the data has them ("others"
        kept), else derived from `gt`."""
        pred = np.asarray(pred).reshape(-1).astype(np.int64)
        gt = np.asarray(gt).reshape(-1).astype(np.int64)
        visible = np.asarray(visible).reshape(-1).astype(bool)
        gt3 = ours_to_occ3d(gt) if gt_occ3d is None else np.asarray(gt_occ3d).reshape(-1)
        gt3 = np.where(visible, gt3.astype(np.int64), 255)  # 255: skipped, as Metric_mIoU
        self.std.update(ours_to_occ3d(pred).astype(np.int64), gt3)
        keep = visible & (gt != IGNORE)
        self.with_free.update(pred, np.where(keep, gt, -1))
        if prior is not None:
            occ = np.where(gt3 == 255, -1, (gt3 < OCC3D_FREE).astype(np.int64))
            self.prior_occ.update(np.asarray(prior).reshape(-1).astype(np.int64), occ)

    def all_reduce(self) -> None:
        for cm in (self.std, self.with_free, self.prior_occ):
            cm.all_reduce()

    def geometry_iou(self) -> float:
        """Occupied = any class 0-16, from the Occ3D confusion matrix."""
        m = self.std.matrix
        tp = m[:OCC3D_FREE, :OCC3D_FREE].sum()
        union = tp + m[OCC3D_FREE, :OCC3D_FREE].sum() + m[:OCC3D_FREE, OCC3D_FREE].sum()
        return float(tp / union) if union else float("nan")

    def result(self, digits: int | None = 4) -> dict:
        """The keys above, rounded to `digits` (None: exact, for comparisons)."""

        def num(x):
            if x is None or not np.isfinite(x):
                return None
            return float(x) if digits is None else round(float(x), digits)

        iou = self.std.iou()  # nan where a class is in neither prediction nor ground truth
        classes = iou[:OCC3D_FREE]
        has_prior = self.prior_occ.matrix.sum() > 0
        return {
            "occ3d_iou": num(self.geometry_iou()),
            "occ3d_miou": num(np.nanmean(classes)) if np.isfinite(classes).any() else None,
            "occ3d_miou_with_free": num(self.with_free.miou()),
            "occ3d_prior_iou": num(self.prior_occ.iou()[1]) if has_prior else None,
            "occ3d_per_class": {n: num(v) for n, v in zip(OCC3D_NAMES, iou, strict=True)},
            "occ3d_classes_evaluated": [
                n for n, v in zip(OCC3D_NAMES[:OCC3D_FREE], classes, strict=True) if np.isfinite(v)
            ],
            "occ3d_visible_voxels": int(self.std.matrix.sum()),
        }


class Occ3DEvaluation:
    """The Evaluator hook: `add(sample, pred, prior)` with the model's semantic prediction
    on the model grid. Synthetic samples: their own GT occupancy and camera mask; with
    `labels_root`: Occ3D-nuScenes labels, the prediction resampled onto the Occ3D grid.
    With `ray_iou`, SparseOcc's RayIoU on the same ground truth: a scene's frames are kept
    (as Occ3D class grids) until its last frame has been added, since every frame's query
    rays start from the LiDAR origins of the frames around it (frames of a scene arrive
    together; a scene split by other scenes has its origins taken per part)."""

    def __init__(
        self, grid: VoxelGrid, labels_root=None, pixel_stride: int = 2, ray_iou: bool = True
    ):
        self.grid = grid
        self.labels_root = labels_root
        self.pixel_stride = pixel_stride
        self.metrics = Occ3DMetrics()
        self.rays = RayIoU() if ray_iou else None
        self._scene: list[dict] = []

    def add(self, sample: dict, pred: np.ndarray, prior=None) -> None:
        if self.labels_root is not None:
            labels = read_occ3d_labels(find_occ3d_labels(self.labels_root, sample))
            pred = resample_to_grid(pred.reshape(self.grid.shape), self.grid, OCC3D_GRID, EMPTY)
            if prior is not None:
                prior = resample_to_grid(prior.reshape(self.grid.shape), self.grid, OCC3D_GRID, 0)
            gt3 = labels["semantics_occ3d"]
            self.metrics.add(pred, labels["semantics"], labels["mask_camera"], prior, gt3)
            self._add_rays(sample, pred, gt3, OCC3D_GRID)
            return
        gt = sample.get("occupancy")
        if gt is None or sample.get("depth") is None:
            return  # no dense ground truth (real data without Occ3D labels)
        if tuple(gt.shape) != tuple(self.grid.shape):
            raise ValueError(f"GT occupancy {gt.shape} is not on the model grid {self.grid.shape}")
        visible = camera_visibility(sample, self.grid, self.pixel_stride)
        self.metrics.add(pred, gt, visible, prior)
        self._add_rays(sample, pred, ours_to_occ3d(gt), self.grid)

    def _add_rays(self, sample: dict, pred, gt_occ3d, grid: VoxelGrid) -> None:
        if self.rays is None or sample.get("ego_to_world") is None:
            return
        if self._scene and self._scene[0]["scene"] != sample.get("scene"):
            self._flush()
        self._scene.append(
            {
                "scene": sample.get("scene"),
                "pred": ours_to_occ3d(np.asarray(pred).reshape(grid.shape)),
                "gt": np.asarray(gt_occ3d, np.uint8).reshape(grid.shape),
                "pose": np.asarray(sample["ego_to_world"], np.float64),
                "origin": np.asarray(sample.get("lidar_origin", np.zeros(3)), np.float64),
                "grid": grid,
            }
        )

    def _flush(self) -> None:
        frames, self._scene = self._scene, []
        poses = [f["pose"] for f in frames]
        origins = [f["origin"] for f in frames]
        for i, f in enumerate(frames):
            starts = scene_origins(poses, origins, i, f["grid"])
            self.rays.add(f["pred"], f["gt"], starts, f["grid"])

    def all_reduce(self) -> None:
        self.metrics.all_reduce()
        if self.rays is not None:
            self._flush()
            self.rays.all_reduce()

    def result(self) -> dict:
        if self.metrics.std.matrix.sum() == 0:
            return {}
        out = self.metrics.result()
        if self.rays is not None:
            if self._scene:
                self._flush()
            out.update(self.rays.result())
        return out
