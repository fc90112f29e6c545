"""`pop3d render`: render synthetic drives to disk (one .npz per frame + index.json).

Resumable: frames already on disk are skipped; a directory rendered with other settings is
refused (use a new --out or --force).
"""

from __future__ import annotations

import dataclasses
import json
import sys
from dataclasses import dataclass, field
from pathlib import Path

from tqdm import tqdm

from pop3d_ros.atomic import write_text_atomic
from pop3d_ros.cli_config import run_command
from pop3d_ros.data.dataset import INDEX_FILE, parse_seeds, world_config_dict
from pop3d_ros.data.sample import save_sample
from pop3d_ros.data.synthetic import SyntheticWorld, WorldConfig


@dataclass
class RenderCommand:
    """Render synthetic drives to disk (one .npz per frame + index.json), resumable. The
    world options apply to every drive; world.seed is replaced by each of --seeds."""

    out: str  # output directory
    seeds: str = "0"  # drive seeds, e.g. 0-3 or 1,5
    world: WorldConfig = field(default_factory=WorldConfig)
    force: bool = False  # re-render everything


def main(argv=None) -> int:
    return run_command(RenderCommand, sys.argv[2:] if argv is None else argv, "pop3d render", _run)


def _jsonable(d: dict) -> dict:
    return json.loads(json.dumps(d))  # tuples -> lists, as read back from index.json


def frame_file(seed: int, frame: int) -> str:
    return f"s{seed:04d}/f{frame:04d}.npz"


def render(out, seeds, frames, width=256, height=144, frame_interval=0.5, force=False,
           progress=True, world: WorldConfig | None = None) -> dict:  # fmt: skip
    """Render (or complete) a dataset directory; returns the index written to index.json.
    `world` gives every other world setting (its seed, frame count, size and interval are
    replaced by the arguments)."""
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    base = world or WorldConfig()
    configs = {s: dataclasses.replace(base, seed=s, num_frames=frames, image_width=width,
                                      image_height=height, frame_interval=frame_interval)
               for s in seeds}  # fmt: skip
    index_path = out / INDEX_FILE
    old = json.loads(index_path.read_text()) if index_path.is_file() else {"configs": {}}
    for s, cfg in configs.items():
        prev = old["configs"].get(str(s))
        if prev is not None and prev != _jsonable(world_config_dict(cfg)) and not force:
            what = "another world version" if prev.get("world_version", 1) != _jsonable(
                world_config_dict(cfg))["world_version"] else "other settings"  # fmt: skip
            raise ValueError(f"{out}: seed {s} was rendered with {what}; "
                             "use another --out or --force")  # fmt: skip
    all_configs = dict(old["configs"])
    all_configs.update({str(s): world_config_dict(c) for s, c in configs.items()})
    frames_list = [f for f in old.get("frames", []) if str(f["seed"]) not in
                   {str(s) for s in seeds}]  # fmt: skip
    todo = [(s, i) for s in seeds for i in range(frames)]
    worlds: dict[int, SyntheticWorld] = {}
    for s, i in tqdm(todo, desc="render", unit="frame", disable=not progress):
        path = out / frame_file(s, i)
        if force or not path.is_file():
            if s not in worlds:
                worlds = {s: SyntheticWorld(configs[s])}  # one drive in memory at a time
            path.parent.mkdir(parents=True, exist_ok=True)
            save_sample(worlds[s].sample(i), path)
        frames_list.append({"seed": s, "frame": i, "file": frame_file(s, i),
                            "token": f"synthetic-s{s}-f{i:04d}"})  # fmt: skip
    frames_list.sort(key=lambda f: (f["seed"], f["frame"]))
    index = {"version": 1, "seeds": sorted({f["seed"] for f in frames_list}),
             "configs": all_configs, "frames": frames_list}  # fmt: skip
    write_text_atomic(index_path, json.dumps(index, indent=1))
    return index


def _run(args) -> int:
    w = args.world
    index = render(args.out, parse_seeds(args.seeds), w.num_frames, w.image_width,
                   w.image_height, w.frame_interval, args.force, world=w)  # fmt: skip
    print(f"{len(index['frames'])} frames in {args.out}")
    return 0
