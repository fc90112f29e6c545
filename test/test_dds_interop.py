"""The node must talk to every default-configured ROS 2 process. A Fast DDS participant whose
builtin transports differ from the defaults (e.g. FASTDDS_BUILTIN_TRANSPORTS=LARGE_DATA)
exchanges nothing with a default one, so `ros2 topic echo`, `ros2 service call`, RViz and
camera drivers would see no node.

The rest of the suite runs with ROS_AUTOMATIC_DISCOVERY_RANGE=LOCALHOST, under which the RMW
replaces the builtin transports and hides exactly this mismatch (measured: LARGE_DATA and
default participants exchange data under LOCALHOST, nothing under the default range). So
these scenarios run with the default discovery range, as on a user's machine, inside a
private network namespace (`unshare -rn`, loopback only) so that nothing leaves it. The node
gets exactly the environment the launch file gives it; its peers (a probe, the example query
client, `pop3d play`) get a clean environment: no FASTDDS_*, RMW_* or discovery variables."""

from __future__ import annotations

import ast
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from dds_scenario import DDS_PREFIXES

pytestmark = pytest.mark.ros

ROOT = Path(__file__).resolve().parents[1]
LAUNCH = ROOT / "launch" / "occupancy.launch.py"
NAMESPACE_SETUP = (
    "ip link set lo up && ip link set lo multicast on && ip route add 224.0.0.0/4 dev lo"
)


def launch_file_environment() -> dict:
    """The variables the launch file sets for its processes (SetEnvironmentVariable calls
    and Node(additional_env=...)), read from its source: what `ros2 launch` would export."""
    tree = ast.parse(LAUNCH.read_text())
    env = {}
    for call in (n for n in ast.walk(tree) if isinstance(n, ast.Call)):
        name = getattr(call.func, "id", None) or getattr(call.func, "attr", None)
        if name == "SetEnvironmentVariable":
            key, value = (ast.literal_eval(a) for a in call.args[:2])
            env[key] = value
        for kw in call.keywords:
            if kw.arg == "additional_env":
                env.update(ast.literal_eval(kw.value))
    return env


def run_scenario(
    mode: str, tmp_path: Path, launch_env: dict | None = None, player_env: dict | None = None
) -> dict:
    assert shutil.which("unshare") and shutil.which("ip"), "needs util-linux and iproute2"
    scenario = f"{sys.executable} {ROOT / 'test' / 'dds_scenario.py'} {mode} {tmp_path}"
    env = {
        "POP3D_LAUNCH_ENV": json.dumps(launch_env or {}),
        "POP3D_PLAYER_ENV": json.dumps(player_env or {}),
    }
    out = subprocess.run(
        ["unshare", "-rn", "bash", "-c", f"{NAMESPACE_SETUP} && exec {scenario}"],
        env={**os.environ, **env}, capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    lines = out.stdout.strip().splitlines()
    assert out.returncode == 0 and lines, out.stderr[-3000:]
    return json.loads(lines[-1])


def test_launch_file_sets_no_dds_configuration():
    env = launch_file_environment()
    assert not [k for k in env if k.startswith(DDS_PREFIXES)], env


def test_launched_node_reachable_from_default_configured_processes(tmp_path):
    result = run_scenario("launch", tmp_path, launch_file_environment())
    seen = result["probe"]
    assert any(n.endswith("pop3d_occupancy: model") for n in seen.get("diagnostics", [])), result
    assert seen["cloud_publishers"] >= 1, result
    client = result["client"]
    # No camera set yet: a real answer from the node (success false, with the reason).
    assert "/query_text is not available" not in client["stderr"], result
    assert "success=False" in client["stdout"], result
    assert "no occupancy yet" in client["stdout"] or "model not loaded" in client["stdout"], result
    assert result["node_alive"], result["node_log"]


# README "DDS settings for six large image streams": what camera publishers may set and still
# reach default-configured subscribers.
RECOMMENDED_PUBLISHER_ENV = {"FASTDDS_BUILTIN_TRANSPORTS": "DEFAULT?sockets_size=8MB"}


@pytest.mark.parametrize("player_env", [{}, RECOMMENDED_PUBLISHER_ENV], ids=["clean", "8MB"])
def test_pop3d_play_feeds_a_directly_started_node(tmp_path, player_env):
    """`pop3d play` and `occupancy_node` started by hand in two fresh shells: sets flow; also
    when the player uses the README's large-image setting and the node does not."""
    result = run_scenario("play", tmp_path, player_env=player_env)
    assert result["probe"]["clouds"] >= 3, result
    assert result["node_alive"], result["node_log"]
