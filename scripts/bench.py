"""`make bench`: side-by-side measurements in one run, written to bench/results.json.

Every figure is the median of several timed runs after warm-up, with min and max. Ratios
compare two variants timed in this same process on the same inputs, so they hold on other
machines even where absolute numbers do not.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
DEFAULT_CHECKPOINT = ROOT / "models" / "default" / "model.pt"


def timed(fn, repeat: int, warmup: int = 1) -> dict:
    """Median/min/max milliseconds of `fn()` over `repeat` runs after `warmup` runs."""
    for _ in range(warmup):
        fn()
    samples = []
    for _ in range(repeat):
        t0 = time.perf_counter()
        fn()
        samples.append((time.perf_counter() - t0) * 1e3)
    return {
        "median_ms": statistics.median(samples),
        "min_ms": min(samples),
        "max_ms": max(samples),
        "runs": repeat,
    }


def machine_info() -> dict:
    import torch

    return {
        "platform": platform.platform(),
        "processor": platform.processor() or platform.machine(),
        "cpu_count": os.cpu_count(),
        "torch_threads": torch.get_num_threads(),
        "python": platform.python_version(),
        "torch": torch.__version__,
    }


def checkpoint_or_random(tmp: Path) -> tuple[Path, str]:
    """The default checkpoint, or a random-init cpu-small one when none is committed."""
    if DEFAULT_CHECKPOINT.is_file():
        return DEFAULT_CHECKPOINT, "models/default/model.pt"
    from pop3d_ros.model import build_model, get_preset
    from pop3d_ros.model.checkpoint import save_checkpoint
    from pop3d_ros.text.synthetic_text import SyntheticTextSpace

    cfg = get_preset("cpu-small")
    path = tmp / "random_cpu_small.pt"
    save_checkpoint(path, build_model(cfg), cfg, SyntheticTextSpace().describe(), {})
    return path, "random-init cpu-small (no default checkpoint found)"


def bench_render(frames: int) -> dict:
    from pop3d_ros.data.synthetic.world import render_benchmark

    return render_benchmark(frames=frames)


def frame_inputs(runtime):
    """One synthetic frame as the node sees it: raw rgb8 buffers, cameras, and the encoder feed."""
    from pop3d_ros.data.synthetic.world import SyntheticWorld
    from pop3d_ros.geometry.camera import PinholeCamera

    world = SyntheticWorld(seed=1000, num_frames=1)
    sample = world.sample(0, grid=runtime.config.voxel_grid)
    h, w = sample["images"].shape[1:3]
    cameras = [
        PinholeCamera(sample["intrinsics"][i], sample["cam_to_ego"][i], w, h, name)
        for i, name in enumerate(sample["camera_names"])
    ]
    buffers = [bytes(np.ascontiguousarray(img)) for img in sample["images"]]
    return sample, buffers, cameras


def bench_node_stages(runtime, text_encoder, repeat: int) -> tuple[dict, dict]:
    """Per-stage latency of the node's processing chain, run in-process on one frame."""
    from pop3d_ros.pipeline.images import raw_image_view
    from pop3d_ros.pipeline.messages import cloud_array, height_colors, marker_arrays
    from pop3d_ros.pipeline.occupancy import OccupancyPipeline, PipelineConfig
    from pop3d_ros.pipeline.preprocess import cameras_for_input, resize_to_rgb

    pipeline = OccupancyPipeline(runtime, text_encoder, PipelineConfig())
    sample, buffers, cameras = frame_inputs(runtime)
    h, w = sample["images"].shape[1:3]
    hw = pipeline.image_hw

    def decode():
        return [raw_image_view(b, h, w, w * 3, "rgb8") for b in buffers]

    views = decode()

    def preprocess():
        return [resize_to_rgb(v, "rgb8", hw) for v in views], cameras_for_input(cameras, hw)

    images, cams = preprocess()

    def infer():
        return pipeline.infer(images, cams, stamp=0.0)

    result = infer()
    z_range = runtime.config.voxel_grid.z_range

    def build_messages():
        marker_arrays(result.centres, height_colors(result.centres[:, 2], z_range))
        cloud_array(result.centres, result.probabilities).tobytes()

    stages = {
        "decode": timed(decode, repeat * 5),
        "preprocess": timed(preprocess, repeat * 5),
        "inference": timed(infer, repeat),
        "marker_cloud_build": timed(build_messages, repeat * 5),
    }
    query_text = "car"
    stages["query"] = timed(lambda: pipeline.query(query_text, 10), repeat * 5)
    extra = {"occupied_voxels": result.count, "pipeline": pipeline, "result": result}
    return stages, {**extra, "images": images, "cameras": cams}


