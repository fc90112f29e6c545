"""The occupancy node's online map (`mapping: true`): thin glue from topics to `mapping/`.

- Poses: nav_msgs/Odometry on `odom_topic` (pose of base_frame in map_frame) into a bounded,
  checked `PoseBuffer`, or TF map_frame <- base_frame at each set's stamp (`pose_source: tf`,
  needs tf2_ros). Bad odometry (not finite, not a rotation, a jump, a stamp not newer than
  the last, another frame) is refused with a reason, counted, and never reaches the map.
- Integration runs on the node's worker after inference (`integrate`), never in a
  subscription callback. The pipeline's language hook asks for the language head on the sets
  the map will fuse (a pose exists, every `map_language_every`-th set), so the node runs every
  camera set while mapping.
- Outputs: `pop3d/map_cloud` (PointCloud2 x y z occupancy [label]) and `pop3d/costmap`
  (nav_msgs/OccupancyGrid), transient local, every `map_publish_period_s` while the map
  changed and someone subscribes; services `query_map` (QueryText), `pop3d/save_map` and
  `pop3d/clear_map` (std_srvs/Trigger), all answering "node is <state>" unless active.
"""

from __future__ import annotations

import array
import dataclasses
import threading
import time
from collections import Counter
from pathlib import Path

import numpy as np
from nav_msgs.msg import OccupancyGrid, Odometry
from rclpy.callback_groups import MutuallyExclusiveCallbackGroup
from rclpy.qos import DurabilityPolicy, QoSProfile, ReliabilityPolicy
from std_srvs.srv import Trigger

from pop3d_ros.mapping import FramePrediction, OnlineMap, PoseBuffer
from pop3d_ros.pipeline import messages
from pop3d_ros.ros import conversions as conv
from pop3d_ros.ros.diagnostics import OK, WARN, status
from pop3d_ros.ros.map_settings import map_settings

MAP_CLOUD_TOPIC = "pop3d/map_cloud"
COSTMAP_TOPIC = "pop3d/costmap"
QUERY_MAP_SERVICE = "query_map"
SAVE_MAP_SERVICE = "pop3d/save_map"
CLEAR_MAP_SERVICE = "pop3d/clear_map"
MAX_POSES = 2000  # odometry kept: 20 s at 100 Hz, far more than a set waits for the worker
# A set newer than the newest pose waits this long (wall clock, on the worker) for odometry
# or TF to catch up: topics are not ordered across each other, so the pose of a set's stamp
# may arrive just after its images (tf2's MessageFilter waits the same way).
POSE_WAIT_S = 0.2


def odometry_pose(msg) -> tuple[np.ndarray | None, str]:
    """(4x4 base -> header frame, "") of a nav_msgs/Odometry, or (None, why not)."""
    p, q = msg.pose.pose.position, msg.pose.pose.orientation
    values = np.array([p.x, p.y, p.z, q.x, q.y, q.z, q.w], np.float64)
    if not np.all(np.isfinite(values)):
        return None, "pose contains NaN or inf"
    quat = values[[6, 3, 4, 5]]  # w, x, y, z
    norm = float(np.linalg.norm(quat))
    if abs(norm - 1.0) > 1e-2:
        return None, f"orientation quaternion of norm {norm:.3g} is not a rotation"
    from pop3d_ros.geometry.transforms import make_transform

    return make_transform(quat / norm, values[:3]), ""


def refusal_kind(reason: str) -> str:
    """A short counter name for a pose refusal (diagnostics keys)."""
    for key, kind in (
        ("NaN", "not_finite"),
        ("not finite", "not_finite"),
        ("not newer", "old_stamp"),
        ("older than", "old_stamp"),
        ("jumped", "jump"),
        ("rotation", "not_rotation"),
        ("exceeds", "out_of_range"),
        ("frame", "wrong_frame"),
        ("no pose within", "no_pose"),
        ("no odometry", "no_pose"),
        ("no transform", "no_pose"),
    ):
        if key in reason:
            return kind
    return "other"


