"""Test harness for real rclpy / DDS tests (no mocks).

- `configure_ros_environment()` (called by conftest at import) gives each pytest session its
  own ROS_DOMAIN_ID, so parallel test runs on one machine do not see each other's nodes.
- `ros_context` / `ros_node` fixtures: an rclpy context per test, a node whose executor spins
  in a background thread, and helpers to wait for topics/services, collect messages and call
  services with timeouts.
- `NodeProcess` / `node_process` fixture: an installed executable (or any command) started as
  a subprocess in its own process group with a params file, output captured to a file for
  failure messages, always killed at the end of the test.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
import rclpy
import yaml
from rclpy.callback_groups import ReentrantCallbackGroup
from rclpy.context import Context
from rclpy.executors import MultiThreadedExecutor
from rclpy.node import Node
from rclpy.qos import QoSProfile

REPO_ROOT = Path(__file__).resolve().parents[1]

# A test run started in the background of a non-interactive shell (`make test &`) inherits
# SIGINT ignored, and ignored signals survive exec: every node it starts would ignore the
# SIGINT that the shutdown tests send. A handler of our own is reset to the default on exec,
# so the nodes start as from a terminal.
if signal.getsignal(signal.SIGINT) is signal.SIG_IGN:
    signal.signal(signal.SIGINT, signal.default_int_handler)


def configure_ros_environment() -> int:
    """Pick this session's ROS_DOMAIN_ID (inherited by every subprocess) and return it.

    Derived from the pid so two sessions on one machine use different domains; kept within
    0..232, the range Fast DDS can map to UDP ports. Discovery stays on the local host.
    """
    domain = 1 + os.getpid() % 200
    os.environ["ROS_DOMAIN_ID"] = str(domain)
    os.environ.setdefault("ROS_AUTOMATIC_DISCOVERY_RANGE", "LOCALHOST")
    os.environ.setdefault("PYTHONUNBUFFERED", "1")
    return domain


def wait_until(predicate: Callable[[], object], timeout: float, interval: float = 0.05):
    """Poll `predicate` until it returns something truthy (returned) or `timeout` passes (None)."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() >= deadline:
            return None
        time.sleep(interval)


class Collector:
    """Messages received on one subscription, with a blocking wait for a count."""

    def __init__(self):
        self.messages: list = []
        self._cond = threading.Condition()

    def __call__(self, msg) -> None:
        with self._cond:
            self.messages.append(msg)
            self._cond.notify_all()

    def wait_for(self, count: int = 1, timeout: float = 10.0) -> list:
        """All messages so far once at least `count` arrived; AssertionError on timeout."""
        with self._cond:
            ok = self._cond.wait_for(lambda: len(self.messages) >= count, timeout)
            got = list(self.messages)
        if not ok:
            raise AssertionError(f"expected {count} message(s) within {timeout} s, got {len(got)}")
        return got

    def clear(self) -> None:
        with self._cond:
            self.messages.clear()

    @property
    def last(self):
        with self._cond:
            return self.messages[-1] if self.messages else None


class RosTestNode:
    """A node in its own context whose executor spins in a daemon thread."""

    def __init__(self, context: Context, name: str = "pop3d_test_client"):
        self.context = context
        self.node = Node(name, context=context)
        self.group = ReentrantCallbackGroup()
        self.executor = MultiThreadedExecutor(num_threads=2, context=context)
        self.executor.add_node(self.node)
        self._thread = threading.Thread(target=self._spin, daemon=True)
        self._thread.start()

    def _spin(self) -> None:
        try:
            self.executor.spin()
        except Exception:  # noqa: BLE001 - shutdown races end the spin; nothing to report
            pass

    # -- graph ----------------------------------------------------------------------------
    def wait_for_topic(self, topic: str, timeout: float = 10.0, publishers: int = 1) -> None:
        """Block until `topic` exists with at least `publishers` publishers."""
        found = wait_until(lambda: self.node.count_publishers(topic) >= publishers, timeout)
        if not found:
            names = sorted(n for n, _ in self.node.get_topic_names_and_types())
            raise AssertionError(f"topic {topic} has no publisher after {timeout} s; seen: {names}")

    def wait_for_subscribers(self, topic: str, count: int = 1, timeout: float = 10.0) -> None:
        if not wait_until(lambda: self.node.count_subscribers(topic) >= count, timeout):
            raise AssertionError(
                f"topic {topic}: fewer than {count} subscriber(s) after {timeout} s"
            )

    def wait_for_service(self, client, timeout: float = 10.0) -> None:
        if not client.wait_for_service(timeout_sec=timeout):
            raise AssertionError(f"service {client.srv_name} not available after {timeout} s")

    # -- traffic --------------------------------------------------------------------------
    def collect(self, msg_type, topic: str, qos: QoSProfile | int = 10) -> Collector:
        collector = Collector()
        self.node.create_subscription(msg_type, topic, collector, qos, callback_group=self.group)
        return collector

    def publisher(self, msg_type, topic: str, qos: QoSProfile | int = 10):
        return self.node.create_publisher(msg_type, topic, qos)

    def client(self, srv_type, name: str, depth: int = 100):
        """A service client with a deep response history: every client of a service in one
        process receives every response (filtered at take time), so with the default depth of
        10 a burst of concurrent calls overwrites answers before they are taken."""
        return self.node.create_client(
            srv_type, name, qos_profile=QoSProfile(depth=depth), callback_group=self.group
        )

    def call(self, client, request, timeout: float = 10.0):
        """Call a service and wait for the response (AssertionError on timeout)."""
        done = threading.Event()
        future = client.call_async(request)
        future.add_done_callback(lambda _f: done.set())
        if not done.wait(timeout):
            client.remove_pending_request(future)
            raise AssertionError(f"no answer from {client.srv_name} within {timeout} s")
        return future.result()

    def now(self):
        return self.node.get_clock().now().to_msg()

    def close(self) -> None:
        self.executor.shutdown(timeout_sec=2.0)
        self.node.destroy_node()
        self._thread.join(timeout=2.0)


