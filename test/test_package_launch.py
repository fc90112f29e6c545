"""Static checks of the launch file, the parameters file and the RViz config against the
install space and the node's declared parameters (`ros2 launch` is not installable here)."""

from __future__ import annotations

import ast
import os
from dataclasses import fields
from pathlib import Path

import pytest
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


def _launch_tree():
    return ast.parse(LAUNCH.read_text(), filename=str(LAUNCH))


def _our_node(tree) -> ast.Call:
    """The keyword arguments of our node: the `node_kwargs = dict(...)` that both the plain
    `Node(**node_kwargs)` and the `LifecycleNode(arguments=["--lifecycle"], **node_kwargs)`
    are made from."""
    assign = next(
        n for n in ast.walk(tree)
        if isinstance(n, ast.Assign) and getattr(n.targets[0], "id", None) == "node_kwargs"
    )  # fmt: skip
    for kind in ("Node", "LifecycleNode"):
        (call,) = [c for c in _calls(tree, kind) if _kw(c, "package") is None]
        assert any(k.arg is None and getattr(k.value, "id", "") == "node_kwargs"
                   for k in call.keywords), kind  # fmt: skip
    (lifecycle,) = _calls(tree, "LifecycleNode")
    assert ast.literal_eval(_kw(lifecycle, "arguments")) == ["--lifecycle"]
    return assign.value


def _declared_arguments(tree) -> dict[str, ast.Call]:
    return {ast.literal_eval(c.args[0]): c for c in _calls(tree, "DeclareLaunchArgument")}


def test_launch_file_names_existing_things_and_declared_parameters():
    tree = _launch_tree()
    funcs = {n.name for n in tree.body if isinstance(n, ast.FunctionDef)}
    assert "generate_launch_description" in funcs

    args = _declared_arguments(tree)
    assert {"params_file", "backend", "model_dir", "use_sim_time", "rviz"} <= set(args)

    node = _our_node(tree)
    assert ast.literal_eval(_kw(node, "package")) == "pop3d_ros"
    assert ast.literal_eval(_kw(node, "executable")) == "occupancy_node"
    assert ast.literal_eval(_kw(node, "name")) == "pop3d_occupancy"
    assert getattr(_kw(node, "namespace"), "id", None) == "namespace"
    find_installed_executable("pop3d_ros", "occupancy_node")  # exists and is executable

    # The launch arguments that reach the node are parameters the node declares, and every
    # launch argument except rviz/params_file reaches it.
    assign = next(
        n for n in ast.walk(tree)
        if isinstance(n, ast.Assign) and getattr(n.targets[0], "id", None) == "NODE_ARGUMENTS"
    )  # fmt: skip
    node_args = set(ast.literal_eval(assign.value))
    assert node_args <= set(declared_names()), node_args - set(declared_names())
    launch_only = {"rviz", "params_file", "namespace", "lifecycle", "autostart"}
    assert set(args) - launch_only == node_args

    # Files the launch file names under the share directory exist in the install space.
    share = _install_share()
    named = [
        c.right.value.lstrip("/")
        for c in ast.walk(tree)
        if isinstance(c, ast.BinOp) and getattr(c.left, "id", None) == "share"
    ]
    assert "config/occupancy.yaml" in named and "config/pop3d.rviz" in named
    for rel in named:
        assert (share / rel).is_file(), share / rel


def test_user_params_file_wins_over_launch_defaults():
    """launch_ros applies `parameters` entries in order, a later one overriding an earlier
    one. The params file must come first and the launch-argument overrides after it, and
    those arguments default to "" (= not given, so not passed), so that a user's YAML sets
    backend/model_dir/use_sim_time unless the command line names them."""
    tree = _launch_tree()
    params = _kw(_our_node(tree), "parameters")
    with_overrides = params.body if isinstance(params, ast.IfExp) else params
    assert [getattr(e, "id", None) for e in with_overrides.elts] == ["params_file", "overrides"]
    args = _declared_arguments(tree)
    for name in ("backend", "model_dir", "use_sim_time"):
        assert ast.literal_eval(_kw(args[name], "default_value")) == "", name
    # Only explicitly given arguments become overrides.
    source = LAUNCH.read_text()
    assert 'if v != ""' in source


