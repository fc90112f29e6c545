"""The `pop3d_occupancy` node: six cameras in, occupancy markers/cloud out, `query_text`.

Thin glue around `node_core.OccupancyCore`: callbacks keep each image as it arrived (a
zero-copy view or the compressed bytes, cheap checks only) and feed the camera-set matcher; a
worker thread decodes and resizes only the newest complete set and runs it through
`OccupancyPipeline` (a queue of one: sets that arrive while it is busy replace each other and
are counted) when someone watches the outputs; the query service has its own callback group,
so it answers while inference runs.

`occupancy_node` runs the plain node: configured and active from the start, the model loaded
in the worker so the node is up (and answers queries with the reason: loading, or why the
last attempt failed) even when the model is missing or broken; a failed load is retried every
`model_retry_s` seconds, so dropping a valid model in place recovers the node.
`occupancy_node --lifecycle` runs it as a managed node (`lifecycle_node.py`). SIGINT and
SIGTERM stop either within about a second in every state (see `main`).
"""

from __future__ import annotations

import argparse
import os
import signal
import sys

import rclpy
from rclpy.executors import ExternalShutdownException, MultiThreadedExecutor
from rclpy.node import Node
from rclpy.signals import SignalHandlerOptions
from rclpy.utilities import remove_ros_args

from pop3d_ros.geometry.rig import RigError
from pop3d_ros.ros.node_core import (  # noqa: F401 - the names' public home
    CLOUD_TOPIC,
    HEATMAP_TOPIC,
    MARKERS_TOPIC,
    NODE_NAME,
    OBJECTS_TOPIC,
    SERVICE,
    OccupancyCore,
)
from pop3d_ros.ros.params import NodeParams, read


class OccupancyNode(OccupancyCore, Node):
    """The plain node: configured and activated at construction (ValueError/RigError on bad
    parameters)."""

    def __init__(self, **kwargs):
        Node.__init__(self, NODE_NAME, **kwargs)
        self._init_core()
        self.configure(read(self), wait_for_model=False)
        self.activate()


SPIN_PERIOD_S = 0.1  # longest time the main thread stays in rcl_wait without checking signals


def _arguments(args) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="occupancy_node", description=__doc__.split("\n")[0])
    parser.add_argument(
        "--lifecycle", action="store_true", help="run as a managed node, unconfigured at start"
    )
    return parser.parse_args(remove_ros_args(args=args if args is not None else sys.argv)[1:])


def make_executor(threads: int, kind: str = "events"):
    """rclpy's EventsExecutor (`kind` events, where this rclpy has it: Jazzy 7.1+), else a
    MultiThreadedExecutor of `threads` threads.

    Six camera streams bring the node over a hundred messages a second, each cheap for the
    node itself (a size check; decoding waits for the worker). The MultiThreadedExecutor's
    own cost per message (wait-set rebuild, thread-pool hand-off) made it the node's largest
    CPU cost when nothing else runs: 21 % of a core vs 4 % with the EventsExecutor, for the
    same six 320x180 streams at 10 Hz on an idle node (measured side by side, shared
    memory transport). Inference runs on the node's worker thread either way, so a single
    callback thread suffices: a query's inference delays image callbacks, which DDS queues.
    """
    if kind == "events":
        try:
            from rclpy.experimental import EventsExecutor
        except ImportError:
            return MultiThreadedExecutor(num_threads=threads)
        return EventsExecutor()
    if kind != "multi_threaded":
        raise ValueError(f"parameter executor={kind!r}: use one of ('events', 'multi_threaded')")
    return MultiThreadedExecutor(num_threads=threads)


def main(args=None) -> int:
    # rclpy's own signal handler shuts the context down at once, while the worker may still be
    # publishing a result. With Python's handlers, SIGINT and SIGTERM (what launch, systemd and
    # `docker stop` send) raise KeyboardInterrupt in the main thread and `close()` stops the
    # worker before the context goes away. Python runs a handler only between bytecodes, so
    # the main thread must not block in rcl_wait indefinitely: with use_sim_time and no
    # /clock, or with no cameras, no callback may ever become ready. Hence spin_once with a
    # wall-clock timeout instead of spin().
    options = _arguments(args)
    rclpy.init(args=args, signal_handler_options=SignalHandlerOptions.NO)
    # Also SIGINT: Python leaves it ignored when the parent ignored it (a background job of a
    # script, nohup), and launch stops its processes with SIGINT first.
    signal.signal(signal.SIGINT, signal.default_int_handler)
    signal.signal(signal.SIGTERM, signal.default_int_handler)
    node = executor = None
    rc = 0
    try:
        if options.lifecycle:
            from pop3d_ros.ros.lifecycle_node import LifecycleOccupancyNode

            node = LifecycleOccupancyNode()
        else:
            node = OccupancyNode()
        threads = NodeParams(threads=int(node.get_parameter("threads").value)).thread_plan[1]
        executor = make_executor(threads, str(node.get_parameter("executor").value))
        executor.add_node(node)
        while rclpy.ok():
            executor.spin_once(timeout_sec=SPIN_PERIOD_S)
    except (KeyboardInterrupt, ExternalShutdownException):
        pass
    except (ValueError, RigError) as exc:
        print(f"{NODE_NAME}: {exc}", file=sys.stderr)
        rc = 1
    finally:
        # A second signal during cleanup ends the process at once, as users expect.
        signal.signal(signal.SIGINT, signal.SIG_DFL)
        signal.signal(signal.SIGTERM, signal.SIG_DFL)
        if node is not None:
            node.close()
        if executor is not None:
            executor.shutdown(timeout_sec=1.0)
        if node is not None:
            node.destroy_node()
        rclpy.try_shutdown()
    return rc


def exit_now(rc: int) -> None:
    """End the process after `main` without interpreter finalization. ROS is shut down
    cleanly by then; finalization is slow: torch's native teardown alone takes ~2.4 s here (a
    bare rclpy process: 0.4 s), and a model load still running in native code that holds the
    GIL (ONNX export, session or engine build) delays it further, past launch's 5 s grace."""
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(rc)


if __name__ == "__main__":
    exit_now(main())
