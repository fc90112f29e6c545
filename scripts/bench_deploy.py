"""Deployment measurements of `make bench`: int8 vs fp32 ONNX Runtime (speed and accuracy),
the lazy image conversion's saving, and interleaved A/B timing.

Interleaving (A B A B ...) exposes both sides of a ratio to the same contention, which matters
on a shared machine where a sequential A-then-B comparison can swing by 40 %.
"""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np


def interleaved(fns: dict[str, Callable], repeat: int, warmup: int = 1) -> dict:
    """{name: {median_ms, min_ms, max_ms, runs}} timing the functions in turn, `repeat` rounds."""
    for fn in fns.values():
        for _ in range(warmup):
            fn()
    samples = {k: [] for k in fns}
    for _ in range(repeat):
        for name, fn in fns.items():
            t0 = time.perf_counter()
            fn()
            samples[name].append((time.perf_counter() - t0) * 1e3)
    return {
        k: {"median_ms": statistics.median(v), "min_ms": min(v), "max_ms": max(v), "runs": len(v)}
        for k, v in samples.items()
    }


def _heldout_feeds(checkpoint: Path, out: Path, seeds: str, frames: int) -> list[Path]:
    from pop3d_ros.cli import main

    if main(["calib-frames", "--checkpoint", str(checkpoint), "--out", str(out),
             "--seeds", seeds, "--frames-per-seed", str(frames)]) != 0:  # fmt: skip
        raise RuntimeError("pop3d calib-frames failed")
    return sorted(out.glob("*.npz"))


def bench_int8(
    checkpoint: Path,
    cache_dir: Path,
    tmp: Path,
    repeat: int,
    threads: int,
    eval_frames: int = 8,
    say=print,
) -> dict:
    """Q/DQ int8 vs fp32 under ONNX Runtime (CPU): interleaved encoder and language-head
    timings, and IoU / mIoU / LiDAR mIoU on `eval_frames` held-out frames (seeds 100+)."""
    from pop3d_ros.export.precision import quantize_export
    from pop3d_ros.export.runtime import load_runtime
    from pop3d_ros.export.trt_builder import load_calibration_feeds

    say("[bench] int8: calibration frames (seeds 200-201) and Q/DQ quantization")
    calib = _heldout_feeds(checkpoint, tmp / "calib", "200-201", 4)
    quiet = lambda _m: None  # noqa: E731
    fp32 = load_runtime(checkpoint, "onnxruntime", cache_dir, log=quiet, threads=threads)
    names = [s["name"] for s in fp32.manifest["graphs"]["encoder"]["inputs"]]
    t0 = time.perf_counter()
    quantize_export(fp32.export_dir, load_calibration_feeds(calib, names), quiet)
    quantize_s = time.perf_counter() - t0
    int8 = load_runtime(checkpoint, "onnxruntime", cache_dir, precision="int8", log=quiet,
                        threads=threads)  # fmt: skip
    feed = dict(np.load(calib[0]))
    out = fp32.encoder.infer(feed)
    occ = out["occupancy_logits"][0, ..., 1] > out["occupancy_logits"][0, ..., 0]
    lang = {"voxel_features": np.ascontiguousarray(out["voxel_features"][0][occ])}
    say("[bench] int8: interleaved timing")
    enc = interleaved({"fp32": lambda: fp32.encoder.infer(feed),
                       "int8": lambda: int8.encoder.infer(feed)}, repeat)  # fmt: skip
    head = interleaved({"fp32": lambda: fp32.language_head.infer(lang),
                        "int8": lambda: int8.language_head.infer(lang)}, repeat * 3)  # fmt: skip
    say(f"[bench] int8: accuracy on {eval_frames} held-out frames (fp32, then int8)")
    acc = {p: _evaluate(checkpoint, rt, eval_frames) for p, rt in (("fp32", fp32), ("int8", int8))}
    fp32.close()
    int8.close()
    return {
        "ort_int8_vs_fp32_speedup": enc["fp32"]["median_ms"] / enc["int8"]["median_ms"],
        "ort_int8_vs_fp32_speedup_language_head": head["fp32"]["median_ms"]
        / head["int8"]["median_ms"],
        "int8_iou_drop": 100 * (acc["fp32"]["iou"] - acc["int8"]["iou"]),
        "int8_miou_drop": 100 * (acc["fp32"]["miou"] - acc["int8"]["miou"]),
        "int8_lidar_miou_drop": 100 * (acc["fp32"]["lidar_miou"] - acc["int8"]["lidar_miou"]),
        "encoder": enc,
        "language_head": {**head, "rows": int(lang["voxel_features"].shape[0])},
        "accuracy": acc,
        "quantize_s": quantize_s,
        "calibration_frames": len(calib),
    }


