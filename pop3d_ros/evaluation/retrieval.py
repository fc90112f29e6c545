"""Text-based retrieval and grounding of long-tail concepts (POP-3D sec. 3.3, quantified).

For every long-tail concept (stairs, fire hydrant, ...) present in a held-out frame:
- Retrieval: the voxels are ranked by cosine similarity to the concept's text query and
  scored by average precision (AP) against the voxels of that concept. Ground truth follows
  the POP-3D protocol (`eval_labels`): a voxel holding LiDAR returns takes the majority
  concept of its points; only those observed voxels can be relevant. The student ranks its
  predicted-occupied voxels in the observed region (unobserved ones have no label either
  way); relevant voxels it did not predict occupied count as never retrieved.
  Baselines on the same relevant voxels: the parent class's query ("building" for stairs,
  what a closed 16-class vocabulary could ask), the 2D teacher's features back-projected via
  LiDAR (it ranks the voxels that hold camera-visible LiDAR points), and a random ranking of
  the student's voxels (chance).
- Grounding: the query's scores over all predicted-occupied voxels (as the node has them)
  grouped into objects by `pipeline.grounding.ground_objects` (voxels >= min_score); a GT
  instance of the concept with LiDAR returns in the grid is found when a returned object's
  centre lies within `match_radius` (1.5 m) of the instance's box centre.

Per concept, AP is averaged over the frames where it is present; the map averages concepts.
All accumulators are sums, so DDP ranks combine with one all-reduce.
"""

from __future__ import annotations

import numpy as np
import torch

from pop3d_ros.data.classes import IGNORE
from pop3d_ros.data.concepts import CONCEPT_ID, NUM_CONCEPTS
from pop3d_ros.pipeline.grounding import ground_objects

_KINDS = ("student", "parent", "teacher", "chance")


def average_precision(scores, relevant, n_relevant: int | None = None) -> float:
    """AP of ranking items by `scores` (descending; ties keep input order) for the
    `relevant` (bool) ones: the mean over all `n_relevant` relevant items (default: those
    in the list) of the precision at each one's rank; relevant items missing from the list
    add 0. NaN when nothing is relevant."""
    scores = np.asarray(scores, np.float64).reshape(-1)
    relevant = np.asarray(relevant, bool).reshape(-1)
    if scores.shape != relevant.shape:
        raise ValueError(f"{scores.size} scores but {relevant.size} relevance flags")
    total = int(relevant.sum()) if n_relevant is None else int(n_relevant)
    if total < relevant.sum():
        raise ValueError("n_relevant is smaller than the relevant items in the list")
    if total == 0:
        return float("nan")
    order = np.argsort(-scores, kind="stable")
    hits = relevant[order]
    ranks = np.flatnonzero(hits) + 1  # 1-based ranks of the relevant items
    precision = np.arange(1, ranks.size + 1) / ranks
    return float(precision.sum() / total)


def voxel_concepts(points, concepts, grid) -> np.ndarray:
    """(num_voxels,) uint8: the majority concept of each voxel's LiDAR points (lowest id
    on ties), IGNORE where a voxel holds no point with a concept."""
    idx, inside = grid.points_to_index(np.asarray(points, np.float32))
    flat = grid.flat_index(idx[inside])
    lab = np.asarray(concepts).astype(np.int64)[inside]
    known = lab < NUM_CONCEPTS
    votes = np.bincount(flat[known] * NUM_CONCEPTS + lab[known],
                        minlength=grid.num_voxels * NUM_CONCEPTS)  # fmt: skip
    votes = votes.reshape(grid.num_voxels, NUM_CONCEPTS)
    out = np.full(grid.num_voxels, IGNORE, np.uint8)
    has = votes.sum(1) > 0
    out[has] = votes[has].argmax(1).astype(np.uint8)
    return out


def _unit(x: np.ndarray) -> np.ndarray:
    x = np.asarray(x, np.float64)
    return x / np.maximum(np.linalg.norm(x, axis=-1, keepdims=True), 1e-12)


