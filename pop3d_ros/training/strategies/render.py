"""Rendering supervision (RenderOcc, in its label-free open-vocabulary form, LangOcc's idea).

The model must predict a density field (`heads.occupancy_output = "density"`): rays from the
cameras are volume-rendered through sigma and the voxel features (`training.render`), the
rendered voxel feature goes through the language head once per ray, and the losses are 2D:

- depth: SILog between rendered depth and the distance to the LiDAR point the ray aims at;
- features: MSE between the rendered language feature and the 2D teacher's dense feature at
  the ray's pixel (x feature_weight);
- `density_sampling`: sigma trilinear between voxel centres (RenderOcc) or constant per
  voxel ("nearest"; `training.render` says why);
- RenderOcc's regularisers: distortion (0.01) and entropy of the leftover transmittance (0.01);
- optional ray termination (`termination_weight`, not in RenderOcc): -log of the rendering
  weight in the voxel of the ray's LiDAR return (`training.render.termination_loss`), the
  same LiDAR depth in the form a voxel grid can hold;
- optional free-space prior (`sparsity_weight`, not in RenderOcc, whose Occ3D evaluation
  ignores voxels no camera sees): the mean voxel opacity over the whole grid
  (`sparsity_scope="grid"`) or over the voxels no ray of the frame's candidate pool crosses
  or ends in (`"unseen"`: below the ground, behind surfaces, above the highest return), so
  those default to empty; "unseen" leaves the voxels the rays speak for to the rays;
- optional 2D semantics (`semantic_weight`, where 2D class maps exist): cross-entropy of the
  rendered feature's zero-shot logits against the pixel's class;
- `with_occupancy` (strategy `pop3d_render`): POP-3D's LiDAR occupancy loss on the density
  logits and its voxel feature loss, added to the above;
- a depth-bin lifting (`lifting.depth_bins`): its LiDAR depth-bin cross-entropy as
  `lift_depth` (x lift_depth_weight).

Rays are chosen per step in `collate`. `ray_sampling="pool"`: each prepared frame holds a
fixed pool of `ray_pool` rays of its own and of each adjacent frame (`aux_offsets`); `aux`
and `weighted` (WRS, class balance over the pool) choose from it, so one prepared cache serves
those variants. `ray_sampling="renderocc"`: RenderOcc as published (`training.ray_frames`):
every LiDAR-pixel ray of the frame and of its neighbours (`aux_offsets`, +-3 as published)
is a candidate at every step, drawn by WRS with the class balance over the whole training
set's rays (`attach_frames` reads the prepared frames for both).
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F

from pop3d_ros.data.classes import IGNORE
from pop3d_ros.model.inputs import model_inputs
from pop3d_ros.model.pop3d import density_from_logits
from pop3d_ros.training.ray_frames import RayFrames, draw_rays
from pop3d_ros.training.rays import (
    RAY_KEYS,
    concat_rays,
    frame_rays,
    relative_pose,
    select_rays,
    unseen_voxels,
)
from pop3d_ros.training.render import (
    density_sparsity,
    distortion_loss,
    opacity_entropy,
    render_rays,
    silog_loss,
    termination_loss,
)
from pop3d_ros.training.strategies.base import Strategy, _subsample


class RenderStrategy(Strategy):
    """2D rendering supervision of a density field; see the module docstring."""

    name = "render"

    def __init__(
        self,
        teacher,
        classify,
        neighbour=None,
        aux_offsets=(-1, 1),
        aux: bool = False,
        weighted: bool = False,
        num_rays: int = 2048,
        ray_pool: int = 2048,
        adjacent_weight: float = 0.3,
        depth_weight: float = 1.0,
        distortion_weight: float = 0.01,
        entropy_weight: float = 0.01,
        termination_weight: float = 0.0,
        sparsity_weight: float = 0.0,
        sparsity_scope: str = "grid",
        semantic_weight: float = 0.0,
        class_embeddings=None,
        with_occupancy: bool = False,
        step_voxels: float = 0.5,
        density_sampling: str = "trilinear",
        grid=None,
        ray_sampling: str = "pool",
        key_of_token=None,
        **kw,
    ):
        """`teacher(sample) -> {"features": (N_cam, D, h, w)}`; `classify(features (M, D)) ->
        (M,)` the teacher's zero-shot classes (for ray weights); `neighbour(sample, offset)
        -> sample or None` the frame `offset` steps away in the same drive (aux rays);
        `class_embeddings` (16, D) for the optional 2D semantic loss; `grid` the model's
        VoxelGrid (needed by `sparsity_scope="unseen"`, which marks voxels per frame);
        `ray_sampling` "pool" or "renderocc" (module doc), the latter with `key_of_token`
        (a prev/next token -> the prepared frame's key) and `attach_frames` before training."""
        super().__init__(**kw)
        if ray_sampling not in ("pool", "renderocc"):
            raise ValueError(f"ray_sampling must be pool or renderocc, not {ray_sampling!r}")
        if ray_sampling == "renderocc" and grid is None:
            raise ValueError('ray_sampling="renderocc" needs the model\'s grid')
        if sparsity_scope not in ("grid", "unseen"):
            raise ValueError(f"sparsity_scope must be grid or unseen, not {sparsity_scope!r}")
        if sparsity_scope == "unseen" and grid is None:
            raise ValueError('sparsity_scope="unseen" needs the model\'s grid')
        if semantic_weight > 0 and class_embeddings is None:
            raise ValueError("semantic_weight > 0 needs class_embeddings")
        self.teacher = teacher
        self.classify = classify
        self.neighbour = neighbour
        self.ray_sampling = ray_sampling
        self.key_of_token = key_of_token or (lambda token: token)
        self.ray_frames: RayFrames | None = None
        self.class_counts = None
        renderocc = ray_sampling == "renderocc"
        self.aux_offsets = (
            tuple(int(o) for o in aux_offsets) if neighbour is not None or renderocc else ()
        )
        self.aux = aux
        self.weighted = weighted
        self.num_rays = num_rays
        self.ray_pool = ray_pool
        self.adjacent_weight = adjacent_weight
        self.depth_weight = depth_weight
        self.distortion_weight = distortion_weight
        self.entropy_weight = entropy_weight
        self.termination_weight = termination_weight
        self.sparsity_weight = sparsity_weight
        self.sparsity_scope = sparsity_scope
        self.grid = grid
        self.semantic_weight = semantic_weight
        self.class_embeddings = (
            None
            if class_embeddings is None
            else F.normalize(torch.as_tensor(np.asarray(class_embeddings)).float(), dim=-1)
        )
        self.with_occupancy = with_occupancy
        self.step_voxels = step_voxels
        self.density_sampling = density_sampling
        if with_occupancy:
            self.name = "pop3d_render"

    # -- data ------------------------------------------------------------------------------
    def prepare(self, sample: dict, model_cfg) -> dict:
        grid = model_cfg.voxel_grid
        item = model_inputs(sample, tuple(model_cfg.image_size))
        # LiDAR occupancy: the loss of pop3d_render, and the prior baseline for both.
        item["occ_target"] = self.occupancy_target(sample, grid)
        self.add_depth_target(item, sample, model_cfg)
        tf = self.teacher(sample)["features"]
        if self.with_occupancy:
            targets = _subsample(
                self.feature_targets(sample, tf, grid, item["occ_target"]),
                self.max_feature_voxels,
                str(sample.get("token", "")),
            )
        else:
            d = int(tf.shape[1])
            targets = {
                "voxel_index": torch.zeros(0, dtype=torch.int64),
                "features": torch.zeros(0, d),
                "weight": torch.zeros(0),
            }
        item.update(
            voxel_index=targets["voxel_index"],
            features=targets["features"].half(),
            weight=targets["weight"],
        )
        if self.ray_sampling == "renderocc":
            return self._prepare_table(item, sample, tf, grid)
        parts = [frame_rays(sample, tf, self.classify, grid, max_rays=self.ray_pool)]
        for off in self.aux_offsets:
            other = self.neighbour(sample, off)
            if other is None:
                continue
            parts.append(
                frame_rays(
                    other,
                    self.teacher(other)["features"],
                    self.classify,
                    grid,
                    to_current=relative_pose(sample, other),
                    max_rays=self.ray_pool,
                    time=off,
                )
            )
        item.update(concat_rays(parts))
        return item

    def _prepare_table(self, item: dict, sample: dict, tf, grid) -> dict:
        """The frame's own rays, all of them, with camera and pixel instead of features, its
        teacher map and pose, and its neighbours' keys (`training.ray_frames`)."""
        rays = frame_rays(sample, tf, self.classify, grid, max_rays=0, with_features=False)

        def key(token):
            return self.key_of_token(token) if token else ""

        item.update(rays)
        item.update(
            teacher_features=torch.as_tensor(tf).half(),
            ego_to_world=torch.from_numpy(np.asarray(sample["ego_to_world"], np.float64)),
            ray_image_hw=torch.tensor(sample["images"].shape[1:3], dtype=torch.int64),
            frame_key=key(sample.get("token")),
            frame_prev=key(sample.get("prev")),
            frame_next=key(sample.get("next")),
        )
        return item

    def attach_frames(self, root, keys) -> None:
        """RenderOcc sampling reads the neighbours' rays from the prepared frames and counts
        the training set's rays per class (RenderOcc's dataset-wide class balance)."""
        if self.ray_sampling != "renderocc":
            return
        self.ray_frames = RayFrames(root, keys)
        self.class_counts = self.ray_frames.class_counts()

    def collate(self, items: list[dict], num_voxels: int) -> dict:
        if self.ray_sampling == "renderocc":
            return self._collate_renderocc(items, num_voxels)
        batch = super().collate(items, num_voxels)
        if self.sparsity_weight > 0 and self.sparsity_scope == "unseen":
            # From the frame's whole candidate pool (the adjacent frames' too when they are
            # trained on), not the step's draw: a voxel is left to the prior only if no ray
            # the run renders could ask for matter there.
            batch["ray_unseen"] = torch.stack(
                [unseen_voxels(it, self.grid, current_only=not self.aux) for it in items]
            )
        chosen = []
        for b, it in enumerate(items):
            idx = select_rays(
                it, self.aux, self.weighted, self.num_rays, adjacent_weight=self.adjacent_weight
            )
            part = {k: it[k][idx] for k in RAY_KEYS}
            part["ray_batch"] = torch.full((idx.numel(),), b, dtype=torch.int64)
            chosen.append(part)
        for k in (*RAY_KEYS, "ray_batch"):
            batch[k] = torch.cat([c[k] for c in chosen])
        return batch

    def _collate_renderocc(self, items: list[dict], num_voxels: int) -> dict:
        if self.ray_frames is None:
            raise RuntimeError("RenderOcc ray sampling needs attach_frames(prepared, keys) first")
        batch = super().collate(items, num_voxels)
        grid, offsets = self.grid, self.aux_offsets
        if self.sparsity_weight > 0 and self.sparsity_scope == "unseen":
            batch["ray_unseen"] = torch.stack(
                [self.ray_frames.unseen(it, offsets, grid) for it in items]
            )
        chosen = []
        for b, it in enumerate(items):
            cand, sources = self.ray_frames.candidates(it, offsets, grid)
            part = draw_rays(cand, sources, self.num_rays, self.class_counts, self.adjacent_weight)
            part["ray_batch"] = torch.full((part["ray_depth"].numel(),), b, dtype=torch.int64)
            chosen.append(part)
        for k in (*RAY_KEYS, "ray_batch"):
            batch[k] = torch.cat([c[k] for c in chosen])
        return batch

    # -- model -----------------------------------------------------------------------------
    def forward_heads(self, model, out: dict, batch: dict) -> dict:
        """Inside the training wrapper's forward: render every frame's rays, run the language
        head once per ray (on the rendered voxel feature) and, for pop3d_render, at the
        supervised voxels."""
        cfg = model.cfg
        grid = cfg.voxel_grid
        sigma = density_from_logits(out["occupancy_logits"].float(), cfg.heads)
        vf = out["voxel_features"].float()
        depth, opacity, feats, dist, ent, term = [], [], [], [], [], []
        for b in range(sigma.shape[0]):
            sel = batch["ray_batch"] == b
            if not bool(sel.any()):
                continue
            r = render_rays(
                sigma[b],
                batch["ray_origin"][sel],
                batch["ray_dir"][sel],
                grid,
                features=vf[b],
                step_voxels=self.step_voxels,
                density_sampling=self.density_sampling,
            )
            depth.append(r["depth"])
            opacity.append(r["opacity"])
            # The expected feature where the ray stops (normalised by its opacity), so the
            # language target does not also pull on how opaque the ray is.
            feats.append(r["features"] / (r["opacity"][:, None] + 1e-6))
            dist.append(distortion_loss(r["weights"], r["t"], r["far"]))
            ent.append(opacity_entropy(r["transmittance_last"]))
            if self.termination_weight > 0:
                term.append(
                    termination_loss(
                        r["weights"],
                        r["t"],
                        batch["ray_origin"][sel],
                        batch["ray_dir"][sel],
                        batch["ray_depth"][sel].float(),
                        grid,
                    )
                )
        zero = sigma.sum() * 0.0
        c_v = vf.shape[-1]
        rendered = torch.cat(feats) if feats else vf.new_zeros(0, c_v)
        result = {
            "render_depth": torch.cat(depth) if depth else sigma.new_zeros(0),
            "render_opacity": torch.cat(opacity) if opacity else sigma.new_zeros(0),
            "render_language": model.language_head(rendered),
            "render_distortion": torch.stack(dist).mean() if dist else zero,
            "render_entropy": torch.stack(ent).mean() if ent else zero,
            "render_termination": torch.stack(term).mean() if term else zero,
            "render_sparsity": self._sparsity(sigma, batch) if self.sparsity_weight > 0 else zero,
        }
        if self.with_occupancy:
            flat = vf.reshape(-1, c_v)
            result["language_features"] = model.language_head(flat[batch["voxel_index"]])
        return result

    def _sparsity(self, sigma: torch.Tensor, batch: dict) -> torch.Tensor:
        if self.sparsity_scope == "grid":
            return density_sparsity(sigma)
        return density_sparsity(sigma, batch["ray_unseen"].reshape(sigma.shape))

    def losses(self, outputs: dict, batch: dict) -> dict:
        terms = {
            "depth": silog_loss(outputs["render_depth"], batch["ray_depth"].float()),
            "dist": outputs["render_distortion"],
            "entropy": outputs["render_entropy"],
        }
        terms["ft"] = self.ft_loss(outputs["render_language"], batch["ray_features"])["ft"]
        loss = (
            self.depth_weight * terms["depth"]
            + self.feature_weight * terms["ft"]
            + self.distortion_weight * terms["dist"]
            + self.entropy_weight * terms["entropy"]
        )
        if self.termination_weight > 0:
            terms["term"] = outputs["render_termination"]
            loss = loss + self.termination_weight * terms["term"]
        if self.sparsity_weight > 0:
            terms["sparse"] = outputs["render_sparsity"]
            loss = loss + self.sparsity_weight * terms["sparse"]
        if self.semantic_weight > 0:
            terms["sem"] = self._semantic_loss(outputs["render_language"], batch["ray_semantic"])
            loss = loss + self.semantic_weight * terms["sem"]
        if self.with_occupancy:
            occ = self.pop3d_terms(outputs, batch)
            terms.update(occ=occ["occ"], ft_vox=occ["ft"])
            loss = loss + occ["loss"]
        lift = self.lift_depth_loss(outputs, batch)
        if lift is not None:  # the depth-bin head; `depth` here is the rendered depth
            terms["lift_depth"] = lift
            loss = loss + self.lift_depth_weight * lift
        terms["loss"] = loss
        return terms

    def _semantic_loss(self, feats: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        keep = labels.long() != IGNORE
        if not bool(keep.any()):
            return feats.sum() * 0.0
        logits = F.normalize(feats[keep].float(), dim=-1) @ self.class_embeddings.T / 0.07
        return F.cross_entropy(logits, labels.long()[keep])
