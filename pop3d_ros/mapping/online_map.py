"""The online map: camera sets fused over time into one voxel store in map_frame.

`OnlineMap.integrate(frame, pose, stamp)` is all a caller does per camera set (the ROS node
wires /odom or TF to `pose`); everything else reads the store: `query` (the /query_text
semantics over the map), `costmap`, `cloud`, `save` / `load` (mapping/io.py).

Per camera set:
1. The visibility rule (`visibility.RayVisibility`): the frame's voxels its cameras see,
   given its own prediction (occluded voxels keep their state).
2. Every map voxel whose centre lies in a seen voxel of the frame's grid (nearest voxel,
   so a rotated grid leaves no holes in the map's lattice) adds the logit of the frame's
   P(occupied) to its clamped log-odds: seeing a place free lowers it, so a car that drove
   away leaves no trail.
3. Language: a seen map voxel that the frame predicts occupied and that stays occupied
   folds the frame's feature into its confidence-weighted running mean (weight = the
   frame's P(occupied)); a voxel whose log-odds falls to `feature_release_log_odds` drops
   its feature.
4. Bounded memory: whole blocks farthest from the ego go first (`max_voxels`,
   `max_features`, `radius_m`).
"""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass

import numpy as np

from pop3d_ros.mapping.config import MapConfig, PoseConfig
from pop3d_ros.mapping.costmap import Costmap, project_costmap
from pop3d_ros.mapping.frame import FramePrediction
from pop3d_ros.mapping.poses import pose_problem, transition_problem
from pop3d_ros.mapping.store import UPDATES_MAX, VoxelStore, bf16_tensor
from pop3d_ros.mapping.visibility import VisibilityCache

NO_LABEL = 65535  # cloud label of an occupied voxel without a language feature
EVICT_TO = 0.95  # a map over a memory bound is cut to this fraction of it


@dataclass(frozen=True)
class IntegrationReport:
    """What one `integrate` call did (diagnostics)."""

    accepted: bool
    reason: str = ""  # why the set was refused ("" when accepted)
    stamp: float = 0.0
    seen_voxels: int = 0  # voxels of the frame's grid its cameras see
    updated_voxels: int = 0  # map voxels whose log-odds changed
    fused_features: int = 0  # map voxels that took this frame's language feature
    released_features: int = 0  # voxels that lost their feature (now free)
    evicted_blocks: int = 0
    elapsed_ms: float = 0.0


@dataclass(frozen=True)
class MapCloud:
    """The occupied map voxels (map_frame)."""

    centres: np.ndarray  # (N, 3) float32
    occupancy: np.ndarray  # (N,) float32 P(occupied) of the map (sigmoid of the log-odds)
    labels: np.ndarray | None  # (N,) uint16 zero-shot class index, NO_LABEL without feature


def _logit(p: np.ndarray) -> np.ndarray:
    return np.log(p / (1.0 - p))