def bench_query(pipeline, repeat: int) -> dict:
    """Cold = an uncached text (embedding computed), cached = the same text again."""
    from pop3d_ros.data.classes import CLASS_NAMES

    colds = []
    for i in range(repeat):
        pipeline._text_cache.clear()  # noqa: SLF001 - the cold path is what is measured
        name = CLASS_NAMES[i % len(CLASS_NAMES)].replace("_", " ")
        t0 = time.perf_counter()
        pipeline.query(name, 10)
        colds.append((time.perf_counter() - t0) * 1e3)
    cached = timed(lambda: pipeline.query("car", 10), repeat * 5)
    return {
        "cold": {"median_ms": statistics.median(colds), "min_ms": min(colds), "max_ms": max(colds)},
        "cached": cached,
    }


def encoder_feed(runtime) -> dict:
    """The encoder inputs of one real synthetic frame, as the node would build them."""
    from pop3d_ros.pipeline.preprocess import cameras_for_input, images_to_input, resize_to_rgb
    from pop3d_ros.pipeline.sampling_cache import SamplingCache

    cfg = runtime.config
    sample, _, cameras = frame_inputs(runtime)
    hw = tuple(cfg.image_size)
    sampling = SamplingCache.for_model(cfg)
    calib = sampling.feed(cameras_for_input(cameras, hw))
    images = [resize_to_rgb(im, "rgb8", hw) for im in sample["images"]]
    return {"images": images_to_input(images), **calib}


def bench_query_open_clip(runtime, repeat: int) -> dict:
    """The same query path with an open_clip ViT-B-32 text tower (random weights: the cost of
    a real CLIP query, 8 prompt templates per text), cold vs cached."""
    from pop3d_ros.pipeline.occupancy import LazyFeatures, OccupancyPipeline, OccupancyResult
    from pop3d_ros.text.clip_text import OpenClipTextEncoder

    encoder = OpenClipTextEncoder("ViT-B-32", cache_size=1)  # the pipeline keeps its own cache
    pipeline = OccupancyPipeline(runtime, encoder)
    rng = np.random.default_rng(0)
    n = 1500
    pipeline._latest = OccupancyResult(  # noqa: SLF001 - a typical occupancy, no inference
        stamp=1.0,
        indices=np.zeros((n, 3), np.int64),
        centres=rng.standard_normal((n, 3)).astype(np.float32),
        probabilities=np.ones(n, np.float32),
        voxel_features=np.zeros((n, 0), np.float32),
        language=LazyFeatures(value=rng.standard_normal((n, encoder.embed_dim)).astype(np.float32)),
        labels=None,
    )
    return bench_query(pipeline, repeat)


def bench_backends(checkpoint: Path, cache_dir: Path, repeat: int, threads: int) -> dict:
    """Encoder + language head: PyTorch eager vs ONNX Runtime on the same feeds, interleaved
    (A B A B ...) so contention from other processes hits both sides alike."""
    from bench_deploy import interleaved

    from pop3d_ros.export.runtime import load_runtime

    rts = {
        b: load_runtime(checkpoint, b, cache_dir=cache_dir, log=lambda s: None, threads=threads)
        for b in ("torch", "onnxruntime")
    }
    enc_feed = encoder_feed(rts["torch"])
    c_v = rts["torch"].config.decoder.voxel_channels
    lang = {"voxel_features": np.random.default_rng(0).standard_normal((4000, c_v), np.float32)}
    enc = interleaved({b: (lambda r=r: r.encoder.infer(enc_feed)) for b, r in rts.items()}, repeat)
    head = interleaved({b: (lambda r=r: r.language_head.infer(lang)) for b, r in rts.items()},
                       repeat)  # fmt: skip
    out = {
        b: {"encoder": enc[b], "language_head_4000": head[b], "description": r.description}
        for b, r in rts.items()
    }
    for r in rts.values():
        r.close()
    out["timing"] = "interleaved"
    out["ort_vs_torch_speedup"] = enc["torch"]["median_ms"] / enc["onnxruntime"]["median_ms"]
    out["ort_vs_torch_speedup_language_head"] = (
        head["torch"]["median_ms"] / head["onnxruntime"]["median_ms"]
    )
    return out