class NodeMap:
    """The map of one configured node; `node` is an OccupancyCore."""

    def __init__(self, node, params):
        self.node, self.params = node, params
        self.settings = map_settings(params)
        self.map: OnlineMap | None = None  # made when the model is loaded (its grid)
        self.note = ""  # where the map came from
        self.poses = PoseBuffer(dataclasses.replace(self.settings.poses, max_poses=MAX_POSES))
        self.odom_received = 0
        self.odom_refused: Counter = Counter()
        self.last_odom_refusal = ""
        self.sets_refused: Counter = Counter()
        self.last_set_refusal = ""
        self.integrate_errors = 0
        self.last_update_ms = 0.0
        self._pose_for: tuple[float, np.ndarray | None, str] | None = None
        self._dirty = True
        self._published = 0
        self._vocab_cache: tuple | None = None
        self._lock = threading.Lock()  # the pose looked up for a set (hook, then integrate)
        self._new_pose = threading.Condition()  # notified on each accepted odometry message
        self._last_pose_wall = -1e9  # monotonic time of the last accepted odometry
        self.tf = None
        if params.pose_source == "tf":
            self.tf = node.tf
            if self.tf is None:
                from pop3d_ros.ros.tf_extrinsics import TfExtrinsics

                try:
                    self.tf = node.tf = TfExtrinsics(node, params.base_frame)
                except ImportError as exc:
                    raise ValueError(
                        f"pose_source tf needs tf2_ros, which is not installed ({exc}); "
                        "use pose_source odom (nav_msgs/Odometry on odom_topic)"
                    ) from None
        self.group = MutuallyExclusiveCallbackGroup()
        self.odom_group = MutuallyExclusiveCallbackGroup()
        latched = QoSProfile(
            depth=1,
            reliability=ReliabilityPolicy.RELIABLE,
            durability=DurabilityPolicy.TRANSIENT_LOCAL,
        )
        from pop3d_ros.srv import QueryText

        self.cloud_pub = node.create_publisher(conv.PointCloud2, MAP_CLOUD_TOPIC, latched)
        self.costmap_pub = node.create_publisher(OccupancyGrid, COSTMAP_TOPIC, latched)
        query_qos = QoSProfile(depth=50, reliability=ReliabilityPolicy.RELIABLE)
        self.services = [
            node.create_service(QueryText, QUERY_MAP_SERVICE, self._on_query,
                                qos_profile=query_qos, callback_group=node.query_group),
            node.create_service(Trigger, SAVE_MAP_SERVICE, self._on_save,
                                callback_group=self.group),
            node.create_service(Trigger, CLEAR_MAP_SERVICE, self._on_clear,
                                callback_group=self.group),
        ]  # fmt: skip
        self.timer = node.create_timer(
            params.map_publish_period_s, self.publish, callback_group=self.group
        )
        self.odom_sub = None

    # -- lifecycle -----------------------------------------------------------------------
    def attach(self, pipeline) -> None:
        """Make the map on the model's grid (from map_file where it exists) and hook the
        language head. MapFileError (a ValueError, one line) for a file that cannot load."""
        s = self.settings
        config = s.map_config(pipeline.grid)
        path = s.load_path
        if path is not None and path.exists():
            m = OnlineMap.load(path, config, pose_config=s.poses)
            self.note = f"loaded {path} ({m.stats()['occupied_voxels']} occupied voxels)"
        else:
            m = OnlineMap(config, pose_config=s.poses)
            self.note = f"{path} not found: started empty" if path is not None else "started empty"
        self.map = m
        self._dirty = True
        pipeline.language_hooks.append(self._wants_language)
        self.node.log.info(f"map in {self.params.map_frame}: {self.note}")

    def activate(self) -> None:
        if self.params.pose_source != "odom" or self.odom_sub is not None:
            return
        # Reliable, as odometry publishers are (robot_localization, Autoware, Nav2, `pop3d
        # play`): a best-effort reader drops what arrives before it matched the writer.
        qos = QoSProfile(depth=50, reliability=ReliabilityPolicy.RELIABLE)
        self.odom_sub = self.node.create_subscription(
            Odometry, self.params.odom_topic, self._on_odometry, qos,
            callback_group=self.odom_group,
        )  # fmt: skip

    def deactivate(self) -> None:
        if self.odom_sub is not None:
            self.node.destroy_subscription(self.odom_sub)
            self.odom_sub = None

    def destroy(self, pipeline) -> None:
        """Undo everything: subscription, timer, publishers, services; the map is dropped."""
        self.deactivate()
        self.node.destroy_timer(self.timer)
        for srv in self.services:
            self.node.destroy_service(srv)
        self.node.destroy_publisher(self.cloud_pub)
        self.node.destroy_publisher(self.costmap_pub)
        if pipeline is not None and self._wants_language in pipeline.language_hooks:
            pipeline.language_hooks.remove(self._wants_language)
        self.map = None

    # -- poses ---------------------------------------------------------------------------
    def _refuse_odometry(self, reason: str) -> None:
        self.odom_refused[refusal_kind(reason)] += 1
        self.last_odom_refusal = reason
        self.node._warn(f"odom:{refusal_kind(reason)}", f"odometry refused: {reason}")

    def _on_odometry(self, msg) -> None:
        self.odom_received += 1
        p = self.params
        if msg.header.frame_id.lstrip("/") != p.map_frame.lstrip("/"):
            self._refuse_odometry(f"odometry in frame {msg.header.frame_id!r}, map_frame is "
                                  f"{p.map_frame!r}")  # fmt: skip
            return
        child = msg.child_frame_id.lstrip("/")
        if child and child != p.base_frame.lstrip("/"):
            self._refuse_odometry(f"odometry of child frame {child!r}, base_frame is "
                                  f"{p.base_frame!r}")  # fmt: skip
            return
        pose, problem = odometry_pose(msg)
        problem = problem or self.poses.add(conv.stamp_to_sec(msg.header.stamp), pose)
        if problem:
            self._refuse_odometry(problem)
            return
        with self._new_pose:
            self._last_pose_wall = time.monotonic()
            self._new_pose.notify_all()

    def pose_at(self, stamp: float) -> tuple[np.ndarray | None, str]:
        """The map pose of base_frame at `stamp` (cached for the set being processed)."""
        with self._lock:
            if self._pose_for is not None and self._pose_for[0] == stamp:
                return self._pose_for[1], self._pose_for[2]
        if self.tf is not None:
            pose = self._wait_for_tf(stamp)
            reason = "" if pose is not None else (
                f"no transform {self.params.map_frame} <- {self.params.base_frame} at the "
                "set's stamp")  # fmt: skip
        else:
            pose, reason = self._wait_for_pose(stamp)
        with self._lock:
            self._pose_for = (stamp, pose, reason)
        return pose, reason

    def _wait_for_tf(self, stamp: float) -> np.ndarray | None:
        """TF map_frame <- base_frame at `stamp`, polled for up to POSE_WAIT_S (/tf, like
        odometry, may arrive after the images)."""
        deadline = time.monotonic() + POSE_WAIT_S
        while True:
            pose = self.tf.lookup_at(self.params.map_frame, self.params.base_frame, stamp)
            if pose is not None or time.monotonic() >= deadline:
                return pose
            time.sleep(0.02)

    def _wait_for_pose(self, stamp: float) -> tuple[np.ndarray | None, str]:
        """`poses.lookup(stamp)`, after waiting up to POSE_WAIT_S for odometry at or after
        `stamp` when the newest pose is older and odometry is flowing (a pose accepted within
        the last second: a silent odometry costs no waiting)."""
        deadline = time.monotonic() + POSE_WAIT_S
        with self._new_pose:
            while True:
                newest = self.poses.newest_stamp
                now = time.monotonic()
                if (newest is not None and newest >= stamp) or now >= deadline:
                    break
                if now - self._last_pose_wall > 1.0:
                    break
                self._new_pose.wait(deadline - now)
        return self.poses.lookup(stamp)

    def _wants_language(self, result) -> bool:
        m = self.map
        if m is None or self.pose_at(result.stamp)[0] is None:
            return False
        return m.frames_integrated % int(m.config.language_every) == 0

    # -- integration (worker thread) -----------------------------------------------------
    def _refuse_set(self, reason: str) -> None:
        self.sets_refused[refusal_kind(reason)] += 1
        self.last_set_refusal = reason
        self.node._warn("map_set", f"camera set not mapped: {reason}")

    def integrate(self, result, cameras, grid) -> None:
        m = self.map
        if m is None:
            return
        pose, reason = self.pose_at(result.stamp)
        if pose is None:
            self._refuse_set(reason)
            return
        lang = result.language.computed  # the hook asked for it on this set, or a vocabulary
        frame = FramePrediction(
            grid=grid,
            probability=result.probability_grid,
            cameras=tuple(cameras),
            feature_index=grid.flat_index(result.indices).astype(np.int64) if lang else None,
            features=result.language_features if lang else None,
        )
        try:
            report = m.integrate(frame, pose, result.stamp)
        except Exception as exc:  # noqa: BLE001 - a failed update must not stop the worker
            self.integrate_errors += 1
            self.node._warn("map_error", f"map update failed: {exc}")
            return
        if not report.accepted:
            self._refuse_set(report.reason)
            return
        self.last_update_ms = report.elapsed_ms
        self.node.stages.record("map_update", report.elapsed_ms)
        self._dirty = True

    # -- outputs -------------------------------------------------------------------------
    def _class_embeddings(self, pipe):
        vocab = tuple(self.node.params.vocabulary)
        if not vocab:
            return None
        if self._vocab_cache is None or self._vocab_cache[0] != vocab:
            self._vocab_cache = (vocab, pipe.encode_vocabulary(vocab))
        return self._vocab_cache[1]

    def publish(self) -> None:
        """map_cloud and costmap, when the map changed and someone subscribes."""
        m, pipe = self.map, self.node.pipeline
        watched = (
            self.cloud_pub.get_subscription_count() + self.costmap_pub.get_subscription_count()
        )
        if m is None or not self._dirty or not watched:
            return
        self._dirty = False
        t0 = time.perf_counter()
        header = conv.make_header(m.last_stamp or 0.0, self.params.map_frame)
        if not m.last_stamp:  # an empty map: stamped now
            header.stamp = self.node.get_clock().now().to_msg()
        if self.cloud_pub.get_subscription_count():
            emb = self._class_embeddings(pipe) if pipe is not None and m.num_features else None
            cloud = m.cloud(emb)
            arr = messages.cloud_array(cloud.centres, cloud.occupancy, labels=cloud.labels)
            self.cloud_pub.publish(conv.point_cloud(arr, header))
        if self.costmap_pub.get_subscription_count():
            self.costmap_pub.publish(costmap_message(m.costmap(self.settings.costmap), header))
        self._published += 1
        self.node.stages.record("map_publish", (time.perf_counter() - t0) * 1e3)

    # -- services ------------------------------------------------------------------------
    def _inactive(self) -> str:
        node = self.node
        if not node.active:
            return f"node is {node.state}: the map answers while it is active"
        if self.map is None or node.pipeline is None:
            return f"map not ready: model not loaded: {node.model_status()}"
        return ""

    def _on_query(self, request, response):
        t0 = time.perf_counter()
        self.node.queries += 1
        m = self.map
        header = conv.make_header((m.last_stamp or 0.0) if m else 0.0, self.params.map_frame)
        why = self._inactive()
        if why:
            return conv.fail_query_response(response, header, why)
        try:
            result = self.node.pipeline.query_map(
                m, request.text, int(request.top_k), float(request.min_score)
            )
        except Exception as exc:  # noqa: BLE001 - a query must always get an answer
            return conv.fail_query_response(response, header, f"query failed: {exc}")
        heat = None
        if result.success:
            heat = messages.cloud_array(result.centres, result.scores, extra="score")
        conv.fill_query_response(response, result, header, heat)
        self.node.stages.record("query_map", (time.perf_counter() - t0) * 1e3)
        return response

    def _on_save(self, request, response):
        why = self._inactive()
        if why:
            response.success, response.message = False, why
            return response
        path = Path(self.settings.save_path)
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            written = self.map.save(path)
        except OSError as exc:
            response.success, response.message = False, f"cannot write {path}: {exc}"
            return response
        st = self.map.stats()
        response.success = True
        response.message = (f"saved {written}: {st['occupied_voxels']} occupied voxels, "
                            f"{st['feature_voxels']} with language")  # fmt: skip
        return response

    def _on_clear(self, request, response):
        why = self._inactive()
        if why:
            response.success, response.message = False, why
            return response
        self.map.clear()
        with self._lock:
            self._pose_for = None
        self._dirty = True
        response.success, response.message = True, "map cleared"
        return response

    # -- diagnostics ---------------------------------------------------------------------
    def diagnostics(self, hardware_id: str):
        m = self.map
        values = {
            "map_frame": self.params.map_frame,
            "pose_source": self.params.pose_source,
            "odom_topic": self.node.resolve_topic_name(self.params.odom_topic),
            "source": self.note,
            "save_path": str(self.settings.save_path),
            "odom_received": self.odom_received,
            "odom_kept": len(self.poses),
            "odom_refused": sum(self.odom_refused.values()),
            "last_odom_refusal": self.last_odom_refusal,
            "sets_refused": sum(self.sets_refused.values()),
            "last_set_refusal": self.last_set_refusal,
            "map_update_ms": round(self.last_update_ms, 2),
            "update_errors": self.integrate_errors,
            "publishes": self._published,
        }
        values.update({f"odom_refused_{k}": v for k, v in sorted(self.odom_refused.items())})
        values.update({f"sets_refused_{k}": v for k, v in sorted(self.sets_refused.items())})
        if m is not None:
            values.update(m.stats())
        level, msg = OK, "mapping"
        if m is None:
            msg = "waiting for the model"
        elif self.sets_refused:
            level, msg = WARN, f"camera sets not mapped: {self.last_set_refusal}"
        if self.odom_refused:
            note = f"odometry refused: {self.last_odom_refusal}"
            level, msg = WARN, (note if msg == "mapping" else f"{msg}; {note}")
        return status(f"{self.node.get_name()}: map", level, msg, values, hardware_id)


def costmap_message(costmap, header) -> OccupancyGrid:
    """nav_msgs/OccupancyGrid of a `mapping.costmap.Costmap` (100 lethal, 0 free, -1 unknown)."""
    msg = OccupancyGrid(header=header)
    msg.info.map_load_time = header.stamp
    msg.info.resolution = float(costmap.resolution)
    msg.info.width, msg.info.height = costmap.width, costmap.height
    msg.info.origin.position.x, msg.info.origin.position.y = costmap.origin[:2]
    msg.info.origin.position.z = float(costmap.origin[2])
    msg.info.origin.orientation.w = 1.0
    msg.data = array.array("b", np.ascontiguousarray(costmap.data, np.int8).tobytes())
    return msg
