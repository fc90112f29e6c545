"""Run inside a private network namespace (test_dds_interop.py): the occupancy node and its
peers with the DEFAULT discovery range, as on a user's machine, without sending anything
beyond this namespace's loopback. Prints one JSON line with what the peers saw.

    python dds_scenario.py launch|play WORKDIR

`launch`: the node with the environment the launch file gives it; a probe and the example
query client in a clean environment. `play`: the node and `pop3d play` each started in a
clean environment, as from two fresh shells (the player may get POP3D_PLAYER_ENV on top);
a clean probe counts the clouds."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

from pipeline_fixtures import write_tiny_checkpoint  # noqa: E402
from ros_harness import find_installed_executable, ros_node_command, write_params_file  # noqa: E402

DDS_PREFIXES = ("FASTDDS_", "FASTRTPS_", "RMW_", "CYCLONEDDS_", "ROS_AUTOMATIC_DISCOVERY_RANGE")


def clean_env() -> dict:
    """This environment without any DDS / RMW / discovery configuration (a fresh shell)."""
    return {k: v for k, v in os.environ.items() if not k.startswith(DDS_PREFIXES)}


def run(cmd, timeout=120.0) -> subprocess.CompletedProcess:
    return subprocess.run([str(c) for c in cmd], env=clean_env(), capture_output=True,
                          text=True, timeout=timeout)  # fmt: skip


def probe(timeout: float, min_clouds: int = 0) -> dict:
    out = run([sys.executable, HERE / "dds_probe.py", timeout, min_clouds], timeout + 30)
    lines = out.stdout.strip().splitlines()
    return json.loads(lines[-1]) if lines else {"error": out.stderr[-2000:]}


def main() -> int:
    mode, work = sys.argv[1], Path(sys.argv[2])
    node_env = clean_env()
    if mode == "launch":
        node_env.update(json.loads(os.environ.get("POP3D_LAUNCH_ENV", "{}")))
    write_tiny_checkpoint(work / "model.pt", occupancy_bias=2.0)
    params = write_params_file(work / "params.yaml", "pop3d_occupancy", {
        "backend": "torch", "model_dir": str(work), "diagnostics_period_s": 0.5,
        "max_camera_time_diff": 0.05})  # fmt: skip
    exe = find_installed_executable("pop3d_ros", "occupancy_node")
    log = open(work / "node.log", "w")  # noqa: SIM115 - closed below
    node = subprocess.Popen([str(c) for c in ros_node_command(exe, params)], env=node_env,
                            stdout=log, stderr=subprocess.STDOUT)  # fmt: skip
    result: dict = {"mode": mode}
    players = []
    try:
        if mode == "launch":
            result["probe"] = probe(60.0)
            client = run([sys.executable, HERE.parent / "examples" / "query_text_client.py",
                          "car", "--timeout", "30"], 60.0)  # fmt: skip
            result["client"] = {"rc": client.returncode, "stdout": client.stdout,
                                "stderr": client.stderr[-2000:]}  # fmt: skip
        else:
            play = [shutil.which("pop3d"), "play", "--num_frames", "2", "--image_width", "64",
                    "--image_height", "36", "--rate_hz", "4", "--loop"]  # fmt: skip
            player_env = {**clean_env(), **json.loads(os.environ.get("POP3D_PLAYER_ENV", "{}"))}
            players.append(subprocess.Popen(play, env=player_env, stdout=subprocess.DEVNULL,
                                            stderr=subprocess.DEVNULL))  # fmt: skip
            result["probe"] = probe(90.0, min_clouds=3)
        result["node_alive"] = node.poll() is None
    finally:
        for p in [*players, node]:
            p.send_signal(2)
        for p in [*players, node]:
            try:
                p.wait(10)
            except subprocess.TimeoutExpired:
                p.kill()
        log.close()
        time.sleep(0.1)
    result["node_log"] = (work / "node.log").read_text()[-3000:]
    print(json.dumps(result))
    return 0


if __name__ == "__main__":
    sys.exit(main())