class RetrievalMetrics:
    """Accumulates retrieval AP and grounding over frames (see the module docstring).

    Args:
        queries: concept name -> (query embedding (D,), parent-class query embedding (D,)).
        min_score: grounding threshold on the cosine similarity (`ground_objects`).
        match_radius: metres between an object's and an instance's centre to count it found.
        seed: the chance baseline's random ranking.
    """

    def __init__(self, queries: dict, min_score: float = 0.9, match_radius: float = 1.5,
                 seed: int = 0):  # fmt: skip
        self.names = list(queries)
        self.ids = np.array([CONCEPT_ID[n] for n in self.names], np.int64)
        self.query = _unit(np.stack([queries[n][0] for n in self.names]))
        self.parent = _unit(np.stack([queries[n][1] for n in self.names]))
        self.min_score = float(min_score)
        self.match_radius = float(match_radius)
        self.rng = np.random.default_rng(seed)
        k = len(self.names)
        self.ap_sum = np.zeros((len(_KINDS), k))
        self.ap_count = np.zeros((len(_KINDS), k))
        # grounding: instances, found, summed centre error of found, objects returned, queries
        self.ground = np.zeros((5, k))

    def add(self, *, gt_concepts, observed, occupied, student, centres, voxel_size,
            teacher_voxels=None, teacher=None, instances=None) -> None:  # fmt: skip
        """One frame.

        gt_concepts (V,) uint8 `voxel_concepts`; observed (V,) bool (POP-3D: not IGNORE);
        occupied (V,) bool predicted; student (n_occ, D) language features of the occupied
        voxels in index order; centres (V, 3) voxel centres; teacher_voxels (m,) voxel
        indices with teacher features teacher (m, D); instances: dict with ids, concepts,
        centres (M, 3) and `points` (M,) LiDAR returns in the grid per instance.
        """
        occ_idx = np.flatnonzero(occupied)
        s_all = _unit(student) @ self.query.T  # (n_occ, k)
        p_all = _unit(student) @ self.parent.T
        cand = observed[occ_idx]
        t_scores = None if teacher is None else _unit(teacher) @ self.query.T
        for j, cid in enumerate(self.ids):
            gt = gt_concepts == cid
            total = int(gt.sum())
            if total == 0:
                continue
            rel = gt[occ_idx[cand]]
            runs = [(0, s_all[cand, j], rel), (1, p_all[cand, j], rel),
                    (3, self.rng.random(rel.size), rel)]  # fmt: skip
            if t_scores is not None:
                runs.append((2, t_scores[:, j], gt[teacher_voxels]))
            for kind, scores, relevant in runs:
                self.ap_sum[kind, j] += average_precision(scores, relevant, total)
                self.ap_count[kind, j] += 1
        if instances is not None:
            self._ground(instances, occ_idx, s_all, centres, voxel_size)

    def _ground(self, inst, occ_idx, s_all, centres, voxel_size) -> None:
        for j, cid in enumerate(self.ids):
            mine = (inst["concepts"] == cid) & (inst["points"] > 0)
            if not mine.any():
                continue
            objects = ground_objects(centres[occ_idx], s_all[:, j], voxel_size, self.min_score)
            self.ground[3, j] += len(objects)
            self.ground[4, j] += 1
            self.ground[0, j] += mine.sum()
            if not objects:
                continue
            obj = np.stack([o.center for o in objects])
            d = np.linalg.norm(inst["centres"][mine][:, None] - obj[None], axis=-1).min(1)
            found = d <= self.match_radius
            self.ground[1, j] += found.sum()
            self.ground[2, j] += d[found].sum()

    def all_reduce(self) -> None:
        import torch.distributed as dist

        if dist.is_available() and dist.is_initialized():
            for name in ("ap_sum", "ap_count", "ground"):
                t = torch.from_numpy(getattr(self, name).copy())
                dist.all_reduce(t)
                setattr(self, name, t.numpy())

    def result(self) -> dict:
        def num(x):
            return None if x is None or not np.isfinite(x) else round(float(x), 4)

        with np.errstate(invalid="ignore", divide="ignore"):
            ap = self.ap_sum / self.ap_count  # NaN where a concept never appeared
        seen = self.ap_count[0] > 0
        out = {}
        for i, kind in enumerate(_KINDS):
            key = "retrieval_map" if kind == "student" else f"retrieval_map_{kind}"
            have = seen & (self.ap_count[i] > 0)
            out[key] = num(ap[i][have].mean()) if have.any() else None
        out["retrieval_per_concept"] = {
            n: {
                "ap": num(ap[0, j]),
                "ap_parent": num(ap[1, j]),
                "ap_teacher": num(ap[2, j]),
                "ap_chance": num(ap[3, j]),
                "frames": int(self.ap_count[0, j]),
            }  # fmt: skip
            for j, n in enumerate(self.names)
            if seen[j]
        }
        inst, found, err, objs, queries = self.ground.sum(1)
        out.update(
            grounding_recall=num(found / inst) if inst else None,
            grounding_center_error=num(err / found) if found else None,
            grounding_instances=int(inst),
            grounding_objects_per_query=num(objs / queries) if queries else None,
            grounding_min_score=self.min_score,
            grounding_match_radius=self.match_radius,
        )
        return out


def concept_queries(encoder, templates=None) -> dict:
    """concept name -> (query, parent-class query) embeddings: each the concept's (class's)
    canonical phrase, prompt-ensembled like zero-shot classification. Empty for a text
    space without long-tail concepts (synthetic v1, or open_clip)."""
    from pop3d_ros.evaluation.zeroshot import ensembled, prompt_templates

    concepts = getattr(encoder, "concepts", None)
    if not concepts:
        return {}
    templates = templates or prompt_templates(encoder)
    vocab = encoder.vocabulary
    out = {}
    for name, phrases in concepts.items():
        parent = vocab[encoder.parent_of(name)][0]
        out[name] = (ensembled(encoder, phrases[0], templates),
                     ensembled(encoder, parent, templates))  # fmt: skip
    return out


def frame_instances(sample: dict, grid) -> dict | None:
    """The sample's instances with their LiDAR returns inside the grid counted, or None."""
    if "instance_ids" not in sample or "lidar_instances" not in sample:
        return None
    _, inside = grid.points_to_index(np.asarray(sample["lidar_points"], np.float32))
    ids = np.asarray(sample["instance_ids"])
    pts = np.asarray(sample["lidar_instances"])[inside]
    counts = np.zeros(len(ids), np.int64)
    if len(ids):
        order = np.argsort(ids)
        pos = np.searchsorted(ids[order], pts)
        ok = (pos < len(ids)) & (pts > 0)
        ok[ok] = ids[order][pos[ok]] == pts[ok]
        np.add.at(counts, order[pos[ok]], 1)
    return {"ids": ids, "concepts": np.asarray(sample["instance_concepts"]),
            "centres": np.asarray(sample["instance_centers"], np.float64),
            "points": counts}  # fmt: skip