def bench_markers(centres: np.ndarray, probabilities: np.ndarray, z_range, repeat: int) -> dict:
    """Vectorised vs per-voxel construction of the marker colours and cloud bytes."""
    from pop3d_ros.pipeline.messages import (
        cloud_array,
        cloud_bytes_loop,
        height_colors,
        height_colors_loop,
        marker_arrays,
    )

    def vectorised():
        marker_arrays(centres, height_colors(centres[:, 2], z_range))
        return cloud_array(centres, probabilities).tobytes()

    def loop():
        height_colors_loop(centres[:, 2], z_range)
        return cloud_bytes_loop(centres, probabilities)

    if vectorised() != loop():
        raise RuntimeError("vectorised and per-voxel cloud bytes differ")
    vec, slow = timed(vectorised, repeat * 5), timed(loop, repeat)
    return {
        "voxels": int(len(centres)),
        "vectorized": vec,
        "per_voxel_loop": slow,
        "markers_vectorized_speedup": slow["median_ms"] / vec["median_ms"],
    }


def bench_matmul_fraction(runtime, encoder_ms: float) -> dict:
    """Model GFLOP/s as a fraction of this machine's fp32 matmul GFLOP/s (same threads)."""
    import torch

    from pop3d_ros.model.flops import estimate_gflops

    gflops = estimate_gflops(runtime.config)["encoder_occupancy"]
    n = 1024
    a, b = torch.randn(n, n), torch.randn(n, n)
    mm = timed(lambda: torch.mm(a, b), 10, warmup=3)
    matmul_gflops = 2 * n**3 / (mm["median_ms"] * 1e-3) / 1e9
    model_gflops_per_s = gflops / (encoder_ms * 1e-3)
    return {
        "model_forward_gflops": gflops,
        "model_gflops_per_s": model_gflops_per_s,
        "matmul_gflops_per_s": matmul_gflops,
        "model_gflops_fraction_of_matmul": model_gflops_per_s / matmul_gflops,
    }


