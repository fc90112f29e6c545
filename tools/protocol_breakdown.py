"""Where a model's POP-3D-protocol IoU is won and lost, per z layer, on held-out synthetic
frames, next to the occupancy prior and the world's true occupancy scored by the same labels.

`python -m tools.protocol_breakdown --checkpoint RUN/model_cal.pt --seeds 100-103
--frames-per-seed 10 [--every 5]` prints, per layer, true positives, false positives and false
negatives over the voxels the LiDAR observed, for the model (at its own threshold), the prior
(at the checkpoint's prior threshold), the truth, and the truth with the prior's ground layer;
then the model's IoU over a sweep of thresholds (density models). The model card's rendering
diagnosis is this output.
"""

from __future__ import annotations

import sys
from dataclasses import dataclass, field

import numpy as np

from pop3d_ros.cli_config import run_command
from pop3d_ros.data.sources import DataConfig
from tools.held_out import held_out_data, synthetic_seeds


def layer_counts(predicted: np.ndarray, labels: np.ndarray) -> np.ndarray:
    """(Z, 3) true positives, false positives, false negatives per z layer of a (X, Y, Z) bool
    prediction against (X, Y, Z) POP-3D labels (1 occupied, 0 free, anything else unobserved,
    not counted)."""
    known = (labels == 0) | (labels == 1)
    gt = labels == 1
    p = np.asarray(predicted, bool) & known
    tp = (p & gt).sum((0, 1))
    fp = (p & ~gt).sum((0, 1))
    fn = (~p & gt & known).sum((0, 1))
    return np.stack([tp, fp, fn], 1).astype(np.int64)


def iou(counts: np.ndarray) -> float:
    tp, fp, fn = np.asarray(counts).reshape(-1, 3).sum(0)
    return float(tp / max(tp + fp + fn, 1))


@dataclass
class ProtocolBreakdownCommand:
    """Where a model's POP-3D-protocol IoU is won and lost, per z layer (module doc)."""

    checkpoint: str  # the model to break down
    every: int = 1  # use every n-th frame
    data: DataConfig = field(default_factory=held_out_data)


def main(argv=None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    return run_command(ProtocolBreakdownCommand, argv, "python -m tools.protocol_breakdown", _run)


def _run(args: ProtocolBreakdownCommand) -> int:
    import torch

    from pop3d_ros.data.classes import EMPTY
    from pop3d_ros.data.sources import synthetic_source
    from pop3d_ros.evaluation.labels import evaluation_labels
    from pop3d_ros.model.checkpoint import load_model
    from pop3d_ros.model.inputs import SamplingCache, model_inputs
    from pop3d_ros.model.pop3d import density_from_logits

    seeds = synthetic_seeds(args.data)
    model, ckpt = load_model(args.checkpoint)
    model.eval()
    cfg = model.cfg
    grid = cfg.voxel_grid
    density = cfg.heads.occupancy_output == "density"
    prior = ckpt.get("occupancy_prior")
    prior = None if prior is None else np.asarray(prior) >= ckpt.get("prior_threshold", 0.5)
    keys, make = synthetic_source(seeds, args.data.frames_per_seed, grid=grid)
    keys = keys[:: max(1, args.every)]
    sweep = np.geomspace(0.02, 20.0, 25)
    mixed_name = "truth, prior's ground layer"
    names = ["model", "prior", "truth", mixed_name] if prior is not None else ["model", "truth"]
    rows = {name: np.zeros((grid.shape[2], 3), np.int64) for name in names}
    sweep_counts = np.zeros((len(sweep), 3), np.int64)
    sampling = SamplingCache(cfg)
    ground = int(np.floor((0.0 - grid.lower[2]) / grid.voxel_size[2]))  # layer holding z = 0
    with torch.no_grad():
        for key in keys:
            sample = make(key)
            inputs = model_inputs(sample, tuple(cfg.image_size))
            calib = sampling(inputs["intrinsics"], inputs["cam_to_ego"])
            out = model(inputs["images"][None].float() / 255.0, *(t[None] for t in calib))
            logits = out["occupancy_logits"][0].float()
            occupied = (logits.softmax(-1)[..., 1] > 0.5).numpy().reshape(grid.shape)
            _, labels = evaluation_labels(
                sample["lidar_points"], sample["lidar_labels"], sample["lidar_origin"], grid
            )
            rows["model"] += layer_counts(occupied, labels)
            truth = np.asarray(sample["occupancy"]) < EMPTY
            rows["truth"] += layer_counts(truth, labels)
            if prior is not None:
                rows["prior"] += layer_counts(prior, labels)
                mixed = truth.copy()
                mixed[..., ground] = prior[..., ground]
                rows[mixed_name] += layer_counts(mixed, labels)
            if density:
                sigma = density_from_logits(logits, cfg.heads).numpy().reshape(grid.shape)
                for i, th in enumerate(sweep):
                    sweep_counts[i] += layer_counts(sigma > th, labels).sum(0)
    print(f"{len(keys)} frames; ground in layer {ground}; counts: TP FP FN per layer")
    for name, counts in rows.items():
        layers = "  ".join(f"{tp}/{fp}/{fn}" for tp, fp, fn in counts)
        print(f"{name:<30} IoU {100 * iou(counts):5.1f}  {layers}")
    if density:
        print("model IoU by density threshold:")
        print(
            " ".join(
                f"{th:.3g}:{100 * iou(c):.1f}" for th, c in zip(sweep, sweep_counts, strict=True)
            )
        )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