class NodeProcess:
    """A ROS executable run as a subprocess in its own process group.

    Output (stdout + stderr) goes to a temporary file so a chatty process can never block on
    a full pipe; `output()` returns its tail for failure messages.
    """

    def __init__(
        self,
        cmd: list[str],
        env: dict | None = None,
        cwd: Path | None = None,
        inherit_env: bool = True,
    ):
        """`env` is added to this process's environment, or is the whole environment when
        `inherit_env` is false (a peer with a clean environment)."""
        self.cmd = [str(c) for c in cmd]
        self._log = tempfile.NamedTemporaryFile(  # noqa: SIM115 - lives as long as the process
            prefix="pop3d_proc_", suffix=".log", delete=False
        )
        full_env = dict(os.environ) if inherit_env else {}
        full_env.update(env or {})
        self.proc = subprocess.Popen(
            self.cmd,
            stdout=self._log,
            stderr=subprocess.STDOUT,
            env=full_env,
            cwd=str(cwd or REPO_ROOT),
            start_new_session=True,  # own process group: killpg reaches its children too
        )

    @property
    def pid(self) -> int:
        return self.proc.pid

    def alive(self) -> bool:
        return self.proc.poll() is None

    def output(self, tail: int = 6000) -> str:
        try:
            text = Path(self._log.name).read_text(errors="replace")
        except OSError:
            return ""
        return text[-tail:]

    def assert_alive(self) -> None:
        if not self.alive():
            raise AssertionError(
                f"{self.cmd[0]} exited with {self.proc.returncode}; output:\n{self.output()}"
            )

    def stop(self, timeout: float = 10.0) -> int | None:
        """SIGINT (clean shutdown), then SIGTERM, then SIGKILL to the whole process group."""
        for sig, wait in ((signal.SIGINT, timeout), (signal.SIGTERM, 3.0), (signal.SIGKILL, 3.0)):
            if self.proc.poll() is not None:
                break
            try:
                os.killpg(self.proc.pid, sig)
            except ProcessLookupError:
                break
            try:
                self.proc.wait(wait)
            except subprocess.TimeoutExpired:
                continue
        # Children that outlived the leader (same group) must not leak either.
        try:
            os.killpg(self.proc.pid, signal.SIGKILL)
        except (ProcessLookupError, PermissionError):
            pass
        self._log.close()
        return self.proc.returncode

    def rss_bytes(self) -> int:
        """Resident memory of the process (psutil), 0 if it is gone."""
        import psutil

        try:
            return psutil.Process(self.proc.pid).memory_info().rss
        except psutil.Error:
            return 0


def find_installed_executable(package: str, executable: str) -> Path:
    """lib/<package>/<executable> in the first AMENT_PREFIX_PATH / colcon prefix that has it."""
    prefixes = [p for p in os.environ.get("AMENT_PREFIX_PATH", "").split(os.pathsep) if p]
    prefixes.append(str(REPO_ROOT / ".ws" / "install" / package))
    for prefix in prefixes:
        candidate = Path(prefix) / "lib" / package / executable
        if candidate.is_file() and os.access(candidate, os.X_OK):
            return candidate
    raise FileNotFoundError(
        f"{package}/{executable} not installed in {prefixes}; run `make setup` first"
    )


def write_params_file(path: Path, node_name: str, params: dict) -> Path:
    """A ROS 2 params file `{node_name: {ros__parameters: params}}`."""
    path = Path(path)
    path.write_text(yaml.safe_dump({node_name: {"ros__parameters": params}}))
    return path


def ros_node_command(
    executable: Path | str,
    params_file: Path | None = None,
    node_name: str | None = None,
    extra_ros_args: list[str] | None = None,
) -> list[str]:
    """`EXE --ros-args [--params-file F] [-r __node:=NAME] ...` (what `ros2 run` would do)."""
    cmd = [str(executable), "--ros-args"]
    if params_file is not None:
        cmd += ["--params-file", str(params_file)]
    if node_name is not None:
        cmd += ["-r", f"__node:={node_name}"]
    return cmd + list(extra_ros_args or [])


# -- fixtures ---------------------------------------------------------------------------------
@pytest.fixture
def ros_context() -> Iterator[Context]:
    """An initialised rclpy context for one test, shut down afterwards."""
    context = Context()
    rclpy.init(context=context)
    try:
        yield context
    finally:
        if context.ok():
            rclpy.shutdown(context=context)


@pytest.fixture
def ros_node(ros_context) -> Iterator[RosTestNode]:
    """A spinning test node (see RosTestNode) in this test's context."""
    node = RosTestNode(ros_context, name=f"pop3d_test_{os.getpid()}")
    try:
        yield node
    finally:
        node.close()


@pytest.fixture
def node_process() -> Iterator[Callable[..., NodeProcess]]:
    """Factory `start(cmd, env=None, inherit_env=True) -> NodeProcess`; every process is
    stopped at teardown and its output printed (pytest shows it when the test failed)."""
    started: list[NodeProcess] = []

    def start(cmd: list, env: dict | None = None, inherit_env: bool = True) -> NodeProcess:
        proc = NodeProcess(cmd, env=env, inherit_env=inherit_env)
        started.append(proc)
        return proc

    try:
        yield start
    finally:
        for proc in started:
            code = proc.stop()
            print(f"--- {' '.join(proc.cmd[:3])} (exit {code}) output tail ---", file=sys.stderr)
            print(proc.output(3000), file=sys.stderr)
