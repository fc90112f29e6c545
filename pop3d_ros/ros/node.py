"""The `pop3d_occupancy` node: six cameras in, occupancy markers/cloud out, `/query_text`.

Thin glue: callbacks keep each image as it arrived (a zero-copy view or the compressed bytes,
cheap checks only) and feed the camera-set matcher; a worker thread decodes and resizes only
the newest complete set and runs it through `OccupancyPipeline` (a queue of one: sets that arrive
while it is busy replace each other and are counted); the query service has its own callback
group, so it answers while inference runs. The model loads in the worker, so the node is up
(and answers queries with the reason: loading, or why the last attempt failed) even when the
model is missing or broken; a failed load is retried every `model_retry_s` seconds, so dropping
a valid model in place recovers the node. SIGINT and SIGTERM stop it within about a second in
every state (see `main`).
"""

from __future__ import annotations

import dataclasses
import os
import signal
import sys
import threading
import time
from functools import partial

import numpy as np
import rclpy
from rclpy.callback_groups import MutuallyExclusiveCallbackGroup, ReentrantCallbackGroup
from rclpy.executors import ExternalShutdownException, MultiThreadedExecutor
from rclpy.node import Node
from rclpy.qos import QoSProfile, ReliabilityPolicy, qos_profile_sensor_data
from rclpy.signals import SignalHandlerOptions
from sensor_msgs.msg import CameraInfo, CompressedImage, Image
from visualization_msgs.msg import MarkerArray

from pop3d_ros.geometry.camera import PinholeCamera, validate_intrinsics
from pop3d_ros.geometry.rig import RigError, load_rig
from pop3d_ros.pipeline import messages
from pop3d_ros.pipeline.images import ImageDecodeError
from pop3d_ros.pipeline.preprocess import PendingImage, convert_set
from pop3d_ros.pipeline.sync import CameraSetMatcher, Frame, LatestSlot
from pop3d_ros.ros import conversions as conv
from pop3d_ros.ros.diagnostics import InvalidCounter, RateMeter, StageTimes
from pop3d_ros.ros.node_diagnostics import build_diagnostics
from pop3d_ros.ros.output_frames import OutputFrames
from pop3d_ros.ros.params import declare, share_path
from pop3d_ros.ros.tf_extrinsics import TfExtrinsics

NODE_NAME = "pop3d_occupancy"
MARKERS_TOPIC = "/pop3d/occupancy_markers"
CLOUD_TOPIC = "/pop3d/occupancy_cloud"
HEATMAP_TOPIC = "/pop3d/query_heatmap"
OBJECTS_TOPIC = "/pop3d/query_objects"
SERVICE = "/query_text"


