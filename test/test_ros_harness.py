"""The ROS test harness itself, with real DDS traffic between separate processes."""

from __future__ import annotations

import os
import sys
import textwrap
import time

import psutil
import pytest
from ros_harness import NodeProcess, find_installed_executable, ros_node_command, wait_until
from std_msgs.msg import String

from pop3d_ros.srv import QueryText

pytestmark = pytest.mark.ros

# A QueryText server in another process: answers deterministically from the request so the
# test can check that every field crossed the process boundary.
SERVER = textwrap.dedent(
    """
    import sys
    import rclpy
    from geometry_msgs.msg import Point
    from rclpy.node import Node
    from sensor_msgs.msg import PointField
    from pop3d_ros.srv import QueryText

    def handle(request, response):
        response.success = bool(request.text)
        response.message = "echo:" + request.text
        response.header.frame_id = "base_link"
        response.header.stamp.sec = 42
        k = request.top_k or 10
        response.top_points = [Point(x=float(i), y=2.0 * i, z=-1.0) for i in range(k)]
        response.top_scores = [1.0 - 0.1 * i for i in range(k)]
        response.heatmap.fields = [
            PointField(name=n, offset=4 * i, datatype=PointField.FLOAT32, count=1)
            for i, n in enumerate("x y z score".split())
        ]
        return response

    rclpy.init(args=sys.argv)
    node = Node("query_echo_server")
    node.create_service(QueryText, "query_text_echo", handle)
    print("server ready", flush=True)
    try:
        rclpy.spin(node)
    except (KeyboardInterrupt, rclpy.executors.ExternalShutdownException):
        pass
    """
)


def test_domain_id_is_per_session():
    assert os.environ["ROS_DOMAIN_ID"] == str(1 + os.getpid() % 200)


def test_query_text_round_trip_between_processes(ros_node, node_process, tmp_path):
    script = tmp_path / "server.py"
    script.write_text(SERVER)
    server = node_process([sys.executable, str(script), "--ros-args", "-r", "__node:=echo_a"])
    client = ros_node.client(QueryText, "/query_text_echo")
    try:
        ros_node.wait_for_service(client, timeout=20.0)
    except AssertionError as exc:
        raise AssertionError(f"{exc}\nserver output:\n{server.output()}") from exc
    assert server.pid != os.getpid()

    response = ros_node.call(client, QueryText.Request(text="stairs", top_k=3), timeout=10.0)
    assert response.success is True
    assert response.message == "echo:stairs"
    assert response.header.frame_id == "base_link" and response.header.stamp.sec == 42
    assert [(p.x, p.y, p.z) for p in response.top_points] == [
        (0.0, 0.0, -1.0),
        (1.0, 2.0, -1.0),
        (2.0, 4.0, -1.0),
    ]
    assert list(response.top_scores) == pytest.approx([1.0, 0.9, 0.8])
    assert [f.name for f in response.heatmap.fields] == ["x", "y", "z", "score"]

    # top_k 0 means 10 on the server side; an empty text is a failure answer, not a crash.
    response = ros_node.call(client, QueryText.Request(text="", top_k=0), timeout=10.0)
    assert response.success is False and len(response.top_points) == 10
    server.assert_alive()
    # The remap on the command line reached the other process.
    assert wait_until(lambda: "echo_a" in ros_node.node.get_node_names(), 5.0)


def test_topic_between_processes_and_wait_for_topic(ros_node, node_process, tmp_path):
    script = tmp_path / "talker.py"
    script.write_text(
        textwrap.dedent(
            """
            import rclpy
            from rclpy.node import Node
            from std_msgs.msg import String
            rclpy.init()
            node = Node("talker")
            pub = node.create_publisher(String, "harness_chatter", 10)
            node.create_timer(0.05, lambda: pub.publish(String(data="hello")))
            try:
                rclpy.spin(node)
            except (KeyboardInterrupt, rclpy.executors.ExternalShutdownException):
                pass
            """
        )
    )
    collector = ros_node.collect(String, "/harness_chatter")
    node_process([sys.executable, str(script)])
    ros_node.wait_for_topic("/harness_chatter", timeout=20.0)
    msgs = collector.wait_for(3, timeout=10.0)
    assert all(m.data == "hello" for m in msgs)


def test_wait_helpers_time_out_with_a_clear_message(ros_node):
    with pytest.raises(AssertionError, match="no publisher"):
        ros_node.wait_for_topic("/pop3d_never_published", timeout=0.3)
    client = ros_node.client(QueryText, "/pop3d_no_such_service")
    with pytest.raises(AssertionError, match="not available"):
        ros_node.wait_for_service(client, timeout=0.3)
    with pytest.raises(AssertionError, match="expected 1 message"):
        ros_node.collect(String, "/pop3d_silent").wait_for(1, timeout=0.2)


def test_process_is_killed_with_its_children_and_output_is_kept():
    # The child ignores SIGINT and SIGTERM: only the group SIGKILL ends it.
    code = (
        "import signal, subprocess, sys, time\n"
        "child = subprocess.Popen([sys.executable, '-c', "
        "'import signal,time; signal.signal(signal.SIGINT, signal.SIG_IGN); "
        "signal.signal(signal.SIGTERM, signal.SIG_IGN); time.sleep(60)'])\n"
        "print('child', child.pid, flush=True)\n"
        "time.sleep(60)\n"
    )
    proc = NodeProcess([sys.executable, "-c", code])
    line = wait_until(lambda: "child" in proc.output() and proc.output(), 10.0)
    assert line, proc.output()
    child_pid = int(line.split()[1])
    assert psutil.pid_exists(child_pid)
    proc.stop(timeout=1.0)
    assert not proc.alive()
    assert wait_until(
        lambda: (
            not psutil.pid_exists(child_pid)
            or psutil.Process(child_pid).status() == psutil.STATUS_ZOMBIE
        ),
        5.0,
    )
    assert "child" in proc.output()


def test_dead_process_is_reported_with_its_output():
    proc = NodeProcess([sys.executable, "-c", "print('boom: bad params'); raise SystemExit(3)"])
    assert wait_until(lambda: not proc.alive(), 10.0)
    time.sleep(0.1)
    with pytest.raises(AssertionError, match="exited with 3.*boom: bad params"):
        try:
            proc.assert_alive()
        except AssertionError as exc:
            raise AssertionError(str(exc).replace("\n", " ")) from None
    proc.stop()


def test_installed_node_command_line():
    exe = find_installed_executable("pop3d_ros", "occupancy_node")
    assert exe.name == "occupancy_node" and os.access(exe, os.X_OK)
    cmd = ros_node_command(exe, params_file="p.yaml", node_name="n1")
    assert cmd[1:] == ["--ros-args", "--params-file", "p.yaml", "-r", "__node:=n1"]
    with pytest.raises(FileNotFoundError, match="make setup"):
        find_installed_executable("pop3d_ros", "no_such_exe")
