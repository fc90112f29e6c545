"""Seconds per training step of the rendering variants, timed side by side in one process.

`python -m tools.render_bench --prepared DIR [--steps 6]` loads frames prepared
for `--strategy render` (with adjacent frames), and times full training steps (forward,
rendering, losses, backward, AdamW) of the cpu-small density model, alternating between
the variants so machine load hits them alike: current frame only, + auxiliary rays (every
candidate ray), + auxiliary rays with weighted ray sampling (`--num-rays` per frame).
Prints one JSON line per variant: median / min seconds per step and rays per step.
"""

from __future__ import annotations

import argparse
import json
import statistics
import time

import torch

from pop3d_ros.model.config import get_preset
from pop3d_ros.model.inputs import SamplingCache
from pop3d_ros.model.pop3d import build_model
from pop3d_ros.training.frames import PreparedFrames
from pop3d_ros.training.loop import TrainWrapper
from pop3d_ros.training.strategies.render import RenderStrategy

VARIANTS = {
    "current": dict(aux=False, weighted=False),
    "aux": dict(aux=True, weighted=False),
    "aux_wrs": dict(aux=True, weighted=True),
}


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--prepared", required=True, help="frames prepared by --strategy render")
    p.add_argument("--steps", type=int, default=6, help="timed steps per variant")
    p.add_argument("--num-rays", type=int, default=2048)
    p.add_argument("--threads", type=int, default=1)
    args = p.parse_args(argv)
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    cfg = get_preset("cpu-small")
    cfg.heads.occupancy_output = "density"
    model = build_model(cfg)
    opt = torch.optim.AdamW(model.parameters(), lr=1e-5)
    data = PreparedFrames(args.prepared)
    sampling = SamplingCache(cfg)
    strategies = {
        k: RenderStrategy(None, None, num_rays=args.num_rays, feature_weight=256.0, **v)
        for k, v in VARIANTS.items()
    }
    wrappers = {k: TrainWrapper(model, s) for k, s in strategies.items()}
    times = {k: [] for k in VARIANTS}
    rays = {k: [] for k in VARIANTS}
    n = model.cfg.voxel_grid.num_voxels
    for i in range(args.steps + 1):  # the first round warms up
        for k, strat in strategies.items():
            batch = strat.collate([data[i % len(data)]], n)
            t0 = time.perf_counter()
            calib = sampling.batch(batch["intrinsics"], batch["cam_to_ego"])
            out = wrappers[k](batch["images"].float() / 255.0, *calib, batch)
            loss = strat.losses(out, batch)["loss"]
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            if i > 0:
                times[k].append(time.perf_counter() - t0)
                rays[k].append(int(batch["ray_depth"].numel()))
    for k in VARIANTS:
        print(
            json.dumps(
                {
                    "variant": k,
                    "median_s_per_step": round(statistics.median(times[k]), 3),
                    "min_s_per_step": round(min(times[k]), 3),
                    "rays_per_step": round(statistics.mean(rays[k])),
                }
            )
        )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
