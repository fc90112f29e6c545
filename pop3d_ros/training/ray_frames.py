"""RenderOcc's ray sampling as published: every step, a frame's candidate rays are ALL the
LiDAR-pixel rays of the frame and of its +-K neighbours (K = 3, seven frames), moved into its
ego frame, and `num_rays` of them are drawn by weighted ray sampling with the class balance
over the whole training set (`configs/renderocc/renderocc-7frame.py`: aux_frames
[-3..3], max_ray_nums 38400; `mmdet3d/datasets/nuscenes_dataset_occ.py: get_rays`,
`nusc_class_nums`; `mmdet3d/datasets/ray.py: generate_rays`).

A prepared frame keeps only its own rays (origin, direction, depth in its own ego frame; the
camera and pixel of each; the teacher's zero-shot class) and its teacher feature map; the
neighbours' rays are read from their prepared files when a step needs them, and teacher
features are sampled only for the drawn rays. The cache thus grows with one frame's rays
and one small feature map per frame, not 2K + 1 frames of rays times D-wide features.

Where RenderOcc's neighbour lies outside the drive it takes the current frame again as that
neighbour (its rays then count twice, once at the adjacent weight); here a missing neighbour
adds nothing.
"""

from __future__ import annotations

from collections import OrderedDict
from pathlib import Path

import numpy as np
import torch

from pop3d_ros.data.classes import NUM_CLASSES
from pop3d_ros.geometry.grid import VoxelGrid
from pop3d_ros.teachers.features import sample_feature_map
from pop3d_ros.training.rays import (
    log_class_balance,
    ray_voxels,
    time_log_weight,
    weighted_draw,
)

# What a prepared frame holds for this sampling, besides the network inputs.
TABLE_KEYS = (
    "ray_origin",
    "ray_dir",
    "ray_depth",
    "ray_class",
    "ray_semantic",
    "ray_camera",
    "ray_uv",
    "teacher_features",
    "ego_to_world",
    "ray_image_hw",
    "frame_prev",
    "frame_next",
)


def ray_class_counts(ray_class: torch.Tensor) -> torch.Tensor:
    """int64 (NUM_CLASSES + 1,): rays per teacher class (the last bin: no class)."""
    ids = ray_class.long().clamp(max=NUM_CLASSES)
    return torch.bincount(ids, minlength=NUM_CLASSES + 1)


