"""Prepared training frames on disk: one `.pt` per frame (inputs + targets), resumable.

Preparing (rendering, running the teacher, building targets) is the expensive part on a CPU,
so it runs once; training epochs then only read these files.
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable, Iterable
from pathlib import Path

import torch
from torch.utils.data import Dataset
from tqdm import tqdm

from pop3d_ros.atomic import atomic_path, write_text_atomic


def prepare_frames(
    keys: Iterable[str],
    make_sample: Callable[[str], dict],
    prepare: Callable,
    out_dir,
    desc: str = "prepare",
    settings: dict | None = None,
) -> Path:
    """Write `<out_dir>/<key>.pt` = prepare(make_sample(key)) for every key not yet on disk,
    and `index.json` listing the keys in order. Safe to interrupt and re-run.

    `settings` (JSON-able: teacher, text space, grid, ...) is stored in `settings.json`; a
    directory prepared with other settings is refused, since its cached targets would
    silently train the model on another recipe."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    if settings is not None:
        _check_settings(out, json.loads(json.dumps(settings)))
    keys = list(keys)
    for key in tqdm(keys, desc=desc, unit="frame"):
        path = out / f"{key}.pt"
        if path.exists():
            continue
        item = prepare(make_sample(key))
        with atomic_path(path) as tmp:  # runs sharing the cache may prepare one frame at once
            torch.save(item, tmp)
    write_text_atomic(out / "index.json", json.dumps({"frames": keys}, indent=1))
    return out


def _write_exclusive(path: Path, text: str) -> bool:
    """Write `path` only if it does not exist yet, atomically (a hard link fails on an
    existing name); False if another process got there first, whose file is left as is."""
    tmp = path.with_name(f"{path.name}.{os.getpid()}.tmp")
    try:
        tmp.write_text(text)
        os.link(tmp, path)
        return True
    except FileExistsError:
        return False
    finally:
        tmp.unlink(missing_ok=True)


def _check_settings(out: Path, settings: dict) -> None:
    path = out / "settings.json"
    if not path.exists():
        if any(out.glob("*.pt")):
            raise ValueError(
                f"{out} holds frames prepared without recorded settings; "
                "pass another --prepared directory or delete this one"
            )
        if _write_exclusive(path, json.dumps(settings, indent=1, sort_keys=True)):
            return
        # Another run on this new cache recorded its settings first: compare with those.
    stored = json.loads(path.read_text())
    if stored != settings:
        diff = sorted(k for k in set(stored) | set(settings) if stored.get(k) != settings.get(k))
        raise ValueError(
            f"{out} was prepared with other settings (differ in: {', '.join(diff)}); "
            "pass another --prepared directory or delete this one"
        )


class PreparedFrames(Dataset):
    """The prepared frames of a directory written by `prepare_frames`: `keys` where the
    caller knows them (a training run: its own frames, since runs with other seeds may share
    the cache and rewrite its `index.json`), else the frames the last preparation listed."""

    def __init__(self, root, keys: Iterable[str] | None = None):
        self.root = Path(root)
        index = self.root / "index.json"
        if keys is not None:
            self.keys = list(keys)
            missing = [k for k in self.keys if not (self.root / f"{k}.pt").exists()]
            if missing:
                raise FileNotFoundError(
                    f"{self.root}: {len(missing)} of {len(self.keys)} frames not prepared "
                    f"(first: {missing[0]})"
                )
        elif not index.exists():
            raise FileNotFoundError(f"{index}: no prepared frames here (run prepare first)")
        else:
            self.keys = json.loads(index.read_text())["frames"]
        if not self.keys:
            raise ValueError(f"{index}: lists no frames")

    def __len__(self) -> int:
        return len(self.keys)

    def __getitem__(self, i: int) -> dict:
        return torch.load(self.root / f"{self.keys[i]}.pt", weights_only=True)
