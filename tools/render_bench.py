"""Seconds per training step of the rendering variants, timed side by side in one process.

`python -m tools.render_bench --prepared DIR [--steps 6]` loads frames prepared
by a render recipe (with adjacent frames), and times full training steps (forward,
rendering, losses, backward, AdamW) of the cpu-small density model, alternating between
the variants so machine load hits them alike: current frame only, + auxiliary rays (every
candidate ray), + auxiliary rays with weighted ray sampling (`--num-rays` per frame).
`--renderocc_prepared DIR2` (frames prepared with `render.ray_sampling renderocc`) adds the
published sampling (every ray of the frame and its +-3 neighbours, re-drawn per step) and
`--variants` picks which run; the recipe options (`--render.*`: density_sampling,
termination_weight, sparsity_weight, sparsity_scope, distortion_weight, num_rays) apply to
all. Each step is timed with its
`collate` (where the rays are chosen) and without. Prints one JSON line per variant:
median / min seconds per step and rays per step.
"""

from __future__ import annotations

import json
import statistics
import sys
import time
from dataclasses import dataclass, field
from typing import Literal

import torch

from pop3d_ros.cli_config import run_command
from pop3d_ros.model.config import get_preset
from pop3d_ros.model.inputs import SamplingCache
from pop3d_ros.model.pop3d import build_model
from pop3d_ros.training.frames import PreparedFrames
from pop3d_ros.training.loop import TrainWrapper
from pop3d_ros.training.strategies.render import RenderStrategy
from pop3d_ros.training.strategies.render_config import RenderConfig

VARIANTS = {
    "current": dict(aux=False, weighted=False),
    "aux": dict(aux=True, weighted=False),
    "aux_wrs": dict(aux=True, weighted=True),
    "renderocc": dict(aux=True, weighted=True, ray_sampling="renderocc"),
}


@dataclass
class RenderBenchCommand:
    """Seconds per training step of the rendering variants, timed side by side in one
    process (module doc); `--render.*` (RenderConfig) applies to every variant."""

    prepared: str  # frames prepared by a render recipe (with adjacent frames)
    steps: int = 6  # timed steps per variant
    threads: int = 1  # torch threads
    # frames prepared with render.ray_sampling renderocc (needed for the renderocc variant)
    renderocc_prepared: str = ""
    variants: tuple[Literal["current", "aux", "aux_wrs", "renderocc"], ...] = tuple(VARIANTS)
    render: RenderConfig = field(default_factory=RenderConfig)


def main(argv=None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    return run_command(RenderBenchCommand, argv, "python -m tools.render_bench", _run)


def _run(args: RenderBenchCommand) -> int:
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    cfg = get_preset("cpu-small")
    cfg.heads.occupancy_output = "density"
    model = build_model(cfg)
    opt = torch.optim.AdamW(model.parameters(), lr=1e-5)
    chosen = [
        v for v in dict.fromkeys(args.variants) if v != "renderocc" or args.renderocc_prepared
    ]
    data = {"pool": PreparedFrames(args.prepared)}
    if "renderocc" in chosen:
        data["renderocc"] = PreparedFrames(args.renderocc_prepared)
    sampling = SamplingCache(cfg)
    r = args.render
    recipe = dict(
        num_rays=r.num_rays,
        feature_weight=256.0,
        density_sampling=r.density_sampling,
        termination_weight=r.termination_weight,
        sparsity_weight=r.sparsity_weight,
        sparsity_scope=r.sparsity_scope,
        distortion_weight=r.distortion_weight,
        grid=cfg.voxel_grid,
    )
    strategies = {}
    for k in chosen:
        renderocc = k == "renderocc"
        strategies[k] = RenderStrategy(
            None, None, aux_offsets=(-3, -2, -1, 1, 2, 3) if renderocc else (-1, 1),
            **recipe, **VARIANTS[k],
        )  # fmt: skip
        if renderocc:
            strategies[k].attach_frames(data["renderocc"].root, data["renderocc"].keys)
    wrappers = {k: TrainWrapper(model, s) for k, s in strategies.items()}
    times = {k: [] for k in strategies}
    with_collate = {k: [] for k in strategies}
    rays = {k: [] for k in strategies}
    n = model.cfg.voxel_grid.num_voxels
    # A first pass over the same frames warms up (and fills what a run memoises per frame:
    # the renderocc sampling's unseen-voxel masks); the second is timed.
    for i in range(2 * args.steps):
        for k, strat in strategies.items():
            frames = data["renderocc" if k == "renderocc" else "pool"]
            item = frames[(i % args.steps) % len(frames)]
            t_collate = time.perf_counter()
            batch = strat.collate([item], n)
            t0 = time.perf_counter()
            calib = sampling.batch(batch["intrinsics"], batch["cam_to_ego"])
            out = wrappers[k](batch["images"].float() / 255.0, *calib, batch)
            loss = strat.losses(out, batch)["loss"]
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            if i >= args.steps:
                t1 = time.perf_counter()
                times[k].append(t1 - t0)
                with_collate[k].append(t1 - t_collate)
                rays[k].append(int(batch["ray_depth"].numel()))
    for k in strategies:
        print(
            json.dumps(
                {
                    "variant": k,
                    "median_s_per_step": round(statistics.median(times[k]), 3),
                    "min_s_per_step": round(min(times[k]), 3),
                    "median_s_with_collate": round(statistics.median(with_collate[k]), 3),
                    "rays_per_step": round(statistics.mean(rays[k])),
                }
            )
        )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
