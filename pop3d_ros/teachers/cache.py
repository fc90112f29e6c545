"""On-disk cache of 2D teacher features: one fp16 `.npy` per frame (keyed by sample token)
plus `meta.json` (teacher model, checkpoint, MaskCLIP variant, stride, the text space it is
aligned with). Resumable. The cache's key is (model_name, checkpoint, variant): a cache made
by another teacher, or by the code before the variant was recorded (whose last block dropped
the residual and FFN), is refused."""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Iterable
from pathlib import Path

import numpy as np
from tqdm import tqdm

from pop3d_ros.atomic import atomic_path

_SAFE = re.compile(r"[^A-Za-z0-9_.-]")
# What identifies the teacher that made a cache.
CACHE_KEY = ("model_name", "checkpoint", "variant")


def _file(root: Path, token: str) -> Path:
    return root / "features" / (_SAFE.sub("_", str(token)) + ".npy")


def build_cache(
    keys: Iterable[str],
    make_sample: Callable[[str], dict],
    features_fn: Callable[[dict], np.ndarray],
    out_dir,
    meta: dict,
) -> dict:
    """Compute `features_fn(sample)` for every frame not yet cached. Returns counts."""
    root = Path(out_dir)
    (root / "features").mkdir(parents=True, exist_ok=True)
    meta_file = root / "meta.json"
    if meta_file.exists():
        old = json.loads(meta_file.read_text())
        if {k: old.get(k) for k in CACHE_KEY} != {k: meta.get(k) for k in CACHE_KEY}:
            raise ValueError(
                f"{root}: holds features of another teacher ("
                + ", ".join(f"{k}={old.get(k)}" for k in CACHE_KEY)
                + "); use another --out"
            )
    meta_file.write_text(json.dumps(meta, indent=1))
    done = skipped = 0
    for key in tqdm(list(keys), desc="teacher-cache", unit="frame"):
        sample = make_sample(key)
        path = _file(root, sample["token"])
        if path.exists():
            skipped += 1
            continue
        feats = np.asarray(features_fn(sample), dtype=np.float16)
        with atomic_path(path, suffix=".npy") as tmp:  # np.save appends .npy otherwise
            np.save(tmp, feats)
        done += 1
    return {"computed": done, "skipped": skipped}


class CachedTeacher:
    """A teacher that reads cached features: `teacher(sample) -> {"features", "stride"}`."""

    def __init__(self, root):
        self.root = Path(root)
        meta = self.root / "meta.json"
        if not meta.exists():
            raise FileNotFoundError(f"{meta}: not a teacher cache (run pop3d teacher-cache)")
        self.meta = json.loads(meta.read_text())
        from pop3d_ros.teachers.maskclip import MASKCLIP_VARIANTS

        if self.meta.get("variant") not in MASKCLIP_VARIANTS:
            raise ValueError(
                f"{self.root}: teacher cache without a known MaskCLIP variant "
                f"({self.meta.get('variant')!r}; caches made before the official MaskCLIP path "
                "record none and hold the no-residual features); rebuild it with "
                "pop3d teacher-cache"
            )
        self.text_space = dict(self.meta.get("text_space") or {"kind": "open_clip"})

    def __call__(self, sample: dict) -> dict:
        path = _file(self.root, sample["token"])
        if not path.exists():
            raise FileNotFoundError(
                f"{path}: frame {sample['token']!r} is not in the teacher cache"
            )
        return {"features": np.load(path), "stride": int(self.meta.get("stride", 16))}