def _evaluate(checkpoint: Path, runtime, frames: int) -> dict:
    """The `pop3d eval` metrics of a runtime on the first `frames` frames of seeds 100-103."""
    from pop3d_ros.data.sources import synthetic_source
    from pop3d_ros.evaluation.protocol import Evaluator
    from pop3d_ros.evaluation.zeroshot import ZeroShotClassifier, class_phrase_embeddings
    from pop3d_ros.export.eval_runtime import RuntimeModel
    from pop3d_ros.model.checkpoint import read_checkpoint
    from pop3d_ros.text.factory import text_encoder_from_spec

    cfg = runtime.config
    classifier = ZeroShotClassifier(class_phrase_embeddings(text_encoder_from_spec(
        read_checkpoint(checkpoint)["text_space"])))  # fmt: skip
    per_seed = max(1, -(-frames // 4))
    keys, make = synthetic_source([100, 101, 102, 103], per_seed, grid=cfg.voxel_grid)
    keys = sorted(keys, key=lambda k: (k[-4:], k))[:frames]  # spread over the seeds
    ev = Evaluator(RuntimeModel(runtime), cfg, classifier)
    ev.run((make(k) for k in keys), total=len(keys), show=False)
    r = ev.result()
    return {"iou": r["iou"], "miou": r["miou"], "lidar_miou": r["lidar_miou"], "frames": len(keys)}


def bench_lazy_conversion(
    node_hz_full_res: float | None,
    repeat: int,
    rate_hz: float = 12.0,
    hw=(900, 1600),
    model_hw=(128, 224),
    cameras: int = 6,
) -> dict:
    """CPU time per second of camera input spent on image conversion, eager (every arriving
    image decoded + resized in its callback) vs lazy (a zero-copy view on arrival, decode +
    resize only for the sets that run), at `hw` rgb8.

    Both per-image costs are measured here; the sets that run per second are the node's
    measured full-resolution rate (`node_hz_full_res`), else the input rate / 4.
    """
    from pop3d_ros.pipeline.images import raw_image_view
    from pop3d_ros.pipeline.preprocess import PendingImage, resize_to_rgb

    h, w = hw
    data = np.random.default_rng(0).integers(0, 256, h * w * 3, dtype=np.uint8).tobytes()
    t = interleaved({
        "eager_convert": lambda: resize_to_rgb(raw_image_view(data, h, w, w * 3, "rgb8"),
                                               "rgb8", model_hw),
        "lazy_arrival": lambda: PendingImage.raw(data, h, w, w * 3, "rgb8"),
        "lazy_convert": lambda: PendingImage.raw(data, h, w, w * 3, "rgb8").convert(model_hw),
    }, repeat * 10)  # fmt: skip
    sets_run = node_hz_full_res if node_hz_full_res else rate_hz / 4
    images_in = rate_hz * cameras
    eager = images_in * t["eager_convert"]["median_ms"]
    lazy = images_in * t["lazy_arrival"]["median_ms"] + sets_run * cameras * (
        t["lazy_convert"]["median_ms"] - t["lazy_arrival"]["median_ms"]
    )
    return {
        "lazy_conversion_saving": 1.0 - lazy / eager,
        "eager_cpu_ms_per_s": eager,
        "lazy_cpu_ms_per_s": lazy,
        "sets_run_per_s": sets_run,
        "per_image": t,
        "image_hw": list(hw),
    }