class OccupancyNode(Node):
    def __init__(self, **kwargs):
        super().__init__(NODE_NAME, **kwargs)
        p = self.params = declare(self)
        self.log = self.get_logger()
        rig_path = p.rig_file or share_path("config", "rig_nuscenes.yaml")
        self.rig = {c.name: c for c in load_rig(rig_path, names=p.camera_names)}
        self.extrinsics_note = "rig file " + str(rig_path)
        self.tf = None
        if p.extrinsics_source == "tf":
            try:
                self.tf = TfExtrinsics(self, p.base_frame)
                self.extrinsics_note = f"tf (-> {p.base_frame}); rig where tf has no transform"
            except ImportError as exc:
                self.extrinsics_note = f"tf requested but tf2_ros is not installed ({exc}); rig"
                self.log.warning(self.extrinsics_note)
        self.outputs = OutputFrames(self, p, self.tf, lambda k, text: self._warn(k, text, 30.0))
        self.matcher = CameraSetMatcher(p.camera_names, p.max_camera_time_diff)
        self.slot = LatestSlot()
        self.stages = StageTimes()
        self.invalid = InvalidCounter()
        self.input_rates = {n: RateMeter() for n in p.camera_names}
        self.output_rate = RateMeter()
        self.intrinsics: dict[str, tuple] = {}
        self.reliability: dict[str, str] = {}
        self.pipeline = None
        self.runtime = None
        self.model_loading = True  # a load attempt is under way (the first starts at once)
        self.model_error = ""  # why the last attempt failed; "" before the first attempt ends
        self.sets_processed = 0
        self.inference_errors = 0
        self.queries = 0
        self.last_latency_s = 0.0
        self.serializer = conv.MarkerArraySerializer()
        self._warned: dict[str, float] = {}
        self._stop = threading.Event()

        self.image_group = ReentrantCallbackGroup()
        self.query_group = MutuallyExclusiveCallbackGroup()
        self.timer_group = MutuallyExclusiveCallbackGroup()
        out_qos = QoSProfile(depth=2, reliability=ReliabilityPolicy.RELIABLE)
        self.markers_pub = self.create_publisher(MarkerArray, MARKERS_TOPIC, out_qos)
        self.cloud_pub = self.create_publisher(conv.PointCloud2, CLOUD_TOPIC, out_qos)
        self.heatmap_pub = self.create_publisher(MarkerArray, HEATMAP_TOPIC, out_qos)
        self.objects_pub = self.create_publisher(MarkerArray, OBJECTS_TOPIC, out_qos)
        from diagnostic_msgs.msg import DiagnosticArray

        self.diag_pub = self.create_publisher(DiagnosticArray, "/diagnostics", 10)
        from pop3d_ros.srv import QueryText

        # Deep request history: with the default depth of 10 a burst of concurrent queries
        # overwrites requests before they are taken, and those clients never get an answer.
        self.service = self.create_service(
            QueryText,
            SERVICE,
            self._on_query,
            qos_profile=QoSProfile(depth=200, reliability=ReliabilityPolicy.RELIABLE),
            callback_group=self.query_group,
        )
        for name in p.camera_names:
            self.create_subscription(
                CameraInfo,
                f"/{name}/camera_info",
                partial(self._on_camera_info, name),
                qos_profile_sensor_data,
                callback_group=self.image_group,
            )
        self._pending = list(p.camera_names)
        self._subscribe_images()
        if self._pending:
            self._sub_timer = self.create_timer(
                0.5, self._subscribe_images, callback_group=self.timer_group
            )
        self.create_timer(
            p.diagnostics_period_s, self._publish_diagnostics, callback_group=self.timer_group
        )
        self._worker = threading.Thread(target=self._work, name="pop3d_worker", daemon=True)
        self._worker.start()
        self.log.info(
            f"{NODE_NAME}: cameras {p.camera_names}, transport {p.image_transport}, "
            f"model {p.checkpoint_path}, backend {p.backend}"
        )

    # -- inputs -------------------------------------------------------------------------------
    def _image_topic(self, name: str) -> str:
        suffix = "/compressed" if self.params.image_transport == "compressed" else ""
        return f"/{name}/image_raw{suffix}"

    def _subscribe_images(self) -> None:
        """Create the image subscriptions whose reliability is known (see image_reliability)."""
        for name in list(self._pending):
            topic = self._image_topic(name)
            mode = self.params.image_reliability
            if mode == "auto":
                infos = self.get_publishers_info_by_topic(topic)
                if not infos:
                    continue  # decide once a publisher shows up
                best_effort = any(
                    i.qos_profile.reliability == ReliabilityPolicy.BEST_EFFORT for i in infos
                )
                mode = "best_effort" if best_effort else "reliable"
            qos = QoSProfile(
                depth=2,
                reliability=ReliabilityPolicy.BEST_EFFORT
                if mode == "best_effort"
                else ReliabilityPolicy.RELIABLE,
            )
            msg_type = CompressedImage if self.params.image_transport == "compressed" else Image
            self.create_subscription(
                msg_type, topic, partial(self._on_image, name), qos, callback_group=self.image_group
            )
            self.reliability[name] = mode
            self._pending.remove(name)
            self.log.info(f"subscribed {topic} ({mode})")
        if not self._pending and getattr(self, "_sub_timer", None) is not None:
            self._sub_timer.cancel()

    def _warn(self, key: str, text: str, period: float = 5.0) -> None:
        now = time.monotonic()
        if now - self._warned.get(key, -1e9) >= period:
            self._warned[key] = now
            self.log.warning(text)

    def _reject(self, reason: str, camera: str, detail) -> None:
        self.invalid.add(reason)
        self._warn(f"{reason}:{camera}", f"{camera}: dropped message ({reason}): {detail}")

    def _on_camera_info(self, name: str, msg: CameraInfo) -> None:
        try:
            K, w, h = conv.camera_info_k(msg)
            validate_intrinsics(K)
            if w < 0 or h < 0:
                raise ValueError(f"negative image size {w}x{h}")
        except ValueError as exc:
            self._reject("bad_camera_info", name, exc)
            return
        self.intrinsics[name] = (K, w, h)

    def _extrinsics(self, name: str, frame_id: str) -> np.ndarray:
        """cam_to_ego from TF when requested and available, else from the rig file."""
        if self.tf is not None:
            cam_to_ego = self.tf.lookup(frame_id)
            if cam_to_ego is not None:
                return cam_to_ego
            self._warn(f"tf:{name}", f"{name}: no TF {frame_id!r} -> {self.params.base_frame!r}"
                       "; using the rig file")  # fmt: skip
        return self.rig[name].cam_to_ego

    def _camera(self, name: str, width: int, height: int, image_hw, frame_id="") -> PinholeCamera:
        """The camera calibrated for the network input: CameraInfo K if any, else the rig's."""
        info = self.intrinsics.get(name)
        rig = self.rig[name]
        cam_to_ego = self._extrinsics(name, frame_id)
        if info is not None:
            K, w, h = info
            cam = PinholeCamera(K, cam_to_ego, w or width, h or height, name)
        else:
            cam = PinholeCamera(rig.K, cam_to_ego, rig.width, rig.height, name)
        return cam.resized(width, height).resized(int(image_hw[1]), int(image_hw[0]))

    def _on_image(self, name: str, msg) -> None:
        received = time.monotonic()
        self.input_rates[name].tick(received)
        pipe = self.pipeline
        if pipe is None:
            return
        t0 = time.perf_counter()
        try:  # cheap checks only; decoding and resizing wait until the set runs (worker)
            if self.params.image_transport == "compressed":
                pending = PendingImage.compressed(msg.data, msg.format, msg.header.frame_id)
            else:
                pending = PendingImage.raw(
                    msg.data, msg.height, msg.width, msg.step, msg.encoding, msg.header.frame_id
                )
        except ImageDecodeError as exc:
            self._reject(exc.reason, name, exc)
            return
        self.stages.record("receive", (time.perf_counter() - t0) * 1e3)
        frame = Frame(name, conv.stamp_to_sec(msg.header.stamp), pending, received)
        camera_set = self.matcher.add(frame)
        if camera_set is not None:
            self.slot.put(camera_set)

    # -- model and inference ----------------------------------------------------------------
    def model_status(self) -> str:
        """Why there is no model yet ("" once loaded): loading, or the last failure."""
        if self.pipeline is not None:
            return ""
        if self.model_loading:
            note = f"; last attempt: {self.model_error}" if self.model_error else ""
            return f"loading {self.params.checkpoint_path} ({self.params.backend} backend){note}"
        return self.model_error

    def _load_model(self) -> None:
        from pop3d_ros.export.runtime import load_runtime
        from pop3d_ros.pipeline.occupancy import OccupancyPipeline, PipelineConfig
        from pop3d_ros.text.factory import text_encoder_from_spec

        p = self.params
        path = p.checkpoint_path
        try:
            if not path.is_file():
                raise ValueError(f"{path}: checkpoint not found (parameters model_dir/checkpoint)")
            runtime = load_runtime(
                path,
                p.backend,
                p.cache_dir or None,
                precision=p.precision,
                log=self.log.info,
                threads=p.thread_plan[0],
            )
            if runtime.config.num_cameras != len(p.camera_names):
                raise ValueError(
                    f"model expects {runtime.config.num_cameras} cameras, "
                    f"camera_names has {len(p.camera_names)}"
                )
            text = text_encoder_from_spec(runtime.text_space)
            config = PipelineConfig(
                occupancy_threshold=p.occupancy_threshold, vocabulary=tuple(p.vocabulary)
            )
            self.pipeline = OccupancyPipeline(runtime, text, config)
        except Exception as exc:  # noqa: BLE001 - any failure: report, keep running, retry
            self.model_error = " ".join(str(exc).split()) or type(exc).__name__
            self.log.error(f"model not loaded: {self.model_error}")
            return
        if self._stop.is_set():  # shut down while loading: nobody will close it later
            runtime.close()
            return
        self.runtime = runtime
        self.model_error = ""
        self.log.info(f"model loaded: {runtime.description}")

    def _work(self) -> None:
        next_load = 0.0
        while not self._stop.is_set():
            if self.pipeline is None:
                if time.monotonic() >= next_load:
                    self.model_loading = True
                    self._load_model()
                    self.model_loading = False
                    retry = self.params.model_retry_s
                    next_load = time.monotonic() + retry if retry > 0 else float("inf")
                else:
                    self._stop.wait(0.1)
                continue
            camera_set = self.slot.get(timeout=0.2)
            if camera_set is not None:
                self._process(camera_set)

    def _convert(self, camera_set, pipe):
        """(images, cameras) of the set at the network size, or None (rejected, counted)."""
        names = [f.camera for f in camera_set.frames]
        t0 = time.perf_counter()
        try:
            images, cameras = convert_set(
                [f.payload for f in camera_set.frames],
                pipe.image_hw,
                lambda i, frame_id, w, h: self._camera(names[i], w, h, pipe.image_hw, frame_id),
            )
        except ImageDecodeError as exc:
            self._reject(exc.reason, names[getattr(exc, "index", 0)], exc)
            return None
        except ValueError as exc:
            self._reject("bad_calibration", "camera set", exc)
            return None
        self.stages.record("convert", (time.perf_counter() - t0) * 1e3)
        return images, cameras

    def _process(self, camera_set) -> None:
        pipe = self.pipeline
        converted = self._convert(camera_set, pipe)
        if converted is None:
            return
        images, cameras = converted
        try:
            result = pipe.infer(images, cameras, camera_set.stamp)
        except Exception as exc:  # noqa: BLE001 - one bad set must not stop the worker
            self.inference_errors += 1
            self._warn("inference", f"inference failed: {exc}")
            return
        if self._stop.is_set():
            return  # shutting down: the publishers may already be gone
        for stage, ms in result.timings_ms.items():
            self.stages.record(stage, ms)
        t0 = time.perf_counter()
        out = self.outputs.for_stamp(camera_set.stamp)
        header = conv.make_header(camera_set.stamp, out.frame)
        centres = out.points(result.centres)
        alpha = self.params.marker_alpha
        if result.labels is not None:
            colors = messages.class_colors(result.labels % len(messages.CLASS_PALETTE), alpha)
        else:  # coloured by height above base_frame's ground, whatever the output frame
            colors = messages.height_colors(result.centres[:, 2], pipe.grid.z_range, alpha)
        raw = self.serializer.serialize(header, "occupancy", pipe.grid.voxel_size, centres, colors)
        self.markers_pub.publish(raw)
        cloud = messages.cloud_array(centres, result.probabilities, labels=result.labels)
        self.cloud_pub.publish(conv.point_cloud(cloud, header))
        now = time.monotonic()
        self.stages.record("publish", (time.perf_counter() - t0) * 1e3)
        self.last_latency_s = now - max(f.received for f in camera_set.frames)
        self.stages.record("end_to_end", self.last_latency_s * 1e3)
        self.sets_processed += 1
        self.output_rate.tick(now)

    # -- query service --------------------------------------------------------------------------
    def _on_query(self, request, response):
        t0 = time.perf_counter()
        self.queries += 1
        pipe = self.pipeline
        header = conv.make_header(0.0, self.outputs.current.frame)
        if pipe is None:
            return conv.fail_query_response(
                response, header, f"model not loaded: {self.model_status()}"
            )
        try:
            result = pipe.query(request.text, int(request.top_k), float(request.min_score))
        except Exception as exc:  # noqa: BLE001 - a query must always get an answer
            return conv.fail_query_response(response, header, f"query failed: {exc}")
        if result.stamp:
            out = self.outputs.for_stamp(result.stamp)
            header = conv.make_header(result.stamp, out.frame)
            if result.centres is not None:
                result = dataclasses.replace(
                    result, centres=out.points(result.centres), objects=out.objects(result.objects)
                )
        heat = None
        if result.success:
            heat = messages.cloud_array(result.centres, result.scores, extra="score")
        conv.fill_query_response(response, result, header, heat)
        if result.success:
            colors = messages.score_colors(result.scores, self.params.marker_alpha)
            raw = self.serializer.serialize(
                header, "query_heatmap", pipe.grid.voxel_size, result.centres, colors
            )
            self.heatmap_pub.publish(raw)
            self.objects_pub.publish(
                conv.query_object_markers(header, result.objects, result.centres, request.text)
            )
        self.stages.record("query", (time.perf_counter() - t0) * 1e3)
        return response

    # -- diagnostics and shutdown -------------------------------------------------------------
    def _publish_diagnostics(self) -> None:
        self.diag_pub.publish(build_diagnostics(self))

    def close(self, timeout: float = 1.0) -> None:
        """Stop the worker. It finishes a running inference within `timeout` and publishes
        nothing after; a model load still running then (an ONNX export, a TensorRT build) is
        left to the daemon thread, which dies with the process."""
        self._stop.set()
        self.slot.close()
        # A model load cannot be interrupted and nothing waits for its result: don't wait.
        self._worker.join(timeout=0.05 if self.model_loading else timeout)
        if self.runtime is not None and not self._worker.is_alive():
            self.runtime.close()


SPIN_PERIOD_S = 0.1  # longest time the main thread stays in rcl_wait without checking signals


def main(args=None) -> int:
    # rclpy's own signal handler shuts the context down at once, while the worker may still be
    # publishing a result. With Python's handlers, SIGINT and SIGTERM (what launch, systemd and
    # `docker stop` send) raise KeyboardInterrupt in the main thread and `close()` stops the
    # worker before the context goes away. Python runs a handler only between bytecodes, so
    # the main thread must not block in rcl_wait indefinitely: with use_sim_time and no
    # /clock, or with no cameras, no callback may ever become ready. Hence spin_once with a
    # wall-clock timeout instead of spin().
    rclpy.init(args=args, signal_handler_options=SignalHandlerOptions.NO)
    signal.signal(signal.SIGTERM, signal.default_int_handler)
    node = executor = None
    rc = 0
    try:
        node = OccupancyNode()
        executor = MultiThreadedExecutor(num_threads=node.params.thread_plan[1])
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
