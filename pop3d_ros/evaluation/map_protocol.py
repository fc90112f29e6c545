"""`pop3d eval-map`'s protocol: a map of a synthetic drive scored against the static world.

Per drive (one seed, N frames), on a world-aligned grid that is the map's own lattice
(`data/synthetic/map_truth.drive_grid`, the bounding box of every frame's grid):
- ground truth = the static primitives and the ground (`static_concepts`): a voxel where a
  moving agent only passed is free; the layers below the ground are unknown and ignored;
- scored voxels = the voxels some camera saw: the Occ3D-style camera mask
  (`camera_visibility`, rays cast through the true depth maps) of every frame on the drive's
  grid (`reach="cameras"`, default), or only the part of each frame's mask inside that
  frame's own grid (`reach="grid"`: Occ3D's mask of the frame); the other reach is scored
  too (keys ending `_own_grid` / `_full_reach`);
- the voxels a moving agent occupies at the last frame are left out of the map's scores
  (the map rightly holds a car that is there now; the static truth calls it free).

Keys (design.md section 4, issue 28):
- `map_iou`: the map after the last frame; `map_iou_naive`: the same code, settings and
  protocol with `visibility="all"` (log-odds of every voxel of every frame);
  `frame_iou_mean`: each frame's own prediction on the map lattice (free outside its grid),
  over that frame's visible voxels, the moving agents of that frame left out.
- `map_retrieval_map` / `frame_retrieval_map_mean`: long-tail retrieval AP
  (`evaluation/retrieval.RetrievalMetrics`: occupied voxels ranked by similarity, relevant =
  the static truth's voxels of the concept that some camera saw); the map is ranked once per
  drive, each frame over its own visible voxels.
- `map_grounding_recall` / `frame_grounding_recall_mean`: static instances of the concepts
  with a seen voxel, found as `min_score` objects (`ground_objects`) within 1.5 m.
- `trail_fraction`: of the map's occupied seen voxels, those where only moving agents ever
  were (not at the last frame).
- `retention`: voxels the map held occupied right after the last frame that saw them, out of
  view at the last frame, that it still holds at the end.
- `occluded_kept_fraction`: static occupied voxels seen earlier and out of view at the last
  frame that the map holds at the end (bounded by the model's own recall).
- `map_voxels`, `map_occupied_voxels`, `map_feature_voxels`, `map_bytes`,
  `mb_per_10k_occupied`, `map_update_ms` (median per frame), `map_query_ms` (median over the
  concept queries on the final map).
Further maps scored in the same pass (`variants`) report the same keys with `_<name>`.
"""

from __future__ import annotations

import dataclasses
import statistics
import time

import numpy as np

from pop3d_ros.data.classes import EMPTY, IGNORE
from pop3d_ros.data.synthetic.map_truth import (
    drive_grid,
    moving_mask,
    static_concepts,
    static_instances,
)
from pop3d_ros.mapping.config import MapConfig
from pop3d_ros.mapping.online_map import OnlineMap

REACHES = ("grid", "cameras")  # a frame's visible voxels: inside its grid, or all it saw
REACH_SUFFIX = {"grid": "_own_grid", "cameras": "_full_reach"}


class Counts:
    """TP / FP / FN of occupied vs free."""

    def __init__(self):
        self.tp = self.fp = self.fn = 0

    def add(self, pred: np.ndarray, gt: np.ndarray, mask: np.ndarray) -> float:
        """Accumulate; returns this call's IoU (NaN when nothing is occupied either way)."""
        p, g = pred[mask], gt[mask]
        tp, fp, fn = int((p & g).sum()), int((p & ~g).sum()), int((~p & g).sum())
        self.tp, self.fp, self.fn = self.tp + tp, self.fp + fp, self.fn + fn
        return tp / (tp + fp + fn) if tp + fp + fn else float("nan")

    def iou(self) -> float | None:
        d = self.tp + self.fp + self.fn
        return round(self.tp / d, 4) if d else None


def dense_state(online_map: OnlineMap, grid) -> tuple[np.ndarray, np.ndarray]:
    """(occupied bool (V,), feature row int64 (V,), -1 none) of the map on `grid`'s voxels."""
    s = online_map.store
    index = s.voxel_index(grid.centers().reshape(-1, 3))
    addr = s.find(index)
    have = addr >= 0
    occ = np.zeros(addr.size, bool)
    rows = np.full(addr.size, -1, np.int64)
    lo = s.log_odds.reshape(-1)[addr[have]]
    seen = s.updates.reshape(-1)[addr[have]] > 0
    occ[have] = seen & (lo > online_map.config.occupied_log_odds)
    rows[have] = s.feature_row.reshape(-1)[addr[have]]
    return occ, rows


def student_features(online_map: OnlineMap, occupied: np.ndarray, rows: np.ndarray):
    """(n_occ, D) float32 features of the occupied voxels in index order (zero without one)."""
    occ_rows = rows[np.flatnonzero(occupied)]
    feats = np.zeros((occ_rows.size, max(online_map.feature_dim, 1)), np.float32)
    has = occ_rows >= 0
    if has.any():
        feats[has] = online_map.store.feature_values(occ_rows[has])
    return feats


