"""Helpers for tests against the installed occupancy node: a six-camera publisher and the
node process with a params file (used by test_node*.py)."""

from __future__ import annotations

import numpy as np
from diagnostic_msgs.msg import DiagnosticArray
from rclpy.qos import QoSProfile, ReliabilityPolicy
from ros_harness import (
    NodeProcess,
    RosTestNode,
    find_installed_executable,
    ros_node_command,
    wait_until,
    write_params_file,
)
from sensor_msgs.msg import CameraInfo, Image

from pop3d_ros.geometry.rig import CAMERA_NAMES, load_rig
from pop3d_ros.ros.conversions import sec_to_stamp
from pop3d_ros.srv import QueryText

NODE = "pop3d_occupancy"
PARAMS_KEY = "/**/pop3d_occupancy"  # as the shipped config: the node in any namespace
IMAGE_HW = (180, 320)  # small camera images keep DDS traffic and CPU low on CI


class CameraPublisher:
    """Publishes six cameras' Image + CameraInfo from a test node (reliable, like a driver)."""

    def __init__(self, ros: RosTestNode, names=CAMERA_NAMES, hw=IMAGE_HW, namespace: str = ""):
        self.ros = ros
        self.names = list(names)
        self.h, self.w = hw
        self.prefix = namespace.rstrip("/")
        qos = QoSProfile(depth=2, reliability=ReliabilityPolicy.RELIABLE)
        self.image_pubs = {n: ros.publisher(Image, self.topic(n, "image_raw"), qos)
                           for n in self.names}  # fmt: skip
        self.info_pubs = {n: ros.publisher(CameraInfo, self.topic(n, "camera_info"), 10)
                          for n in self.names}  # fmt: skip
        self.cams = {c.name: c for c in load_rig(names=self.names, width=self.w, height=self.h)}
        rng = np.random.default_rng(0)
        self.images = {n: rng.integers(0, 256, (self.h, self.w, 3), np.uint8) for n in self.names}

    def topic(self, camera: str, kind: str) -> str:
        return f"{self.prefix}/{camera}/{kind}"

    def wait_connected(self, timeout: float = 30.0) -> None:
        for n in self.names:
            self.ros.wait_for_subscribers(self.topic(n, "image_raw"), 1, timeout)

    def info(self, name: str, k=None) -> CameraInfo:
        msg = CameraInfo(width=self.w, height=self.h)
        msg.header.frame_id = f"{name}_optical"
        msg.k = [float(v) for v in np.asarray(self.cams[name].K if k is None else k).ravel()]
        return msg

    def image(self, name: str, stamp: float, **override) -> Image:
        data = self.images[name]
        msg = Image(height=self.h, width=self.w, encoding="rgb8", step=self.w * 3)
        msg.header.stamp = sec_to_stamp(stamp)
        msg.header.frame_id = f"{name}_optical"
        msg.data = data.tobytes()
        for key, value in override.items():
            setattr(msg, key, value)
        return msg

    def publish_set(self, stamp: float, skip=(), bad: dict | None = None, jitter=None) -> None:
        """One image per camera (CameraInfo first); `bad` = {camera: Image field overrides}."""
        for i, n in enumerate(self.names):
            if n in skip:
                continue
            self.info_pubs[n].publish(self.info(n))
            t = stamp + (jitter[i] if jitter is not None else 0.0)
            self.image_pubs[n].publish(self.image(n, t, **((bad or {}).get(n, {}))))


def start_node(start, tmp_path, namespace: str = "", lifecycle: bool = False, **params):
    """The installed occupancy_node (`--lifecycle`: the managed node) with a params file
    written from `params`, in `namespace`."""
    defaults = {
        "backend": "torch",
        "diagnostics_period_s": 0.5,
        "model_retry_s": 1.0,
        "camera_stale_s": 2.0,
        "max_camera_time_diff": 0.02,
    }
    defaults.update(params)
    name = f"params{namespace.replace('/', '_')}.yaml"
    params_file = write_params_file(tmp_path / name, PARAMS_KEY, defaults)
    exe = find_installed_executable("pop3d_ros", "occupancy_node")
    extra = ["-r", f"__ns:={namespace}"] if namespace else []
    cmd = ros_node_command(exe, params_file, extra_ros_args=extra)
    if lifecycle:
        cmd.insert(1, "--lifecycle")
    return start(cmd)


