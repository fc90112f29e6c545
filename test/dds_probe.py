"""A default-configured ROS 2 process, as `ros2 topic echo`/RViz would be: reports as JSON
what it sees of the occupancy node (run by dds_scenario.py with a clean environment).

    python dds_probe.py TIMEOUT_S [MIN_CLOUDS]

waits until it has /diagnostics from the node, sees a publisher of the cloud topic and has
received MIN_CLOUDS clouds (default 0), or until the timeout."""

import json
import sys
import time

import rclpy
from diagnostic_msgs.msg import DiagnosticArray
from rclpy.qos import QoSProfile, ReliabilityPolicy
from sensor_msgs.msg import PointCloud2

CLOUD = "/pop3d/occupancy_cloud"


def main() -> int:
    timeout = float(sys.argv[1])
    min_clouds = int(sys.argv[2]) if len(sys.argv) > 2 else 0
    rclpy.init()
    node = rclpy.create_node("pop3d_dds_probe")
    diagnostics, clouds = [], []
    node.create_subscription(DiagnosticArray, "/diagnostics", diagnostics.append, 10)
    qos = QoSProfile(depth=10, reliability=ReliabilityPolicy.RELIABLE)
    node.create_subscription(PointCloud2, CLOUD, clouds.append, qos)
    end = time.monotonic() + timeout
    publishers = 0
    while time.monotonic() < end and not (diagnostics and publishers and len(clouds) >= min_clouds):
        rclpy.spin_once(node, timeout_sec=0.1)
        publishers = node.count_publishers(CLOUD)
    names = sorted({s.name for msg in diagnostics for s in msg.status})
    print(json.dumps({"diagnostics": names, "cloud_publishers": publishers,
                      "clouds": len(clouds)}))  # fmt: skip
    node.destroy_node()
    rclpy.try_shutdown()
    return 0


if __name__ == "__main__":
    sys.exit(main())
