"""Label-free choice of a density model's occupancy threshold (`heads.density_threshold`).

A density field trained by rendering only has to make each camera ray opaque by the LiDAR
return; early in training it does so with a spread of moderate densities, so a fixed cut can
mark nothing occupied. RenderOcc's published cut is raw > 8.5 on its density MLP's output,
which is not a density: rendering reads sigma = softplus(raw - 13.8), so the cut is sigma >
0.0049 per voxel length (`training.render.RENDEROCC_DENSITY_CUT`); the search below runs from
0.001 so it can pick that point, and `--threshold renderocc` writes it. This picks the threshold on
TRAINING frames, from their own rays (no labels): voxels holding a ray's end point are
observed occupied, voxels a ray crosses before it are observed free, the rest unknown; the
threshold with the best IoU over observed voxels wins. The network weights do not depend on
the threshold (occupancy_logits = [0, sigma - threshold]), so rewriting it in the
checkpoint's config is exact.

`python -m pop3d_ros.training.density_calibration --checkpoint RUN/model.pt --prepared
FRAMES --out RUN/model_calibrated.pt [--frames 8]` (`--threshold VALUE|renderocc` writes that
threshold instead of searching); with `--report` instead of `--out` it prints where the field
puts its density (`density_report`), for the model card.
"""

from __future__ import annotations

import argparse
import json

import numpy as np
import torch

from pop3d_ros.training.rays import ray_observations
from pop3d_ros.training.render import RENDEROCC_DENSITY_CUT, density_threshold_value

# The grid from 0.05 to 20 in 26 equal ratios (the search's range before RenderOcc's cut was
# selectable), continued down with the same ratio to 0.001, and RenderOcc's published cut.
_RATIO = (20.0 / 0.05) ** (1 / 26)
THRESHOLDS = tuple(
    sorted(
        {float(x) for x in np.geomspace(0.05, 20.0, 27)}
        | {0.05 / _RATIO**j for j in range(1, 18)}
        | {RENDEROCC_DENSITY_CUT}
    )
)


@torch.no_grad()
def _fields(model, frames):
    """(sigma (X, Y, Z), ray observations (N_vox,) of `ray_observations`) per prepared frame,
    the model in eval mode."""
    from pop3d_ros.model.inputs import SamplingCache
    from pop3d_ros.model.pop3d import density_from_logits

    cfg = model.cfg
    sampling = SamplingCache(cfg)
    model.eval()
    for item in frames:
        calib = sampling(item["intrinsics"], item["cam_to_ego"])
        out = model(item["images"][None].float() / 255.0, *(t[None] for t in calib))
        sigma = density_from_logits(out["occupancy_logits"][0], cfg.heads).numpy()
        yield sigma.reshape(tuple(cfg.grid.shape)), ray_observations(item, cfg.voxel_grid)


def calibrate(model, frames, thresholds=THRESHOLDS) -> tuple[float, dict[float, float]]:
    """(best threshold, {threshold: IoU}) of a density model over prepared training frames."""
    th = np.asarray(thresholds)
    inter, union = np.zeros(len(th)), np.zeros(len(th))
    for sigma, obs in _fields(model, frames):
        seen = obs >= 0
        s, occ = sigma.reshape(-1)[seen], obs[seen] == 1
        pred = s[None] > th[:, None]
        inter += (pred & occ[None]).sum(1)
        union += (pred | occ[None]).sum(1)
    iou = inter / np.maximum(union, 1)
    return float(th[int(np.argmax(iou))]), {
        float(t): float(v) for t, v in zip(th, iou, strict=True)
    }


def density_report(model, frames) -> dict:
    """Where a density model puts matter on prepared frames, at its configured threshold:
    the share of voxels above it per z layer, and the median sigma of the voxels where a
    current-frame ray ends, that rays cross, and that no ray reaches."""
    th = model.cfg.heads.density_threshold
    layers, by_obs = [], {1: [], 0: [], -1: []}
    for sigma, obs in _fields(model, frames):
        layers.append((sigma > th).reshape(-1, sigma.shape[-1]).mean(0))
        for k in by_obs:
            by_obs[k].append(sigma.reshape(-1)[obs == k])

    def median(parts):
        values = np.concatenate(parts)
        return float(np.median(values)) if values.size else None

    return {
        "threshold": float(th),
        "layer_fraction_above": [round(float(v), 4) for v in np.mean(layers, 0)],
        "median_sigma": {
            "ray_end": median(by_obs[1]),
            "crossed": median(by_obs[0]),
            "unseen": median(by_obs[-1]),
        },
    }


def calibrate_checkpoint(src, prepared, dst, frames: int = 8, fixed: float | None = None) -> dict:
    """Writes `dst`: the density model `src` with the threshold chosen on `frames` training
    frames of the prepared cache (spread over it), or `fixed` where given (the IoU table is
    recorded either way); returns the choice."""
    from pop3d_ros.atomic import atomic_path
    from pop3d_ros.model.checkpoint import load_model
    from pop3d_ros.training.frames import PreparedFrames

    model, _ = load_model(src)
    if model.cfg.heads.occupancy_output != "density":
        raise ValueError(f"{src}: not a density model (nothing to calibrate)")
    data = PreparedFrames(prepared)
    pick = np.linspace(0, len(data) - 1, min(frames, len(data))).round().astype(int)
    thresholds = THRESHOLDS if fixed is None else tuple(sorted(set(THRESHOLDS) | {fixed}))
    best, table = calibrate(model, (data[int(i)] for i in pick), thresholds)
    if fixed is not None:
        best = float(fixed)
    ckpt = torch.load(src, map_location="cpu", weights_only=False)
    ckpt["config"]["heads"]["density_threshold"] = best
    ckpt.setdefault("meta", {})["density_calibration"] = {
        "threshold": best,
        "chosen": "search" if fixed is None else "given",
        "frames": [data.keys[int(i)] for i in pick],
        "iou_by_threshold": table,
    }
    with atomic_path(dst) as tmp:
        torch.save(ckpt, tmp)
    return {"threshold": best, "train_ray_iou": round(table[best], 4)}


def main(argv=None) -> int:
    from pop3d_ros.model.checkpoint import load_model
    from pop3d_ros.training.frames import PreparedFrames

    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--checkpoint", required=True)
    p.add_argument("--prepared", required=True, help="the run's prepared training frames")
    what = p.add_mutually_exclusive_group(required=True)
    what.add_argument("--out", help="checkpoint to write with the chosen threshold")
    what.add_argument(
        "--report", action="store_true", help="print the density per layer instead (JSON)"
    )
    p.add_argument("--frames", type=int, default=8, help="training frames used (spread)")
    p.add_argument(
        "--threshold",
        help="write this threshold instead of the best one (a number, or 'renderocc' for "
        "RenderOcc's published cut); the IoU table is still recorded",
    )
    args = p.parse_args(argv)
    if not args.report:
        fixed = None if args.threshold is None else density_threshold_value(args.threshold)
        result = calibrate_checkpoint(args.checkpoint, args.prepared, args.out, args.frames, fixed)
        print(json.dumps(result))
        return 0
    model, _ = load_model(args.checkpoint)
    if model.cfg.heads.occupancy_output != "density":
        raise SystemExit(f"{args.checkpoint}: not a density model (nothing to report)")
    data = PreparedFrames(args.prepared)
    pick = np.linspace(0, len(data) - 1, min(args.frames, len(data))).round().astype(int)
    print(json.dumps(density_report(model, (data[int(i)] for i in pick))))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