class OnlineMap:
    """A sparse voxel map with occupancy and language layers (see the module docstring).

    Thread safety: one lock serialises `integrate`, `clear`, `load` and the readers, so a
    service callback sees one consistent map while a worker integrates.
    """

    def __init__(
        self,
        config: MapConfig | None = None,
        feature_dim: int = 0,
        pose_config: PoseConfig | None = None,
    ):
        self.config = config or MapConfig()
        self.pose_config = pose_config or PoseConfig()
        c = self.config
        self.store = VoxelStore(c.voxel_size, c.origin, c.block_size, feature_dim)
        self._visibility = VisibilityCache()
        self._lock = threading.RLock()
        self._reset_counters()

    def _reset_counters(self) -> None:
        self.frames_integrated = 0
        self.last_stamp: float | None = None
        self.last_pose: np.ndarray | None = None

    # -- state ---------------------------------------------------------------------------
    @property
    def feature_dim(self) -> int:
        return self.store.feature_dim

    @property
    def num_features(self) -> int:
        return self.store.num_features

    def clear(self) -> None:
        with self._lock:
            self.store.clear()
            self._reset_counters()

    def stats(self) -> dict:
        """Sizes: stored voxels, observed, occupied, with a feature, bytes of state."""
        with self._lock:
            addr = self.store.observed_addresses()
            occupied = int((self.store.log_odds.reshape(-1)[addr] > self.config.occupied_log_odds)
                           .sum())  # fmt: skip
            return {
                "blocks": self.store.num_blocks,
                "stored_voxels": self.store.num_voxels,
                "observed_voxels": int(addr.size),
                "occupied_voxels": occupied,
                "feature_voxels": self.store.num_features,
                "bytes": self.store.nbytes(),
                "frames_integrated": self.frames_integrated,
            }

    def lookup(self, index) -> tuple[np.ndarray, np.ndarray]:
        """(log-odds (N,) float32, observed (N,) bool) of voxel indices (N, 3); 0 / False
        where the map never observed the voxel."""
        with self._lock:
            addr = self.store.find(index)
            have = addr >= 0
            lo = np.zeros(addr.shape, np.float32)
            seen = np.zeros(addr.shape, bool)
            lo[have] = self.store.log_odds.reshape(-1)[addr[have]]
            seen[have] = self.store.updates.reshape(-1)[addr[have]] > 0
            return lo, seen

    # -- integration ---------------------------------------------------------------------
    def integrate(
        self,
        frame: FramePrediction,
        pose: np.ndarray,
        stamp: float,
        language: bool = True,
        seen: np.ndarray | None = None,
    ) -> IntegrationReport:
        """Fuse one camera set; `pose` = base_link -> map_frame (4x4) at the set's `stamp`
        (seconds). A refused set (bad pose or prediction) leaves the map untouched and says
        why. `language=False` skips the language layer for this set. `seen`: bool over the
        frame's grid, the voxels to update when a sensor knows them better than the
        visibility rule (e.g. depth); None = the rule of `config.visibility`."""
        t0 = time.perf_counter()
        stamp = float(stamp)
        problem = frame.check() or pose_problem(pose, self.pose_config)
        with self._lock:
            if not problem and not np.isfinite(stamp):
                problem = f"stamp {stamp} is not finite"
            if not problem and self.last_stamp is not None:
                if stamp < self.last_stamp:
                    problem = (f"stamp {stamp:.3f} is older than the last integrated set "
                               f"({self.last_stamp:.3f})")  # fmt: skip
                else:
                    problem = transition_problem(
                        self.last_pose, self.last_stamp, pose, stamp, self.pose_config
                    )
            width = 0 if problem or frame.features is None else np.shape(frame.features)[1]
            if not problem and width and self.store.feature_dim and width != self.feature_dim:
                problem = f"language features of width {width}, the map holds {self.feature_dim}"
            if problem:
                return IntegrationReport(False, problem, stamp)
            if width and not self.store.feature_dim:
                self.store.set_feature_dim(width)  # the width of the first features
            if seen is not None and np.asarray(seen).size != frame.grid.num_voxels:
                return IntegrationReport(False, "seen mask does not match the grid", stamp)
            report = self._integrate(frame, np.asarray(pose, np.float64), stamp, language, t0,
                                     seen)  # fmt: skip
            self.frames_integrated += 1
            self.last_stamp, self.last_pose = stamp, np.asarray(pose, np.float64).copy()
            return report

    def _seen(self, frame: FramePrediction) -> np.ndarray:
        c = self.config
        if c.visibility == "all":
            return np.ones(frame.grid.num_voxels, bool)
        vis = self._visibility.get(frame.grid, frame.cameras, c.ray_spacing_deg)
        if c.visibility == "frustum":
            return vis.frustum
        occluders = np.asarray(frame.probability).reshape(-1) >= c.occluder_p
        return vis.visible(occluders, c.occlusion, int(c.occlusion_limit))

    def _pull(self, grid, pose: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Map voxels (M, 3) whose centres lie in the frame's grid, and those grid voxels' flat
        indices (M,). Nearest-voxel resampling: each map voxel reads the grid voxel holding
        its centre."""
        s = self.store
        corners = grid.corners() @ pose[:3, :3].T + pose[:3, 3]
        i0 = np.floor((corners.min(0) - s.origin) / s.voxel_size).astype(np.int64)
        i1 = np.floor((corners.max(0) - s.origin) / s.voxel_size).astype(np.int64)
        rot, t = pose[:3, :3], pose[:3, 3]
        # Grid coordinates of map voxel centres, separably per map axis:
        # g = (R^T (c - t) - lower) / size with c = origin + (i + 0.5) * voxel_size.
        axes = []
        for d in range(3):
            i = np.arange(i0[d], i1[d] + 1)
            axes.append(s.origin[d] + (i + 0.5) * s.voxel_size[d] - t[d])
        n = [a.size for a in axes]
        shape = grid.shape
        flat = np.zeros(n, np.int64)
        inside = np.ones(n, bool)
        for e in range(3):  # grid axis e
            scale = rot[:, e] / grid.voxel_size[e]
            g = (
                (axes[0] * scale[0] - grid.lower[e] / grid.voxel_size[e])[:, None, None]
                + (axes[1] * scale[1])[None, :, None]
                + (axes[2] * scale[2])[None, None, :]
            ).astype(np.float32)
            cell = np.floor(g, out=g).astype(np.int64)
            inside &= (cell >= 0) & (cell < shape[e])
            flat = flat * shape[e] + cell
        ii, jj, kk = np.nonzero(inside)
        index = np.stack([ii + i0[0], jj + i0[1], kk + i0[2]], axis=1)
        return index, flat[ii, jj, kk]

    def _integrate(self, frame, pose, stamp, language, t0, seen=None) -> IntegrationReport:
        c, s = self.config, self.store
        seen = self._seen(frame) if seen is None else np.asarray(seen, bool).reshape(-1)
        index, flat = self._pull(frame.grid, pose)
        p = np.clip(np.asarray(frame.probability, np.float32).reshape(-1)[flat],
                    c.observation_p_min, c.observation_p_max)  # fmt: skip
        keep = seen[flat]
        if c.occluded_evidence == "occupied":
            # What the rule hides may still be predicted occupied (a car's far side, a wall
            # behind a pole): that evidence is kept; only free evidence needs a clear view.
            keep |= p > 0.5
        index, flat, p = index[keep], flat[keep], p[keep]
        addr = s.ensure(index)
        evidence = c.observation_weight * _logit(p)
        weight = None
        if c.range_scale_m > 0:
            d = s.voxel_centres(index)[:, :2] - pose[:2, 3]
            weight = (1.0 / (1.0 + (d * d).sum(1) / c.range_scale_m**2)).astype(np.float32)
            evidence = evidence * (np.where(evidence < 0, weight, 1.0) if c.range_free_only
                                   else weight)  # fmt: skip
        lo = s.log_odds.reshape(-1)
        new = np.clip(lo[addr] + evidence, c.log_odds_min, c.log_odds_max)
        lo[addr] = new
        up = s.updates.reshape(-1)
        up[addr] = np.minimum(up[addr].astype(np.int64) + 1, UPDATES_MAX).astype(np.uint16)
        fused = 0
        lang_frame = language and self.frames_integrated % int(c.language_every) == 0
        if lang_frame and frame.features is not None and len(frame.feature_index):
            row_of = np.full(frame.grid.num_voxels, -1, np.int64)
            row_of[np.asarray(frame.feature_index, np.int64)] = np.arange(len(frame.feature_index))
            row = row_of[flat]
            sel = (row >= 0) & (new > c.feature_release_log_odds)
            if sel.any():
                feats = np.asarray(frame.features, np.float32)[row[sel]]
                conf = p[sel] if weight is None else p[sel] * weight[sel]
                s.fuse_features(addr[sel], feats, conf, c.feature_weight_max)
                fused = int(sel.sum())
        rows = s.feature_row.reshape(-1)[addr]
        drop = (rows >= 0) & (new <= c.feature_release_log_odds)
        s.remove_features(rows[drop])
        evicted = self._evict(pose[:3, 3])
        return IntegrationReport(
            True,
            "",
            stamp,
            seen_voxels=int(seen.sum()),
            updated_voxels=int(addr.size),
            fused_features=fused,
            released_features=int(drop.sum()),
            evicted_blocks=evicted,
            elapsed_ms=(time.perf_counter() - t0) * 1e3,
        )

    def _evict(self, ego: np.ndarray) -> int:
        """Evict whole blocks, farthest (horizontally) from `ego` first, until the bounds hold.
        Over a bound, it goes down to 95 % of it (`EVICT_TO`), so a map at its bound does the
        full bookkeeping every few sets, not on every set."""
        c, s = self.config, self.store
        over = s.num_voxels > c.max_voxels or s.num_features > c.max_features
        if not (over or c.radius_m > 0) or s.num_blocks == 0:
            return 0
        slots = s.stored_slots()
        dist = np.linalg.norm(s.block_centres(slots)[:, :2] - ego[:2], axis=1)
        out = dist > c.radius_m if c.radius_m > 0 else np.zeros(slots.size, bool)
        vox = s.num_voxels - out.sum() * s.block_voxels
        if vox > c.max_voxels or s.num_features > c.max_features:
            feats_per_block = (s.feature_row[slots] >= 0).sum(1)
            feat = s.num_features - feats_per_block[out].sum()
            max_vox = c.max_voxels - int((1 - EVICT_TO) * c.max_voxels)
            max_feat = c.max_features - int((1 - EVICT_TO) * c.max_features)
            order = np.argsort(-dist, kind="stable")
            order = order[~out[order]]
            vox_after = vox - np.cumsum(np.full(order.size, s.block_voxels))
            feat_after = feat - np.cumsum(feats_per_block[order])
            ok = (vox_after <= max_vox) & (feat_after <= max_feat)
            n = int(np.argmax(ok)) + 1 if ok.any() else order.size
            out[order[:n]] = True
        s.evict(slots[out])
        return int(out.sum())

    # -- readers -------------------------------------------------------------------------
    def _occupied(self) -> tuple[np.ndarray, np.ndarray]:
        """(addresses, log-odds) of the occupied voxels."""
        addr = self.store.observed_addresses()
        lo = self.store.log_odds.reshape(-1)[addr]
        occ = lo > self.config.occupied_log_odds
        return addr[occ], lo[occ]

    def occupied_index(self) -> tuple[np.ndarray, np.ndarray]:
        """(voxel indices (N, 3) int64, log-odds (N,)) of the occupied voxels."""
        with self._lock:
            addr, lo = self._occupied()
            return self.store.address_index(addr), lo

    def cloud(self, class_embeddings=None) -> MapCloud:
        """The occupied voxels; with `class_embeddings` (text.query.encode_classes) each voxel
        with a language feature takes its zero-shot class index."""
        with self._lock:
            s = self.store
            addr, lo = self._occupied()
            centres = s.voxel_centres(s.address_index(addr)).astype(np.float32)
            prob = (1.0 / (1.0 + np.exp(-lo))).astype(np.float32)
            labels = None
            if class_embeddings is not None:
                from pop3d_ros.text.query import classify

                labels = np.full(addr.size, NO_LABEL, np.uint16)
                rows = s.feature_row.reshape(-1)[addr]
                has = rows >= 0
                if has.any():
                    labels[has] = classify(s.feature_values(rows[has]), class_embeddings)
            return MapCloud(centres, prob, labels)

    def query(self, embedding, top_k: int = 10, min_score: float = 0.0, max_objects: int = 100):
        """Cosine similarity of a text embedding (D,) to every occupied map voxel with a
        language feature, the `top_k` best and (min_score > 0) the grounded objects: a
        `pipeline.occupancy.QueryResult` in map_frame."""
        from pop3d_ros.pipeline.grounding import rank_and_ground
        from pop3d_ros.pipeline.occupancy import QueryResult

        t0 = time.perf_counter()
        emb = np.asarray(embedding, np.float32).reshape(-1)
        with self._lock:
            s = self.store
            stamp = self.last_stamp or 0.0
            if s.num_features == 0:
                return QueryResult(False, "the map holds no language features yet", stamp=stamp)
            if emb.size != s.feature_dim:
                return QueryResult(False, f"text space width {emb.size} != map feature width "
                                   f"{s.feature_dim}", stamp=stamp)  # fmt: skip
            norm = float(np.linalg.norm(emb))
            if not np.isfinite(norm) or norm < 1e-12:
                return QueryResult(False, "the text embedding is zero or not finite", stamp=stamp)
            scores, centres = self._scores(emb / norm)
            top, objects, notes = rank_and_ground(
                centres, scores, s.voxel_size, top_k, min_score, max_objects
            )
            return QueryResult(
                True,
                "; ".join(notes),
                stamp=stamp,
                centres=centres,
                scores=scores,
                top=top,
                elapsed_ms=(time.perf_counter() - t0) * 1e3,
                objects=objects,
            )

    def _scores(self, emb: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(cosine similarity (N,), centres (N, 3) float32) of the occupied voxels with a
        feature: one bf16 matrix-vector product over the dense feature pool."""
        import torch

        s = self.store
        n = s.num_features
        pool = bf16_tensor(s.features[:n])
        dots = (pool @ torch.from_numpy(emb).to(torch.bfloat16)).float().numpy()
        scores = (dots / np.maximum(s.feature_norm[:n], 1e-12)).astype(np.float32)
        c = self.config
        if c.feature_release_log_odds >= c.occupied_log_odds:  # every feature's voxel is occupied
            return scores, s.feature_centre[:n].copy()
        occ = s.log_odds.reshape(-1)[s.feature_owner[:n]] > c.occupied_log_odds
        return scores[occ], s.feature_centre[:n][occ]

    def costmap(self, config=None) -> Costmap:
        """The nav_msgs/OccupancyGrid projection of the map (costmap.py)."""
        with self._lock:
            s = self.store
            addr = s.observed_addresses()
            return project_costmap(
                s.address_index(addr),
                s.log_odds.reshape(-1)[addr],
                s.voxel_size,
                s.origin,
                self.config.occupied_log_odds,
                config,
            )

    # -- files ---------------------------------------------------------------------------
    def save(self, path):
        """Write the map to one `.npz` (mapping/io.py); returns the path written."""
        from pop3d_ros.mapping.io import save_map

        with self._lock:
            return save_map(self, path)

    @classmethod
    def load(cls, path, config: MapConfig | None = None, max_bytes: int | None = None,
             pose_config: PoseConfig | None = None) -> OnlineMap:  # fmt: skip
        """A map from a file written by `save` (mapping/io.py `read_map`: nothing in the file
        runs, a crafted or truncated one raises MapFileError with one line)."""
        from pop3d_ros.mapping.io import fill_store, read_map

        f = read_map(path, config, max_bytes)
        m = cls(f.config, feature_dim=f.feature_dim, pose_config=pose_config)
        fill_store(m.store, f)
        m.frames_integrated = f.frames_integrated
        m.last_stamp, m.last_pose = f.last_stamp, f.last_pose
        return m
