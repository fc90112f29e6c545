"""Which 2D teacher a run distils from and the text space it lives in: the synthetic
teacher (synthetic data) or cached MaskCLIP features (`pop3d teacher-cache`)."""

from __future__ import annotations


def add_teacher_arguments(p, profile: str = "maskclip-like") -> None:
    """The 2D teacher and text-space options that `teacher_and_space` reads (train,
    pretrain2d, vfm-labels); `profile`: the default synthetic teacher profile, the realistic
    one (near-gt is the idealised option the shipped default model was trained with)."""
    p.add_argument(
        "--teacher",
        choices=["synthetic", "maskclip"],
        default=None,
        help="2D teacher (default: synthetic for synthetic data, else maskclip)",
    )
    p.add_argument(
        "--teacher-profile",
        choices=["near-gt", "maskclip-like"],
        default=profile,
        help="degradations of the synthetic teacher (data/synthetic_teacher.py "
        "TEACHER_PROFILES; default: %(default)s)",
    )
    p.add_argument("--teacher-cache", help="MaskCLIP feature cache dir (pop3d teacher-cache)")
    p.add_argument("--text-seed", type=int, default=0, help="synthetic text space seed")


def teacher_and_space(args, model_cfg):
    """(teacher callable, text_space dict, meta about the teacher)."""
    kind = args.teacher or ("synthetic" if args.data == "synthetic" else "maskclip")
    if kind == "synthetic":
        from dataclasses import asdict

        from pop3d_ros.data.synthetic_teacher import TEACHER_PROFILES, SyntheticTeacher
        from pop3d_ros.text.synthetic_text import SyntheticTextSpace

        space = SyntheticTextSpace(seed=args.text_seed, dim=model_cfg.heads.clip_dim)
        tcfg = TEACHER_PROFILES[args.teacher_profile]
        return (
            SyntheticTeacher(space, tcfg),
            space.describe(),
            {"kind": "synthetic", "profile": args.teacher_profile, **asdict(tcfg)},
        )
    from pop3d_ros.teachers.cache import CachedTeacher

    if not args.teacher_cache:
        raise ValueError("--teacher maskclip needs --teacher-cache DIR (run pop3d teacher-cache)")
    cached = CachedTeacher(args.teacher_cache)
    dim = cached.meta.get("dim")
    if dim is not None and int(dim) != model_cfg.heads.clip_dim:
        raise ValueError(
            f"teacher features are {dim}-d but the {model_cfg.name} language head "
            f"outputs {model_cfg.heads.clip_dim}-d; use a matching CLIP model"
        )
    info = {k: cached.meta.get(k) for k in ("model_name", "checkpoint", "variant")}
    return cached, cached.text_space, {"kind": "maskclip", "cache": str(args.teacher_cache), **info}