class RayFrames:
    """The prepared frames' own rays by key (`<root>/<key>.pt`), the walk to a frame's
    neighbours (`frame_prev` / `frame_next` keys) and the training set's ray class counts."""

    def __init__(self, root, keys, cache_size: int = 24):
        self.root = Path(root)
        self.keys = list(keys)
        self._known = set(self.keys)
        self._cache: OrderedDict[str, dict] = OrderedDict()
        self.cache_size = cache_size
        # per-frame unseen-voxel masks, bounded (one bool per voxel each)
        self._unseen: OrderedDict[str, torch.Tensor] = OrderedDict()
        self.unseen_cache_size = 4096

    def table(self, key: str) -> dict:
        if key in self._cache:
            self._cache.move_to_end(key)
            return self._cache[key]
        item = torch.load(self.root / f"{key}.pt", weights_only=True)
        missing = [k for k in TABLE_KEYS if k not in item]
        if missing:
            raise ValueError(
                f"{self.root}/{key}.pt holds no RenderOcc ray table (missing {missing[0]}); "
                "prepare the frames with render.ray_sampling renderocc"
            )
        table = {k: item[k] for k in TABLE_KEYS}
        self._cache[key] = table
        if len(self._cache) > self.cache_size:
            self._cache.popitem(last=False)
        return table

    def neighbour(self, item: dict, offset: int) -> dict | None:
        """The table `offset` frames from `item` in its drive, or None past the drive's end
        or outside the training frames."""
        cur = item
        for _ in range(abs(int(offset))):
            key = cur["frame_prev" if offset < 0 else "frame_next"]
            if not key or key not in self._known:
                return None
            cur = self.table(key)
        return cur

    def class_counts(self) -> torch.Tensor:
        """Rays per teacher class over every training frame's own rays (each frame once)."""
        total = torch.zeros(NUM_CLASSES + 1, dtype=torch.int64)
        for key in self.keys:
            total += ray_class_counts(self.table(key)["ray_class"])
        return total

    def candidates(self, item: dict, offsets, grid: VoxelGrid) -> tuple[dict, list]:
        """The candidate rays of one frame: its own and its neighbours' (those ending inside
        `grid` in this frame), moved into its ego frame, with `ray_time` (the offset) and
        `ray_source` (index into the returned list of (teacher map, image hw))."""
        cur_pose = np.asarray(item["ego_to_world"], np.float64)
        parts, sources = [], []
        for off in (0, *offsets):
            table = item if off == 0 else self.neighbour(item, off)
            if table is None:
                continue
            origin, direction = table["ray_origin"].double(), table["ray_dir"].double()
            depth = table["ray_depth"]
            keep = torch.ones(depth.shape[0], dtype=torch.bool)
            if off != 0:
                t = torch.from_numpy(
                    np.linalg.inv(cur_pose) @ np.asarray(table["ego_to_world"], np.float64)
                )
                origin = origin @ t[:3, :3].T + t[:3, 3]
                direction = direction @ t[:3, :3].T
                ends = origin + direction * depth.double()[:, None]
                _, inside = grid.points_to_index(ends.numpy())
                keep = torch.from_numpy(inside)
            parts.append(
                {
                    "ray_origin": origin[keep].float(),
                    "ray_dir": direction[keep].float(),
                    "ray_depth": depth[keep],
                    "ray_class": table["ray_class"][keep],
                    "ray_semantic": table["ray_semantic"][keep],
                    "ray_camera": table["ray_camera"][keep],
                    "ray_uv": table["ray_uv"][keep],
                    "ray_time": torch.full((int(keep.sum()),), off, dtype=torch.int8),
                    "ray_source": torch.full((int(keep.sum()),), len(sources), dtype=torch.int16),
                }
            )
            sources.append(
                (table["teacher_features"], tuple(int(v) for v in table["ray_image_hw"]))
            )
        return {k: torch.cat([p[k] for p in parts]) for k in parts[0]}, sources

    def unseen(self, item: dict, offsets, grid: VoxelGrid) -> torch.Tensor:
        """(N_vox,) bool: voxels no candidate ray of the frame crosses or ends in (memoised
        per frame, up to `unseen_cache_size` frames: the candidates do not change between
        steps, only the draw does)."""
        key = item["frame_key"]
        if key not in self._unseen:
            cand, _ = self.candidates(item, offsets, grid)
            crossed, ends = ray_voxels(
                cand["ray_origin"].numpy(), cand["ray_dir"].numpy(), cand["ray_depth"].numpy(), grid
            )
            mask = np.ones(grid.num_voxels, bool)
            mask[crossed] = False
            mask[ends] = False
            self._unseen[key] = torch.from_numpy(mask)
            if len(self._unseen) > self.unseen_cache_size:
                self._unseen.popitem(last=False)
        return self._unseen[key]


def draw_rays(
    cand: dict,
    sources: list,
    num_rays: int,
    class_counts: torch.Tensor | None,
    adjacent_weight: float = 0.3,
    dynamic_weight: float = 0.0,
    generator: torch.Generator | None = None,
) -> dict:
    """`num_rays` of the candidates by RenderOcc's weighted ray sampling (time x dynamic x
    class balance over `class_counts`), with their teacher features sampled from their own
    frame's map: the `rays.RAY_KEYS` of the drawn rays."""
    cls = cand["ray_class"].long()
    lw = time_log_weight(cand["ray_time"], cls, adjacent_weight, dynamic_weight)
    lw = lw + log_class_balance(cls, class_counts)
    idx = weighted_draw(lw, num_rays, generator)
    src, cam, uv = (
        cand["ray_source"][idx].long(),
        cand["ray_camera"][idx].long(),
        cand["ray_uv"][idx],
    )
    dim = int(sources[0][0].shape[1]) if sources else 0
    feats = torch.zeros(idx.numel(), dim)
    for s, c in torch.unique(torch.stack([src, cam], 1), dim=0).tolist():
        sel = torch.nonzero((src == s) & (cam == c)).squeeze(1)
        fmap, hw = sources[s]
        feats[sel] = sample_feature_map(fmap[c], uv[sel].numpy(), hw)
    out = {k: cand[k][idx] for k in ("ray_origin", "ray_dir", "ray_depth", "ray_class")}
    out.update(
        ray_semantic=cand["ray_semantic"][idx],
        ray_time=cand["ray_time"][idx],
        ray_features=feats.half(),
    )
    return out
