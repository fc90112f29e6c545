"""Static checks of the launch file, the parameters file and the RViz config against the
install space and the node's declared parameters (`ros2 launch` is not installable here)."""

from __future__ import annotations

import ast
import os
from dataclasses import fields
from pathlib import Path

import yaml
from ros_harness import find_installed_executable

from pop3d_ros.ros.params import NodeParams, declared_names

ROOT = Path(__file__).resolve().parents[1]
LAUNCH = ROOT / "launch" / "occupancy.launch.py"


def _install_share() -> Path:
    exe = find_installed_executable("pop3d_ros", "occupancy_node")
    return exe.parents[2] / "share" / "pop3d_ros"


def _calls(tree, name: str) -> list[ast.Call]:
    return [
        n
        for n in ast.walk(tree)
        if isinstance(n, ast.Call)
        and (getattr(n.func, "id", None) == name or getattr(n.func, "attr", None) == name)
    ]


def _kw(call: ast.Call, key: str):
    for kw in call.keywords:
        if kw.arg == key:
            return kw.value
    return None


def test_launch_file_names_existing_things_and_declared_parameters():
    tree = ast.parse(LAUNCH.read_text(), filename=str(LAUNCH))
    funcs = {n.name for n in tree.body if isinstance(n, ast.FunctionDef)}
    assert "generate_launch_description" in funcs

    args = {ast.literal_eval(c.args[0]) for c in _calls(tree, "DeclareLaunchArgument")}
    assert {"params_file", "backend", "model_dir", "use_sim_time", "rviz"} <= args

    nodes = _calls(tree, "Node")
    ours = [n for n in nodes if ast.literal_eval(_kw(n, "package")) == "pop3d_ros"]
    assert len(ours) == 1
    node = ours[0]
    assert ast.literal_eval(_kw(node, "executable")) == "occupancy_node"
    assert ast.literal_eval(_kw(node, "name")) == "pop3d_occupancy"
    find_installed_executable("pop3d_ros", "occupancy_node")  # exists and is executable

    # Parameters passed inline must be parameters the node declares.
    params = _kw(node, "parameters")
    inline = [e for e in params.elts if isinstance(e, ast.Dict)]
    keys = {ast.literal_eval(k) for d in inline for k in d.keys}
    assert keys and keys <= set(declared_names()), keys - set(declared_names())
    # Every launch argument except rviz/params_file reaches the node.
    assert args - {"rviz", "params_file"} <= keys

    # Files joined onto the share directory exist in the install space.
    share = _install_share()
    joined = [
        [ast.literal_eval(a) for a in c.args[1:]]
        for c in _calls(tree, "join")
        if getattr(c.args[0], "id", None) == "share"
    ]
    assert joined
    for parts in joined:
        path = share.joinpath(*parts)
        if parts[0] == "models":
            # The default model comes from training; check the directory is installed.
            assert (ROOT / "models").is_dir()
            assert "launch config models" in (ROOT / "CMakeLists.txt").read_text()
        else:
            assert path.is_file(), path

    env = _calls(tree, "SetEnvironmentVariable")
    from pop3d_ros.ros.dds_env import LARGE_DATA, VARIABLE

    assert [ast.literal_eval(a) for a in env[0].args] == [VARIABLE, LARGE_DATA]
    assert "FASTDDS_BUILTIN_TRANSPORTS" in LAUNCH.read_text().split("if ")[1]  # only if unset


def test_params_file_matches_the_node():
    doc = yaml.safe_load((ROOT / "config" / "occupancy.yaml").read_text())
    params = doc["pop3d_occupancy"]["ros__parameters"]
    declared = {f.name: f for f in fields(NodeParams)}
    assert set(params) == set(declared), set(params) ^ set(declared)
    defaults = NodeParams()
    for name, value in params.items():
        default = getattr(defaults, name)
        assert isinstance(value, type(default)), (name, value, default)
    # The shipped values are the documented defaults (design.md §2).
    assert params["camera_names"] == defaults.camera_names
    assert params["target_frame"] == "base_link"
    # The share copy is the same file.
    installed = _install_share() / "config" / "occupancy.yaml"
    assert yaml.safe_load(installed.read_text()) == doc


def test_rviz_config_shows_markers_cloud_and_heatmap():
    doc = yaml.safe_load((ROOT / "config" / "pop3d.rviz").read_text())
    manager = doc["Visualization Manager"]
    assert manager["Global Options"]["Fixed Frame"] == "base_link"
    displays = {(d["Class"], d.get("Topic", {}).get("Value")) for d in manager["Displays"]}
    assert ("rviz_default_plugins/MarkerArray", "/pop3d/occupancy_markers") in displays
    assert ("rviz_default_plugins/MarkerArray", "/pop3d/query_heatmap") in displays
    assert ("rviz_default_plugins/MarkerArray", "/pop3d/query_objects") in displays
    assert ("rviz_default_plugins/PointCloud2", "/pop3d/occupancy_cloud") in displays
    assert os.path.isfile(_install_share() / "config" / "pop3d.rviz")