def instance_presence(instances: dict, concepts: np.ndarray, mask: np.ndarray, grid) -> dict:
    """Grounding truth: each static instance with the count of its concept's voxels inside its
    box (grown by half a voxel) that `mask` marks seen (`points` > 0: present)."""
    centres = grid.centers().reshape(-1, 3)
    half = grid.voxel_size / 2
    counts = np.zeros(len(instances["instance_ids"]), np.int64)
    seen_idx = np.flatnonzero(mask & (concepts < IGNORE) & (concepts != EMPTY))
    pts, lab = centres[seen_idx], concepts[seen_idx]
    for n, (cid, c, size) in enumerate(zip(instances["instance_concepts"],
                                           instances["instance_centers"],
                                           instances["instance_sizes"], strict=True)):  # fmt: skip
        sel = lab == cid
        if not sel.any():
            continue
        inside = np.all(np.abs(pts[sel] - c) <= size / 2 + half, axis=1)
        counts[n] = int(inside.sum())
    return {"ids": instances["instance_ids"], "concepts": instances["instance_concepts"],
            "centres": np.asarray(instances["instance_centers"], np.float64),
            "points": counts}  # fmt: skip


class DriveEvaluation:
    """Scores one drive (see the module docstring). Feed `add(frame)` per `DriveFrame`.

    `reach`: which camera-visible voxels a frame contributes: "grid" (the Occ3D mask of the
    frame: on its own grid) or "cameras" (everything its cameras saw on the drive grid). The
    other reach is scored too, under keys ending in `_full_reach` / `_own_grid`."""

    def __init__(self, world, frames: int, ego_grid, config: MapConfig, retrieval_factory,
                 pixel_stride: int = 2, reach: str = "cameras",
                 variants: dict[str, MapConfig] | None = None):  # fmt: skip
        if reach not in REACHES:
            raise ValueError(f"reach must be one of {REACHES}, got {reach!r}")
        self.world, self.frames, self.ego_grid = world, frames, ego_grid
        self.config, self.reach = config, reach
        self.grid = drive_grid(world, frames, ego_grid, config.origin, config.voxel_size)
        self.static = static_concepts(world, self.grid).reshape(-1)
        self.static_occ = (self.static != EMPTY) & (self.static != IGNORE)
        self.known = self.static != IGNORE
        self.instances = static_instances(world)
        self.pixel_stride = pixel_stride
        configs = {"map": config, "naive": dataclasses.replace(config, visibility="all")}
        configs.update(variants or {})
        self.maps = {name: OnlineMap(c) for name, c in configs.items()}
        v = self.grid.num_voxels
        self.seen = {r: np.zeros(v, bool) for r in REACHES}  # some camera saw it
        self.moving_ever = np.zeros(v, bool)
        self.moving_now = np.zeros(v, bool)
        self.visible_now = np.zeros(v, bool)
        self.held = {k: np.zeros(v, bool) for k in self.maps}  # state when last seen
        self.update_ms = {k: [] for k in self.maps}
        self.frame_ious: dict[str, list[float]] = {r: [] for r in REACHES}
        self.frame_retrieval = retrieval_factory()
        self.centres = self.grid.centers().reshape(-1, 3)

    def visible(self, frame) -> dict[str, np.ndarray]:
        """reach -> bool (V,): the Occ3D-style camera mask of the frame (rays through the true
        depth) on the drive grid: every voxel its cameras saw, and those inside its grid."""
        from pop3d_ros.evaluation.occ3d import camera_visibility

        vis = camera_visibility(frame.sample, self.grid, self.pixel_stride,
                                ego_to_grid=frame.pose).reshape(-1)  # fmt: skip
        to_ego = np.linalg.inv(frame.pose)
        ego = self.centres[vis] @ to_ego[:3, :3].T + to_ego[:3, 3]
        _, inside = self.ego_grid.points_to_index(ego)
        own = np.zeros_like(vis)
        own[np.flatnonzero(vis)[inside]] = True
        return {"cameras": vis, "grid": own}

    def add(self, frame) -> None:
        masks = self.visible(frame)
        vis = masks[self.reach]
        moving = moving_mask(self.world, frame.index, self.grid).reshape(-1)
        for r in REACHES:
            self.seen[r] |= masks[r]
        self.moving_ever |= moving
        self.moving_now, self.visible_now = moving, vis
        # the frame alone: its prediction on the map lattice (free outside its grid), scored
        # on the voxels its cameras saw
        single = OnlineMap(dataclasses.replace(self.config, visibility="all"))
        single.integrate(frame.prediction, frame.pose, frame.stamp)
        occ, rows = dense_state(single, self.grid)
        for r in REACHES:
            iou = Counts().add(occ, self.static_occ, masks[r] & self.known & ~moving)
            if np.isfinite(iou):
                self.frame_ious[r].append(iou)
        self._retrieval(self.frame_retrieval, single, occ, rows, vis & self.known & ~moving)
        for name, m in self.maps.items():
            report = m.integrate(frame.prediction, frame.pose, frame.stamp)
            if not report.accepted:
                raise RuntimeError(f"frame {frame.index} refused by the {name} map: "
                                   f"{report.reason}")  # fmt: skip
            self.update_ms[name].append(report.elapsed_ms)
            occ_now, _ = dense_state(m, self.grid)
            self.held[name][vis] = occ_now[vis]

    def _retrieval(self, metrics, online_map, occupied, rows, mask) -> None:
        if metrics is None or online_map.feature_dim == 0:
            return
        gt = np.where(mask, self.static, IGNORE).astype(np.uint8)
        metrics.add(
            gt_concepts=gt,
            observed=gt != IGNORE,
            occupied=occupied,
            student=student_features(online_map, occupied, rows),
            centres=self.centres,
            voxel_size=self.grid.voxel_size,
            instances=instance_presence(self.instances, self.static, mask, self.grid),
        )

    def result(self, map_retrieval: dict, query_embeddings) -> dict:
        """Scores of the finished drive; `map_retrieval` (map name -> RetrievalMetrics or
        None) accumulates each map's retrieval across drives. `raw` holds the counts behind
        every ratio, so drives pool exactly (`pool`). The map's keys have no suffix, every
        other map's keys end in `_<name>`."""
        out = {"frames": self.frames, "grid_shape": list(self.grid.shape), "reach": self.reach}
        other = next(r for r in REACHES if r != self.reach)
        raw = {"frame_ious": self.frame_ious[self.reach],
               f"frame_ious{REACH_SUFFIX[other]}": self.frame_ious[other]}  # fmt: skip
        seen = self.seen[self.reach]
        scored = seen & self.known & ~self.moving_now
        out_of_view = seen & ~self.visible_now
        trail = self.moving_ever & ~self.moving_now & (self.static == EMPTY)
        for name, m in self.maps.items():
            occ, rows = dense_state(m, self.grid)
            sfx = "" if name == "map" else f"_{name}"
            for r in REACHES:
                c = Counts()
                c.add(occ, self.static_occ, self.seen[r] & self.known & ~self.moving_now)
                key = f"map_iou{sfx}" + ("" if r == self.reach else REACH_SUFFIX[r])
                raw[key] = [c.tp, c.fp, c.fn]
            occ_seen = occ & seen
            held = self.held[name] & out_of_view
            static_out = self.static_occ & out_of_view
            raw[f"trail_fraction{sfx}"] = [int((occ_seen & trail).sum()), int(occ_seen.sum())]
            raw[f"retention{sfx}"] = [int((held & occ).sum()), int(held.sum())]
            raw[f"occluded_kept_fraction{sfx}"] = [int((static_out & occ).sum()),
                                                   int(static_out.sum())]  # fmt: skip
            raw[f"map_update_ms{sfx}"] = list(self.update_ms[name])
            if map_retrieval.get(name) is not None and m.feature_dim:
                self._retrieval(map_retrieval[name], m, occ, rows, scored)
            if name == "map":
                out.update(self._size(m))
                raw["map_query_ms"] = _query_times(m, query_embeddings)
        out.update(pool([raw]))
        out["raw"] = raw
        return out

    @staticmethod
    def _size(m: OnlineMap) -> dict:
        st = m.stats()
        occ = max(st["occupied_voxels"], 1)
        return {
            "map_voxels": st["stored_voxels"],
            "map_observed_voxels": st["observed_voxels"],
            "map_occupied_voxels": st["occupied_voxels"],
            "map_feature_voxels": st["feature_voxels"],
            "map_bytes": st["bytes"],
            "mb_per_10k_occupied": round(st["bytes"] / 1e6 * 1e4 / occ, 3),
        }


