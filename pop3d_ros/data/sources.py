"""Where frames come from: the synthetic world (by seeds) or a nuScenes root, as
(keys, make_sample(key)) so preparing and evaluating can shard and resume by key."""

from __future__ import annotations

import functools
import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import Literal


@dataclass
class DataConfig:
    """Which frames: the synthetic world by seeds, or a nuScenes root and split."""

    data: Literal["synthetic", "nuscenes"] = "synthetic"  # frame source
    seeds: str = "0-7"  # synthetic world seeds, e.g. 0-7 or 1,3,10-12
    frames_per_seed: int = 25  # synthetic frames per seed (one drive per seed)
    root: str = ""  # nuScenes root (with data: nuscenes)
    version: str = "v1.0-mini"  # nuScenes table folder under root
    split: str = "train"  # nuScenes split name, or a file with one scene name per line


def parse_seeds(text: str) -> list[int]:
    """ "0-7" -> [0..7]; "1,3,10-12" -> [1, 3, 10, 11, 12]."""
    seeds: list[int] = []
    try:
        for part in str(text).split(","):
            part = part.strip()
            if "-" in part:
                a, b = part.split("-", 1)
                lo, hi = int(a), int(b)
                if hi < lo:
                    raise ValueError
                seeds.extend(range(lo, hi + 1))
            elif part:
                seeds.append(int(part))
    except ValueError:
        raise ValueError(f"bad --seeds {text!r}: use e.g. 0-7 or 1,3,10-12") from None
    if not seeds:
        raise ValueError(f"bad --seeds {text!r}: no seed given")
    return seeds


def synthetic_source(
    seeds: list[int], frames_per_seed: int, grid=None, image_hw=None, **world_kw
) -> tuple[list[str], Callable[[str], dict]]:
    """Keys "syn<seed>_<frame>" over the synthetic world; GT occupancy on `grid` if given.
    `make` also takes the samples' own tokens ("synthetic-s<seed>-f<frame>", as in prev/next)."""
    from pop3d_ros.data.synthetic import SyntheticWorld, WorldConfig

    @functools.lru_cache(maxsize=2)
    def world(seed: int):
        kw = dict(world_kw)
        if grid is not None:
            kw["grid"] = grid
        if image_hw is not None:
            kw["image_height"], kw["image_width"] = int(image_hw[0]), int(image_hw[1])
        return SyntheticWorld(WorldConfig(seed=seed, num_frames=frames_per_seed, **kw))

    def make(key: str) -> dict:
        if key.startswith("synthetic-s"):  # a sample's own token (its prev/next links)
            seed, frame = key[len("synthetic-s") :].split("-f")
        else:
            seed, frame = key[3:].split("_")
        return world(int(seed)).sample(int(frame))

    keys = [f"syn{s:05d}_{f:04d}" for s in seeds for f in range(frames_per_seed)]
    return keys, make


def nuscenes_source(root: str, split: str, version: str = "v1.0-mini"):
    """Keys = sample tokens of a nuScenes split (`root/<version>/*.json` tables); `split` is
    a split name the reader knows or a file with one scene name per line."""
    from pop3d_ros.data.nuscenes import NuScenesReader

    reader = NuScenesReader(root, version=version)
    tokens = reader.sample_tokens(split)
    return list(tokens), reader.sample


def frame_source(cfg: DataConfig, grid=None, seeds: str | None = None, split: str | None = None):
    """(keys, make_sample) of the frames `cfg` names; `seeds`/`split` replace its own (the
    held-out frames of a periodic evaluation); synthetic frames get GT occupancy on `grid`."""
    if cfg.data == "synthetic":
        return synthetic_source(parse_seeds(seeds or cfg.seeds), cfg.frames_per_seed, grid=grid)
    if not cfg.root:
        raise ValueError("data nuscenes needs a root directory (--data.root DIR)")
    return nuscenes_source(cfg.root, split or cfg.split, cfg.version)


def synthetic_key_of_token(token: str) -> str:
    """The source key of a synthetic frame token: synthetic-s3-f0004 -> syn00003_0004."""
    m = re.fullmatch(r"synthetic-s(\d+)-f(\d+)", token)
    if not m:
        raise ValueError(f"not a synthetic frame token: {token!r}")
    return f"syn{int(m.group(1)):05d}_{int(m.group(2)):04d}"


def key_of_token(data: str):
    """The function from a sample's prev/next token to its source key, for `--data`."""
    return synthetic_key_of_token if data == "synthetic" else (lambda t: t)


def neighbour_lookup(make_sample, key_of_token, cache_size: int = 8):
    """`neighbour(sample, offset)` for RenderStrategy: walks `prev`/`next` tokens `offset`
    times and builds that sample with `make_sample(key_of_token(token))` (memoised, since
    consecutive frames share neighbours); None at the drive's ends."""
    make = functools.lru_cache(maxsize=cache_size)(make_sample)

    def neighbour(sample: dict, offset: int):
        cur = sample
        for _ in range(abs(int(offset))):
            token = cur.get("prev" if offset < 0 else "next")
            if not token:
                return None
            cur = make(key_of_token(token))
        return cur

    return neighbour