def print_table(results: dict) -> None:
    rows = [
        ("ONNX Runtime vs PyTorch eager (encoder)", f"{results['ort_vs_torch_speedup']:.2f}x"),
        ("vectorised vs per-voxel markers+cloud", f"{results['markers_vectorized_speedup']:.1f}x"),
        ("query cold / cached, model's text space (ms)",
         f"{results['query_ms_cold']:.2f} / {results['query_ms_cached']:.3f}"),
        ("query cold / cached, open_clip ViT-B-32 (ms)",
         f"{results['query_ms_cold_open_clip']:.1f} / {results['query_ms_cached_open_clip']:.3f}"),
        ("model GFLOP/s / matmul GFLOP/s", f"{results['model_gflops_fraction_of_matmul']:.3f}"),
        ("synthetic render (s per frame)", f"{results['render_s_per_frame']:.2f}"),
        ("map update per camera set, 64x64x8 grid (ms)", f"{results['map_update_ms']:.1f}"),
        ("map query over 100k occupied voxels (ms)", f"{results['map_query_ms']:.1f}"),
    ]  # fmt: skip
    rows += [
        ("node rate, six 12 Hz streams at the model's input size (Hz)",
         f"{results['node_hz_model_res']:.2f}"),
        ("node rate, the same with mapping:=true (Hz)",
         f"{results['node_hz_model_res_mapping']:.2f}"),
        ("node rate, the same with executor:=multi_threaded (Hz)",
         f"{results['node_hz_model_res_multi_threaded']:.2f}"),
        ("node rate, six 12 Hz streams at 900x1600 (Hz)", f"{results['node_hz_full_res']:.2f}"),
        ("ONNX Runtime int8 vs fp32 (encoder)", f"{results['ort_int8_vs_fp32_speedup']:.2f}x"),
        ("int8 IoU drop (points, held-out frames)", f"{results['int8_iou_drop']:.2f}"),
        ("lazy conversion: conversion CPU saved at 900x1600",
         f"{100 * results['lazy_conversion_saving']:.0f} %"),
    ]  # fmt: skip
    rows += [
        ("encoder: heads' Softplus rewritten vs ONNX Softplus",
         f"{results['softplus_rewrite_speedup']:.2f}x"),
        ("frame: language head on demand vs every frame",
         f"{results['language_on_demand_speedup']:.2f}x"),
        ("query on an idle node, one inference included (ms)", f"{results['query_ms_idle']:.0f}"),
        ("node CPU idle vs watched (same camera stream)",
         f"{results['idle_vs_watched_cpu']:.2f}x"),
        (f"shutdown, worst state ({results['details']['shutdown']['worst_state']}) (s)",
         f"{results['shutdown_s']:.2f}"),
        ("load average (1, 5, 15 min) at the end", ", ".join(
            f"{v:.1f}" for v in results["details"]["load_average"])),
    ]  # fmt: skip
    rows += [(f"node stage: {k} (ms)", f"{v:.2f}") for k, v in results["node_stage_ms"].items()]
    width = max(len(r[0]) for r in rows)
    print("\n| measure".ljust(width + 3) + " | value |")
    print("|" + "-" * (width + 2) + "|-------|")
    for name, value in rows:
        print(f"| {name.ljust(width)} | {value} |")


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--out", default="bench/results.json")
    parser.add_argument("--repeat", type=int, default=5, help="timed runs per figure")
    parser.add_argument("--render-frames", type=int, default=3)
    parser.add_argument("--node-seconds", type=float, default=30.0, help="node rate window")
    parser.add_argument("--eval-frames", type=int, default=8, help="held-out frames, int8 IoU")
    parser.add_argument(
        "--map-long-frames", type=int, default=2000, help="camera sets of the map's long drive"
    )
    args = parser.parse_args(argv)
    sys.path.insert(0, str(Path(__file__).resolve().parent))
    import torch
    from bench_deploy import bench_int8, bench_lazy_conversion
    from bench_map import bench_map
    from bench_node import node_rate
    from bench_production import (
        bench_language_on_demand,
        bench_softplus,
        idle_vs_watched_cpu,
        ort_op_profile,
        query_ms_idle,
        shutdown_times,
    )

    torch.set_num_threads(max(1, min(2, os.cpu_count() or 1)))
    from pop3d_ros.export.runtime import load_runtime
    from pop3d_ros.text.factory import text_encoder_from_spec

    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        checkpoint, model_desc = checkpoint_or_random(tmp)
        print(f"[bench] model: {model_desc}", flush=True)
        print("[bench] backends: torch vs onnxruntime", flush=True)
        backends = bench_backends(checkpoint, tmp / "cache", args.repeat, torch.get_num_threads())
        runtime = load_runtime(checkpoint, backend="onnxruntime", cache_dir=tmp / "cache",
                               log=lambda s: None, threads=torch.get_num_threads())  # fmt: skip
        text_encoder = text_encoder_from_spec(runtime.text_space)
        print("[bench] node stages", flush=True)
        stages, extra = bench_node_stages(runtime, text_encoder, args.repeat)
        print("[bench] production node: softplus, language head on demand", flush=True)
        threads = torch.get_num_threads()
        softplus = bench_softplus(checkpoint, encoder_feed(runtime), tmp, args.repeat, threads)
        on_demand = bench_language_on_demand(
            runtime, text_encoder, extra["images"], extra["cameras"], args.repeat
        )
        print("[bench] query, markers, matmul, render", flush=True)
        query = bench_query(extra["pipeline"], args.repeat)
        query_clip = bench_query_open_clip(runtime, args.repeat)
        result = extra["result"]
        markers = bench_markers(result.centres, result.probabilities,
                                runtime.config.voxel_grid.z_range, args.repeat)  # fmt: skip
        matmul = bench_matmul_fraction(runtime, backends["torch"]["encoder"]["median_ms"])
        print("[bench] map: update, query over 100k voxels, long drive", flush=True)
        mapping = bench_map(extra["pipeline"], args.repeat, args.map_long_frames)
        render = bench_render(args.render_frames)
        model_hw = tuple(runtime.config.image_size)
        encoder_feed_cached = encoder_feed(runtime)
        runtime.close()
        int8 = bench_int8(checkpoint, tmp / "cache", tmp, args.repeat, torch.get_num_threads(),
                          args.eval_frames)  # fmt: skip
        int8_graph = next((tmp / "cache").glob("*/encoder.int8.onnx"), None)
        if int8_graph is not None:
            int8["profile_int8"] = ort_op_profile(int8_graph, encoder_feed_cached, threads)
            int8["profile_fp32"] = softplus["profile_rewritten"]
        node = {}
        for key, hw in (("model_res", model_hw), ("full_res", (900, 1600))):
            print(f"[bench] node rate at {hw[1]}x{hw[0]} ({args.node_seconds:.0f} s)", flush=True)
            node[key] = node_rate(checkpoint, tmp / "cache", hw, args.node_seconds)
            if key == "model_res":  # side by side: the same streams with the map on
                print("[bench] node rate with mapping:=true", flush=True)
                node["model_res_mapping"] = node_rate(
                    checkpoint, tmp / "cache", hw, args.node_seconds, mapping=True
                )
                print("[bench] node rate with executor:=multi_threaded", flush=True)
                node["model_res_multi_threaded"] = node_rate(
                    checkpoint, tmp / "cache", hw, args.node_seconds, executor="multi_threaded"
                )
        lazy = bench_lazy_conversion(node["full_res"]["hz"], args.repeat, model_hw=model_hw)
        print("[bench] idle query and shutdown of the installed node", flush=True)
        idle = query_ms_idle(checkpoint, tmp / "cache", model_hw)
        idle_cpu = idle_vs_watched_cpu(checkpoint, tmp / "cache", model_hw)
        shutdown = shutdown_times(checkpoint, model_hw)

    results = {
        "machine": machine_info(),
        "model": model_desc,
        "ort_vs_torch_speedup": backends["ort_vs_torch_speedup"],
        "node_hz_model_res": node["model_res"]["hz"],
        "node_hz_model_res_mapping": node["model_res_mapping"]["hz"],
        "node_hz_model_res_multi_threaded": node["model_res_multi_threaded"]["hz"],
        "node_hz_full_res": node["full_res"]["hz"],
        "ort_int8_vs_fp32_speedup": int8["ort_int8_vs_fp32_speedup"],
        "int8_iou_drop": int8["int8_iou_drop"],
        "lazy_conversion_saving": lazy["lazy_conversion_saving"],
        "softplus_rewrite_speedup": softplus["softplus_rewrite_speedup"],
        "language_on_demand_speedup": on_demand["language_on_demand_speedup"],
        "query_ms_idle": idle["median_ms"],
        "idle_vs_watched_cpu": idle_cpu["idle_vs_watched_cpu"],
        "shutdown_s": shutdown["shutdown_s"],
        "markers_vectorized_speedup": markers["markers_vectorized_speedup"],
        "query_ms_cold": query["cold"]["median_ms"],
        "query_ms_cached": query["cached"]["median_ms"],
        "query_ms_cold_open_clip": query_clip["cold"]["median_ms"],
        "query_ms_cached_open_clip": query_clip["cached"]["median_ms"],
        "model_gflops_fraction_of_matmul": matmul["model_gflops_fraction_of_matmul"],
        "render_s_per_frame": render["total_s"],
        "map_update_ms": mapping["map_update_ms"],
        "map_query_ms": mapping["map_query_ms"],
        "node_stage_ms": {k: v["median_ms"] for k, v in stages.items()},
        "details": {
            "backends": backends,
            "node_rate": node,
            "int8": int8,
            "lazy_conversion": lazy,
            "softplus": softplus,
            "language_on_demand": on_demand,
            "query_idle": idle,
            "idle_cpu": idle_cpu,
            "shutdown": shutdown,
            "load_average": os.getloadavg(),
            "markers": markers,
            "query": query,
            "query_open_clip_vit_b_32": query_clip,
            "matmul": matmul,
            "render": render,
            "map": mapping["details"],
            "node_stages": stages,
            "occupied_voxels": extra["occupied_voxels"],
            "tensorrt": "not measured: no GPU / TensorRT on this machine",
        },
    }
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(results, indent=2))
    print_table(results)
    print(f"\n[bench] wrote {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