def query(
    ros: RosTestNode,
    text: str,
    top_k: int = 0,
    timeout: float = 20.0,
    min_score: float = 0.0,
    service: str = "/query_text",
):
    clients = ros.__dict__.setdefault("_query_clients", {})
    client = clients.get(service)
    if client is None:
        client = clients[service] = ros.client(QueryText, service)
        ros.wait_for_service(client, timeout=60.0)
    request = QueryText.Request(text=text, top_k=top_k, min_score=float(min_score))
    return ros.call(client, request, timeout=timeout)


def wait_model_state(
    ros: RosTestNode, proc: NodeProcess, loaded: bool, timeout: float = 90.0, reason: str = ""
):
    """Poll /query_text until the node reports the model loaded, or not loaded with `reason`
    in the answer (the node first answers "loading" while its first attempt runs)."""

    def check():
        proc.assert_alive()
        r = query(ros, "car")
        if loaded:
            return r if "model not loaded" not in r.message else None
        return r if "model not loaded" in r.message and reason in r.message else None

    result = wait_until(check, timeout, interval=0.5)
    assert result is not None, (
        f"model loaded != {loaded} ({reason!r}) after {timeout} s:\n{proc.output()}"
    )
    return result


def diagnostics_values(msg: DiagnosticArray) -> dict:
    """{status name suffix: (level, message, {key: value})}."""
    out = {}
    for st in msg.status:
        out[st.name.split(": ", 1)[-1]] = (
            int.from_bytes(st.level, "little") if isinstance(st.level, bytes) else int(st.level),
            st.message,
            {kv.key: kv.value for kv in st.values},
        )
    return out


def lifecycle_call(ros: RosTestNode, node: str, transition: int | None = None, timeout=120.0):
    """`transition` (lifecycle_msgs/Transition id) on `node` (fully qualified): the
    ChangeState answer's success; without one, the current state's label (GetState)."""
    from lifecycle_msgs.msg import Transition
    from lifecycle_msgs.srv import ChangeState, GetState

    clients = ros.__dict__.setdefault("_lifecycle_clients", {})
    kind = "change_state" if transition is not None else "get_state"
    key = (node, kind)
    if key not in clients:
        clients[key] = ros.client(ChangeState if transition is not None else GetState,
                                  f"{node}/{kind}")  # fmt: skip
        ros.wait_for_service(clients[key], timeout=60.0)
    if transition is None:
        return ros.call(clients[key], GetState.Request(), timeout=timeout).current_state.label
    request = ChangeState.Request(transition=Transition(id=transition))
    return ros.call(clients[key], request, timeout=timeout).success


def set_parameters(ros: RosTestNode, node: str, timeout: float = 30.0, **values):
    """`ros2 param set` over DDS: one SetParameters call; the list of SetParametersResult."""
    from rcl_interfaces.srv import SetParameters
    from rclpy.parameter import Parameter

    clients = ros.__dict__.setdefault("_param_clients", {})
    if node not in clients:
        clients[node] = ros.client(SetParameters, f"{node}/set_parameters")
        ros.wait_for_service(clients[node], timeout=60.0)
    request = SetParameters.Request(
        parameters=[Parameter(k, value=v).to_parameter_msg() for k, v in values.items()]
    )
    return ros.call(clients[node], request, timeout=timeout).results


def get_parameters(ros: RosTestNode, node: str, *names, timeout: float = 30.0) -> list:
    from rcl_interfaces.srv import GetParameters
    from rclpy.parameter import parameter_value_to_python

    clients = ros.__dict__.setdefault("_get_param_clients", {})
    if node not in clients:
        clients[node] = ros.client(GetParameters, f"{node}/get_parameters")
        ros.wait_for_service(clients[node], timeout=60.0)
    values = ros.call(clients[node], GetParameters.Request(names=list(names)), timeout).values
    return [parameter_value_to_python(v) for v in values]
