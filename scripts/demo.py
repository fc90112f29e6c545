"""`make demo`: a synthetic drive played into the real occupancy node, queried, and pictured.

1. renders a short drive of the synthetic world on a held-out seed;
2. starts the installed `occupancy_node` with the launch file's params file and the default
   model (a separate process, talking over DDS);
3. publishes the six camera topics and /odom frame by frame and collects the node's
   occupancy cloud; the node maps the drive (`mapping:=true`, map_frame odom);
4. calls `/query_text` for a few queries (classes, long-tail concepts, a paraphrase), and
   `/query_map` for "stairs" and an object that has left the view by the last frame;
5. writes pictures (`map_bev.png`, `map_query_<q>.png` among them) and `summary.json` to the
   output folder. Exits non-zero if the node failed (died, never published, or all queries
   failed).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
# Classes, long-tail concepts of the synthetic world v2 and a paraphrase ("a staircase").
QUERIES = ("car", "pedestrian", "building", "a parked bus", "stairs", "a staircase",
           "fire hydrant", "ambulance")  # fmt: skip
# One prompt per class, in class-id order, so the node's `label` field is the class id.
VOCABULARY = (
    "barrier", "bicycle", "bus", "car", "construction vehicle", "motorcycle", "pedestrian",
    "traffic cone", "trailer", "truck", "road", "other flat", "sidewalk", "terrain",
    "manmade", "vegetation",
)  # fmt: skip


def say(msg: str) -> None:
    print(f"[demo] {msg}", flush=True)


def installed_paths() -> tuple[Path, Path]:
    """(occupancy_node executable, share/pop3d_ros) of the colcon install."""
    from ament_index_python.packages import get_package_prefix, get_package_share_directory

    prefix = Path(get_package_prefix("pop3d_ros"))
    return prefix / "lib" / "pop3d_ros" / "occupancy_node", Path(
        get_package_share_directory("pop3d_ros")
    )


def start_node(args, out: Path, vocabulary) -> subprocess.Popen:
    exe, share = installed_paths()
    params = share / "config" / "occupancy.yaml"
    vocab = "[" + ",".join(f"'{v}'" for v in vocabulary) + "]"
    cmd = [
        str(exe), "--ros-args", "--params-file", str(params),
        "-p", f"model_dir:={Path(args.model_dir).resolve()}",
        "-p", f"backend:={args.backend}",
        "-p", f"vocabulary:={vocab}",
        "-p", "mapping:=true", "-p", "map_frame:=odom",  # the player's /odom is in odom
    ]  # fmt: skip
    say(f"starting {exe.name} (params {params}, backend {args.backend})")
    log = open(out / "node.log", "w")  # noqa: SIM115 - lives as long as the process
    return subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)


def stop_node(proc: subprocess.Popen) -> int | None:
    if proc.poll() is None:
        os.killpg(proc.pid, 2)  # SIGINT: the node's clean shutdown path
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, 9)
            proc.wait(5)
    return proc.returncode


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--out", default="demo_out")
    parser.add_argument("--model-dir", default=str(ROOT / "models" / "default"))
    parser.add_argument("--backend", default="auto")
    parser.add_argument("--seed", type=int, default=1000, help="held out: training uses 0-39")
    # 20 sets (80 m): objects of the first sets are behind the grid by the last one
    parser.add_argument("--frames", type=int, default=20)
    parser.add_argument("--frame-timeout", type=float, default=60.0)
    args = parser.parse_args(argv)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)

    # No DDS transport of our own (README: DDS settings for six large image streams): the
    # demo's processes talk as any default-configured ROS 2 process would.
    os.environ.setdefault("ROS_DOMAIN_ID", str(100 + os.getpid() % 100))

    from pop3d_ros.data.synthetic.world import SyntheticWorld
    from pop3d_ros.model.checkpoint import read_checkpoint
    from pop3d_ros.model.config import ModelConfig

    ckpt_path = Path(args.model_dir) / "model.pt"
    grid = ModelConfig.from_dict(read_checkpoint(ckpt_path)["config"]).voxel_grid
    say(f"rendering {args.frames} frames of synthetic drive seed {args.seed}")
    world = SyntheticWorld(seed=args.seed, num_frames=args.frames)
    t0 = time.perf_counter()
    samples = [world.sample(i, grid=grid) for i in range(args.frames)]
    render_s = time.perf_counter() - t0

    from demo_map import STAIRS, drive_truth, out_of_view_query
    from demo_ros import DemoClient  # scripts/demo_ros.py: the ROS side of the demo

    truth = drive_truth(world, args.frames, grid)
    gone = out_of_view_query(truth)
    map_targets = [STAIRS] + ([gone] if gone else [])

    node_proc = start_node(args, out, VOCABULARY)
    summary: dict = {"seed": args.seed, "render_s": render_s, "backend_requested": args.backend}
    failed = False
    try:
        with DemoClient() as client:
            say("waiting for the node (model load, first export on a fresh machine)")
            if not client.wait_ready(node_proc, timeout=180.0):
                raise RuntimeError(f"node not ready ({client.model_status}); see node.log")
            say(f"node ready: {client.model_status[1]}")
            frames = client.play(samples, node_proc, args.frame_timeout, say)
            last = frames[-1] if frames and frames[-1]["cloud"] is not None else None
            if last is None:
                raise RuntimeError("the node published no occupancy for the last frame")
            queries = [client.query(q) for q in QUERIES]
            map_cloud = client.wait_map(frames[-1]["stamp_us"])
            map_answers = [(c, client.query(t, on_map=True)) for c, t in map_targets]
            stage_ms, diag = client.diagnostics()
    except Exception as exc:  # noqa: BLE001 - reported, then the node is stopped
        say(f"FAILED: {exc}")
        failed, frames, queries, stage_ms, diag = True, [], [], {}, {}
        map_cloud, map_answers = None, []
    finally:
        rc = stop_node(node_proc)
    summary["node_exit_code"] = rc

    from demo_report import write_map_report, write_report  # pictures + summary

    summary.update(write_report(out, samples, frames, queries, grid, VOCABULARY))
    summary.update({"stage_ms": stage_ms, "diagnostics": diag})
    summary["map"] = write_map_report(out, map_cloud, map_answers, truth, diag)
    processed = summary.get("frames_processed", 0)
    ok_queries = sum(q["success"] for q in summary.get("queries", []))
    failed = failed or processed == 0 or ok_queries == 0
    summary["ok"] = not failed
    (out / "summary.json").write_text(json.dumps(summary, indent=2))
    say(f"frames published {summary.get('frames_published')}, processed {processed}, "
        f"IoU vs ground truth {summary.get('iou_vs_ground_truth')}")  # fmt: skip
    for q in summary.get("queries", []):
        g = q.get("grounding") or {}
        say(f"query {q['text']!r}: success={q['success']} top={q.get('top_score')} "
            f"top10_precision={q.get('top10_precision')} objects={g.get('objects_total')} "
            f"found {g.get('gt_instances_found')}/{g.get('gt_instances_in_view')} "
            f"{q['message']}")  # fmt: skip
    m = summary["map"]
    say(f"map: {m.get('frames_integrated')} sets integrated, {m.get('occupied_voxels')} "
        "occupied voxels")  # fmt: skip
    for q in m.get("queries", []):
        say(f"query_map {q['text']!r}: success={q['success']} objects={q.get('objects_total')} "
            f"found {q.get('gt_instances_found')}/{q['gt_instances_seen']} "
            f"(out of view at the end: {q.get('gt_out_of_view_found')}/"
            f"{q['gt_instances_out_of_view_at_end']}) top point "
            f"{q.get('top_point_nearest_instance_m')} m from one {q['message']}")  # fmt: skip
    say(f"wrote {out}/summary.json and pictures; {'FAILED' if failed else 'OK'}")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.path.insert(0, str(Path(__file__).resolve().parent))
    sys.exit(main())
