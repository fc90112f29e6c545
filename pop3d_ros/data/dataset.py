"""PyTorch datasets over the sample format: synthetic (on the fly or rendered) and nuScenes."""

from __future__ import annotations

import json
import re
from dataclasses import asdict
from pathlib import Path

import numpy as np
import torch
from torch.utils.data import Dataset

from pop3d_ros.data.sample import load_sample
from pop3d_ros.data.synthetic import SyntheticWorld, WorldConfig
from pop3d_ros.data.synthetic.config import WORLD_VERSION
from pop3d_ros.geometry.grid import VoxelGrid

INDEX_FILE = "index.json"


def parse_seeds(text: str) -> list[int]:
    """'0-3' -> [0, 1, 2, 3]; '1,4,7' -> [1, 4, 7]; combinations like '0-2,9' work."""
    seeds: list[int] = []
    for part in str(text).split(","):
        m = re.fullmatch(r"\s*(\d+)\s*(?:-\s*(\d+)\s*)?", part)
        if not m or (m.group(2) and int(m.group(2)) < int(m.group(1))):
            raise ValueError(f"bad seed list {text!r}: use e.g. '0-3' or '1,4,7'")
        lo = int(m.group(1))
        seeds.extend(range(lo, int(m.group(2) or lo) + 1))
    if not seeds:
        raise ValueError(f"bad seed list {text!r}: no seeds")
    return seeds


def world_config_dict(config: WorldConfig) -> dict:
    """The config as JSON-able dict, with the generator's `world_version` (caches compare it)."""
    d = asdict(config)
    d["grid"] = config.grid.to_dict()
    d["world_version"] = WORLD_VERSION
    return d


def world_config_from_dict(d: dict) -> WorldConfig:
    """Inverse of `world_config_dict`; refuses a config recorded by another world version
    (its frames would not be what this generator renders)."""
    d = dict(d)
    version = d.pop("world_version", 1)
    if version != WORLD_VERSION:
        raise ValueError(
            f"frames of synthetic world version {version}; this is version {WORLD_VERSION} "
            "(re-render them)"
        )
    d["grid"] = VoxelGrid.from_dict(d["grid"])
    for key in ("lidar_elevation_deg", "lidar_origin"):
        d[key] = tuple(d[key])
    return WorldConfig(**d)


class SyntheticDataset(Dataset):
    """Frames of several synthetic drives, rendered on the fly or read from `pop3d render`.

    Args:
        seeds: drive seeds (one drive per seed).
        frames: frames per drive (on the fly; a rendered dir uses what its index lists).
        root: directory written by `pop3d render`; None renders on the fly.
        grid: GT occupancy grid for on-the-fly frames (None: WorldConfig's default).
        transform: optional callable applied to each sample dict.
        **world: further WorldConfig fields for on-the-fly frames (image_width, ...).
    """

    def __init__(self, seeds, frames: int = 40, root=None, grid=None, transform=None, **world):
        self.seeds = [int(s) for s in seeds]
        self.transform = transform
        self.grid = grid
        self.root = Path(root) if root else None
        self._worlds: dict[int, SyntheticWorld] = {}
        self._world_kw = dict(world, num_frames=int(frames))
        if self.root is not None:
            index_path = self.root / INDEX_FILE
            if not index_path.is_file():
                raise FileNotFoundError(f"{index_path} not found: render it with `pop3d render`")
            index = json.loads(index_path.read_text())
            for cfg in index.get("configs", {}).values():
                if cfg.get("world_version", 1) != WORLD_VERSION:
                    raise ValueError(
                        f"{self.root}: rendered by synthetic world version "
                        f"{cfg.get('world_version', 1)}, this is version {WORLD_VERSION}; "
                        "re-render it with `pop3d render --force` or use another directory"
                    )
            wanted = set(self.seeds)
            missing = wanted - {int(s) for s in index["seeds"]}
            if missing:
                raise ValueError(f"{self.root}: seeds {sorted(missing)} were not rendered")
            self.items = [(f["seed"], f["frame"], f["file"]) for f in index["frames"]
                          if f["seed"] in wanted]  # fmt: skip
        else:
            self.items = [(s, i, None) for s in self.seeds for i in range(int(frames))]

    def __len__(self) -> int:
        return len(self.items)

    def world(self, seed: int) -> SyntheticWorld:
        if seed not in self._worlds:
            self._worlds[seed] = SyntheticWorld(WorldConfig(seed=seed, **self._world_kw))
        return self._worlds[seed]

    def __getitem__(self, index: int) -> dict:
        seed, frame, file = self.items[index]
        if file is not None:
            sample = load_sample(self.root / file)
        else:
            sample = self.world(seed).sample(frame, grid=self.grid)
        return self.transform(sample) if self.transform else sample


class NuScenesDataset(Dataset):
    """Key frames of a nuScenes split via `data.nuscenes.NuScenesReader`."""

    def __init__(self, root, version: str = "v1.0-mini", split: str | None = None,
                 scenes=None, image_size=None, transform=None):  # fmt: skip
        from pop3d_ros.data.nuscenes import NuScenesReader

        self.reader = NuScenesReader(root, version=version, image_size=image_size)
        self.tokens = self.reader.sample_tokens(split=split, scenes=scenes)
        self.transform = transform

    def __len__(self) -> int:
        return len(self.tokens)

    def __getitem__(self, index: int) -> dict:
        sample = self.reader.sample(self.tokens[index])
        return self.transform(sample) if self.transform else sample


def collate_samples(batch: list[dict]) -> dict:
    """Stack same-shaped arrays into tensors (B, ...); ragged arrays and metadata as lists."""
    out: dict = {}
    for key in batch[0]:
        values = [b.get(key) for b in batch]
        if all(isinstance(v, np.ndarray) for v in values):
            if len({v.shape for v in values}) == 1:
                out[key] = torch.from_numpy(np.stack(values))
            else:
                out[key] = [torch.from_numpy(v) for v in values]
        else:
            out[key] = values
    return out
