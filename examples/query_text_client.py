#!/usr/bin/env python3
"""Call `/query_text` from your own node and print the best voxels (and grounded objects).

python examples/query_text_client.py "a parked bus" --top-k 5
python examples/query_text_client.py "car" --min-score 0.8   # + connected groups >= 0.8
python examples/query_text_client.py "car" --ros-args -r __ns:=/robot1   # the node in /robot1
"""

import argparse
import sys

import rclpy
import rclpy.utilities
from rclpy.qos import QoSProfile

from pop3d_ros.srv import QueryText


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("text")
    parser.add_argument("--top-k", type=int, default=5)
    parser.add_argument(
        "--min-score", type=float, default=0.0,
        help="also group the voxels scoring >= this (cosine, 0..1) into objects; 0: none",
    )  # fmt: skip
    parser.add_argument("--timeout", type=float, default=30.0)
    args = parser.parse_args(rclpy.utilities.remove_ros_args(args=sys.argv)[1:])

    rclpy.init(args=sys.argv)
    node = rclpy.create_node("query_text_client")
    try:
        # A deep response history: every client of a service in one process sees every answer.
        client = node.create_client(QueryText, "query_text", qos_profile=QoSProfile(depth=100))
        if not client.wait_for_service(timeout_sec=args.timeout):
            print(f"{client.srv_name} is not available", file=sys.stderr)
            return 2
        request = QueryText.Request(text=args.text, top_k=args.top_k, min_score=args.min_score)
        future = client.call_async(request)
        rclpy.spin_until_future_complete(node, future, timeout_sec=args.timeout)
        if not future.done():
            print(f"no answer from {client.srv_name}", file=sys.stderr)
            return 2
        answer = future.result()
        print(f"success={answer.success} message={answer.message!r} "
              f"frame={answer.header.frame_id} voxels={answer.heatmap.width}")  # fmt: skip
        for p, score in zip(answer.top_points, answer.top_scores, strict=True):
            print(f"  {score:+.3f}  x={p.x:+7.2f} y={p.y:+7.2f} z={p.z:+6.2f}")
        for i, o in enumerate(answer.objects):
            c, s = o.center, o.size
            print(f"  object {i}: centre ({c.x:+.2f}, {c.y:+.2f}, {c.z:+.2f}) "
                  f"size {s.x:.1f} x {s.y:.1f} x {s.z:.1f} m, {o.num_voxels} voxels, "
                  f"max {o.max_score:.3f} mean {o.mean_score:.3f}")  # fmt: skip
        return 0 if answer.success else 1
    finally:
        node.destroy_node()
        rclpy.try_shutdown()


if __name__ == "__main__":
    sys.exit(main())
