"""`pop3d train` with train.eval_every: the held-out frames and evaluator of the periodic
evaluation."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass
class PeriodicEvalConfig:
    """The held-out evaluation every train.eval_every steps (0 = none)."""

    # Held-out synthetic seeds (must not overlap the training seeds).
    held_out_seeds: str = "100-101"
    held_out_split: str = "val"  # held-out nuScenes split
    max_frames: int = 8  # frames, spread over the seeds/split (0 = all)
    # Volume scored (evaluation/volume.py), recorded in the checkpoint for pop3d eval: auto =
    # pop3d-nuscenes on nuScenes, the model's grid on synthetic.
    volume: str = "auto"


def held_out_evaluation(settings, model_cfg, teacher, text_encoder, extra, info):
    """The periodic evaluation of `settings.eval`: this rank's share of the held-out frames,
    loaded once (`text_encoder()`: the run's text encoder)."""
    import numpy as np
    from tqdm import tqdm

    from pop3d_ros.data.sources import frame_source
    from pop3d_ros.evaluation.protocol import HeldOutEvaluation
    from pop3d_ros.evaluation.volume import choose_volume
    from pop3d_ros.evaluation.zeroshot import ZeroShotClassifier, class_phrase_embeddings

    ev = settings.eval
    keys, make_sample = frame_source(
        settings.data, model_cfg.voxel_grid, seeds=ev.held_out_seeds, split=ev.held_out_split
    )
    if 0 < ev.max_frames < len(keys):
        spread = np.linspace(0, len(keys) - 1, ev.max_frames).round().astype(int)
        keys = [keys[i] for i in spread]
    mine = keys[info.rank :: info.world_size]
    samples = [make_sample(k) for k in tqdm(mine, desc="eval frames", disable=not info.is_main)]
    if not teacher_covers(teacher, samples):
        teacher = None
        if info.is_main:
            print("periodic eval: no teacher baseline (eval frames are not in the teacher cache)")
    return HeldOutEvaluation(
        model_cfg,
        samples,
        ZeroShotClassifier(class_phrase_embeddings(text_encoder())),
        device=info.device,
        teacher=teacher,
        prior=extra["occupancy_prior"].float().numpy(),
        prior_threshold=extra["prior_threshold"],
        volume=choose_volume(ev.volume, model_cfg.voxel_grid, settings.data.data, {}),
    )


def teacher_covers(teacher, samples) -> bool:
    """Whether the teacher has features for every sample (a MaskCLIP cache may hold only
    the training split)."""
    from pop3d_ros.teachers.cache import CachedTeacher

    if not isinstance(teacher, CachedTeacher):
        return True
    try:
        for s in samples:
            teacher(s)
    except FileNotFoundError:
        return False
    return True