def _ratio(num, den) -> float | None:
    return round(float(num) / float(den), 4) if den else None


def _query_times(m: OnlineMap, embeddings) -> list[float]:
    times = []
    for emb in embeddings if m.num_features else ():
        t0 = time.perf_counter()
        m.query(emb, top_k=10, min_score=0.9)
        times.append((time.perf_counter() - t0) * 1e3)
    return times


def pool(raws: list[dict]) -> dict:
    """The ratio keys over several drives, from their `raw` counts (pooled, not averaged)."""
    out = {}
    for key in raws[0]:
        vals = [r[key] for r in raws]
        if key.startswith("frame_ious"):
            ious = [v for vs in vals for v in vs]
            name = "frame_iou_mean" + key[len("frame_ious") :]
            out[name] = round(float(np.mean(ious)), 4) if ious else None
        elif key.startswith("map_update_ms") or key == "map_query_ms":
            flat = [v for vs in vals for v in vs]
            out[key] = round(statistics.median(flat), 2) if flat else None
        elif key.startswith("map_iou"):
            tp, fp, fn = np.sum(vals, axis=0)
            out[key] = round(tp / (tp + fp + fn), 4) if tp + fp + fn else None
        else:
            num, den = np.sum(vals, axis=0)
            out[key] = _ratio(num, den)
    return out
