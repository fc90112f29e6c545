"""A model file cannot run code (node and `pop3d eval` refuse a pickle that would); a failed
query still returns a parseable heatmap; every parameter has a value even when the YAML
omits it (`ros2 param get/dump`)."""

from __future__ import annotations

import pathlib
import shutil
import subprocess

import numpy as np
import pytest
import torch
from node_fixtures import query, start_node, wait_model_state
from rcl_interfaces.msg import ParameterType
from rcl_interfaces.srv import GetParameters

from pop3d_ros.ros.params import NodeParams


class _CreatesFileWhenUnpickled:
    def __init__(self, marker):
        self.marker = str(marker)

    def __reduce__(self):
        return (pathlib.Path.touch, (pathlib.Path(self.marker),))


def write_malicious_checkpoint(path, marker) -> None:
    """A file with the keys of a checkpoint whose unpickling would create `marker`."""
    payload = {"config": {}, "model": _CreatesFileWhenUnpickled(marker), "text_space": {},
               "meta": {}}  # fmt: skip
    torch.save(payload, path)
    assert not pathlib.Path(marker).exists()


def test_pop3d_eval_refuses_a_checkpoint_that_runs_code(tmp_path):
    marker = tmp_path / "pwned"
    write_malicious_checkpoint(tmp_path / "model.pt", marker)
    out = subprocess.run(
        [shutil.which("pop3d"), "eval", "--checkpoint", str(tmp_path / "model.pt"), "--data",
         "synthetic", "--seeds", "100", "--frames-per-seed", "1", "--out",
         str(tmp_path / "eval.json")],
        capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert out.returncode != 0
    assert not marker.exists(), "unpickling ran code"
    err = out.stderr.strip().splitlines()
    assert err and "not a readable checkpoint" in err[-1], out.stderr[-2000:]
    assert "Traceback" not in out.stderr, out.stderr[-2000:]


@pytest.mark.ros
def test_node_refuses_malicious_model_and_answers_with_fields(ros_node, node_process, tmp_path):
    marker = tmp_path / "pwned"
    write_malicious_checkpoint(tmp_path / "model.pt", marker)
    proc = start_node(node_process, tmp_path, model_dir=str(tmp_path))  # no vocabulary in YAML
    answer = wait_model_state(
        ros_node, proc, loaded=False, timeout=60.0, reason="not a readable checkpoint"
    )
    assert not marker.exists(), "unpickling ran code in the node"
    assert "\n" not in answer.message
    proc.assert_alive()

    # The failed answer's heatmap is an empty cloud with the fields x, y, z, score.
    cloud = answer.heatmap
    assert [f.name for f in cloud.fields] == ["x", "y", "z", "score"]
    assert [f.datatype for f in cloud.fields] == [7] * 4  # PointField.FLOAT32
    assert cloud.width == 0 and cloud.point_step == 16 and len(cloud.data) == 0
    assert cloud.header.frame_id == "base_link"
    empty = query(ros_node, "")
    assert empty.success is False and [f.name for f in empty.heatmap.fields][-1] == "score"

    # Every declared parameter has a value (vocabulary is not in this YAML).
    client = ros_node.client(GetParameters, "/pop3d_occupancy/get_parameters")
    ros_node.wait_for_service(client, 30.0)
    names = list(NodeParams.__dataclass_fields__)
    values = ros_node.call(client, GetParameters.Request(names=names), timeout=10.0).values
    unset = [
        n for n, v in zip(names, values, strict=True) if v.type == ParameterType.PARAMETER_NOT_SET
    ]
    assert not unset, unset
    vocab = values[names.index("vocabulary")]
    assert vocab.type == ParameterType.PARAMETER_STRING_ARRAY and list(
        vocab.string_array_value
    ) == [""]
    assert np.isfinite(values[names.index("occupancy_threshold")].double_value)