def test_launch_arguments_have_descriptions_and_choices():
    args = _declared_arguments(_launch_tree())
    for name, call in args.items():
        assert _kw(call, "description") is not None, name
    backend_choices = ast.literal_eval(_kw(args["backend"], "choices"))
    # The node's own accepted values (NodeParams.validate), plus "" = not given.
    with pytest.raises(ValueError) as err:
        NodeParams(backend="bogus").validate()
    node_backends = set(ast.literal_eval(str(err.value).split("use one of ", 1)[1]))
    assert set(backend_choices) == node_backends | {""}
    assert set(ast.literal_eval(_kw(args["use_sim_time"], "choices"))) == {"", "true", "false"}
    for name in ("rviz", "lifecycle", "autostart"):
        assert set(ast.literal_eval(_kw(args[name], "choices"))) == {"true", "false"}, name


def test_rviz_started_only_when_installed():
    """rviz:=true without rviz2 must not fail the launch (which would orphan the node): the
    rviz2 Node is created only after its package was found."""
    tree = _launch_tree()
    rviz = [n for n in _calls(tree, "Node") if _kw(n, "package") is not None]
    assert ast.literal_eval(_kw(rviz[0], "package")) == "rviz2"
    assert len(rviz) == 1
    guarded = [
        t for t in ast.walk(tree)
        if isinstance(t, ast.Try)
        and any(getattr(h.type, "id", None) == "PackageNotFoundError" for h in t.handlers)
        and any(rviz[0] in list(ast.walk(stmt)) for stmt in t.orelse)
    ]  # fmt: skip
    assert guarded, "the rviz2 Node must be in the else branch of a PackageNotFoundError check"


def test_params_file_matches_the_node():
    doc = yaml.safe_load((ROOT / "config" / "occupancy.yaml").read_text())
    # Keyed for the node's name in any namespace (a plain name matches only the root one).
    assert list(doc) == ["/**/pop3d_occupancy"]
    params = doc["/**/pop3d_occupancy"]["ros__parameters"]
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


def test_rviz_cloud_boxes_are_the_default_models_voxels():
    """Boxes smaller than a voxel leave gaps between neighbouring voxel centres."""
    from pop3d_ros.model.checkpoint import read_checkpoint
    from pop3d_ros.model.config import ModelConfig

    doc = yaml.safe_load((ROOT / "config" / "pop3d.rviz").read_text())
    cloud = next(
        d for d in doc["Visualization Manager"]["Displays"]
        if d["Class"] == "rviz_default_plugins/PointCloud2"
    )  # fmt: skip
    ckpt = read_checkpoint(ROOT / "models" / "default" / "model.pt")
    voxel = ModelConfig.from_dict(ckpt["config"]).voxel_grid.voxel_size
    assert cloud["Style"] == "Boxes"
    assert cloud["Size (m)"] == pytest.approx(float(min(voxel)))


def test_lifecycle_autostart_configures_then_activates_when_inactive():
    """autostart: a ChangeState(configure) event, and a handler that emits ChangeState
    (activate) when the node reports the transition configuring -> inactive (launch_ros's
    OnStateTransition; checked by hand with the real launch_ros 0.26: the node ends active)."""
    tree = _launch_tree()
    handlers = _calls(tree, "OnStateTransition")
    assert len(handlers) == 1
    (handler,) = handlers
    assert ast.literal_eval(_kw(handler, "start_state")) == "configuring"
    assert ast.literal_eval(_kw(handler, "goal_state")) == "inactive"
    (activate,) = _kw(handler, "entities").elts
    assert activate.args[1].attr == "TRANSITION_ACTIVATE"
    transitions = {c.args[1].attr for c in _calls(tree, "_change_state") if len(c.args) == 2}
    assert transitions == {"TRANSITION_CONFIGURE", "TRANSITION_ACTIVATE"}
    from lifecycle_msgs.msg import Transition

    for name in transitions:
        assert isinstance(getattr(Transition, name), int)
