"""Which 2D teacher a run distils from and the text space it lives in: the synthetic
teacher (synthetic data) or cached MaskCLIP features (`pop3d teacher-cache`)."""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Literal


@dataclass
class TeacherConfig:
    """The 2D teacher whose dense features the language head distils."""

    # "auto": the synthetic teacher on synthetic data, cached MaskCLIP features otherwise.
    kind: Literal["auto", "synthetic", "maskclip"] = "auto"
    # Degradations of the synthetic teacher (data/synthetic_teacher.py TEACHER_PROFILES):
    # maskclip-like is the realistic one, near-gt the idealised one.
    profile: Literal["near-gt", "maskclip-like"] = "maskclip-like"
    cache: str = ""  # MaskCLIP feature cache directory (pop3d teacher-cache), for kind maskclip
    text_seed: int = 0  # seed of the synthetic text space


def teacher_and_space(cfg: TeacherConfig, data: str, clip_dim: int):
    """(teacher callable, text_space dict, meta about the teacher) for frames from `data`
    ("synthetic" or "nuscenes") and a language head of width `clip_dim`."""
    kind = cfg.kind if cfg.kind != "auto" else ("synthetic" if data == "synthetic" else "maskclip")
    if kind == "synthetic":
        from pop3d_ros.data.synthetic_teacher import TEACHER_PROFILES, SyntheticTeacher
        from pop3d_ros.text.synthetic_text import SyntheticTextSpace

        space = SyntheticTextSpace(seed=cfg.text_seed, dim=clip_dim)
        tcfg = TEACHER_PROFILES[cfg.profile]
        return (
            SyntheticTeacher(space, tcfg),
            space.describe(),
            {"kind": "synthetic", "profile": cfg.profile, **asdict(tcfg)},
        )
    from pop3d_ros.teachers.cache import CachedTeacher

    if not cfg.cache:
        raise ValueError("teacher kind maskclip needs a feature cache (run pop3d teacher-cache)")
    cached = CachedTeacher(cfg.cache)
    dim = cached.meta.get("dim")
    if dim is not None and int(dim) != clip_dim:
        raise ValueError(
            f"teacher features are {dim}-d but the language head outputs {clip_dim}-d; "
            "use a matching CLIP model"
        )
    info = {k: cached.meta.get(k) for k in ("model_name", "checkpoint", "variant")}
    return cached, cached.text_space, {"kind": "maskclip", "cache": str(cfg.cache), **info}
