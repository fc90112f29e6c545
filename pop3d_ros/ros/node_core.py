"""The occupancy node's work, shared by the plain node and the managed (lifecycle) node.

`OccupancyCore` is mixed into an rclpy `Node` or `LifecycleNode` and has the lifecycle's four
steps, which the plain node runs at start and the managed node on its transitions:
- `configure`: parameters, rig, publishers, the query service, diagnostics, and the model
  (loaded by the worker thread: in the background with retries for the plain node, waited
  for by the managed node so that `configure` fails with the reason);
- `activate`: the camera subscriptions; `deactivate`: none of them, no inference;
- `cleanup`: everything `configure` made, the model freed.

Work follows what is watched: a camera set runs through the model only when someone
subscribes to the markers or the cloud, or a consumer needs every frame's language features
(`pipeline.language_hooks`). Otherwise the node keeps the latest set, and a query runs one
inference on it. Markers and cloud are built only for topics with subscribers.

With `mapping: true`, `node_map.NodeMap` adds the online map (odometry or TF poses,
`query_map`, map cloud, costmap, save / clear); its update runs here on the worker after
each inference. Off, none of it exists.

Names are relative (`<camera>/image_raw`, `pop3d/occupancy_cloud`, `query_text`), so a
namespace moves them all; only `/diagnostics` is absolute, where aggregators listen.
"""

from __future__ import annotations

import dataclasses
import threading
import time
from functools import partial

import numpy as np
from rclpy.callback_groups import MutuallyExclusiveCallbackGroup, ReentrantCallbackGroup
from rclpy.qos import QoSProfile, ReliabilityPolicy, qos_profile_sensor_data
from sensor_msgs.msg import CameraInfo, CompressedImage, Image
from visualization_msgs.msg import MarkerArray

from pop3d_ros.geometry.camera import PinholeCamera, validate_intrinsics
from pop3d_ros.geometry.rig import load_rig
from pop3d_ros.pipeline import messages
from pop3d_ros.pipeline.images import ImageDecodeError
from pop3d_ros.pipeline.preprocess import PendingImage, convert_set
from pop3d_ros.pipeline.sync import CameraSetMatcher, Frame, LatestSlot
from pop3d_ros.ros import conversions as conv
from pop3d_ros.ros.diagnostics import InvalidCounter, RateMeter, StageTimes
from pop3d_ros.ros.node_diagnostics import build_diagnostics
from pop3d_ros.ros.output_frames import OutputFrames
from pop3d_ros.ros.params import NodeParams, declare_all, share_path
from pop3d_ros.ros.runtime_params import on_set_parameters
from pop3d_ros.ros.tf_extrinsics import TfExtrinsics

NODE_NAME = "pop3d_occupancy"
MARKERS_TOPIC = "pop3d/occupancy_markers"
CLOUD_TOPIC = "pop3d/occupancy_cloud"
HEATMAP_TOPIC = "pop3d/query_heatmap"
OBJECTS_TOPIC = "pop3d/query_objects"
SERVICE = "query_text"
DIAGNOSTICS_TOPIC = "/diagnostics"  # absolute: where diagnostic aggregators listen


class OccupancyCore:
    """The node's state and callbacks; mixed into rclpy's Node or LifecycleNode."""

    managed = False  # a lifecycle node (transitions from outside) or the plain node

    def _init_core(self) -> None:
        declare_all(self)
        self.log = self.get_logger()
        self.params: NodeParams | None = None  # the values in use (set by `configure`)
        self.state = "unconfigured"  # unconfigured | inactive | active | finalized
        self.pipeline = None
        self.runtime = None
        self.model_loading = False  # a load attempt is under way
        self.model_error = ""  # why the last attempt failed; "" before the first attempt ends
        self.sets_processed = self.sets_idle = 0
        self.inference_errors = self.queries = 0
        self.last_latency_s = 0.0
        self.stages = StageTimes()
        self.invalid = InvalidCounter()
        self.serializer = conv.MarkerArraySerializer()
        self.slot = LatestSlot()
        self.matcher = None
        self.input_rates: dict[str, RateMeter] = {}
        self.output_rate = RateMeter()
        self.intrinsics: dict[str, tuple] = {}
        self.reliability: dict[str, str] = {}
        self.tf = self.outputs = None
        self.mapper = None  # node_map.NodeMap while configured with `mapping: true`
        self.extrinsics_note = ""
        self._warned: dict[str, float] = {}
        self._latest_set = None  # newest complete camera set (kept while idle)
        self._infer_lock = threading.Lock()  # one inference at a time (worker or query)
        self._stop = threading.Event()
        self._stop.set()
        self._load_done = threading.Event()
        self._worker = None
        self._entities: list = []  # publishers, service, timers made by `configure`
        self._camera_subs: list = []
        self._pending: list[str] = []
        self._sub_timer = self._diag_timer = None
        self.image_group = ReentrantCallbackGroup()
        self.query_group = MutuallyExclusiveCallbackGroup()
        self.timer_group = MutuallyExclusiveCallbackGroup()
        self.add_on_set_parameters_callback(partial(on_set_parameters, self))

    # -- lifecycle steps ------------------------------------------------------------------------
    @property
    def configured(self) -> bool:
        return self.state in ("inactive", "active")

    @property
    def active(self) -> bool:
        return self.state == "active"

    def configure(self, params: NodeParams, wait_for_model: bool) -> None:
        """Set up everything but the camera subscriptions. ValueError/RigError on bad
        parameters; with `wait_for_model` a failed model load raises ValueError too."""
        p = self.params = params
        rig_path = p.rig_file or share_path("config", "rig_nuscenes.yaml")
        self.rig = {c.name: c for c in load_rig(rig_path, names=p.camera_names)}
        self.extrinsics_note = "rig file " + str(rig_path)
        if p.extrinsics_source == "tf" and self.tf is None:
            try:
                self.tf = TfExtrinsics(self, p.base_frame)
                self.extrinsics_note = f"tf (-> {p.base_frame}); rig where tf has no transform"
            except ImportError as exc:
                self.extrinsics_note = f"tf requested but tf2_ros is not installed ({exc}); rig"
                self.log.warning(self.extrinsics_note)
        if p.mapping:
            from pop3d_ros.ros.node_map import NodeMap

            self.mapper = NodeMap(self, p)  # ValueError: e.g. pose_source tf without tf2_ros
        self.outputs = OutputFrames(self, p, self.tf, lambda k, text: self._warn(k, text, 30.0))
        self.matcher = CameraSetMatcher(p.camera_names, p.max_camera_time_diff)
        self.slot = LatestSlot()
        self.input_rates = {n: RateMeter() for n in p.camera_names}
        out_qos = QoSProfile(depth=2, reliability=ReliabilityPolicy.RELIABLE)
        self.markers_pub = self.create_publisher(MarkerArray, MARKERS_TOPIC, out_qos)
        self.cloud_pub = self.create_publisher(conv.PointCloud2, CLOUD_TOPIC, out_qos)
        self.heatmap_pub = self.create_publisher(MarkerArray, HEATMAP_TOPIC, out_qos)
        self.objects_pub = self.create_publisher(MarkerArray, OBJECTS_TOPIC, out_qos)
        from diagnostic_msgs.msg import DiagnosticArray

        from pop3d_ros.srv import QueryText

        self.diag_pub = self.create_publisher(DiagnosticArray, DIAGNOSTICS_TOPIC, 10)
        # Deep request history: with the default depth of 10 a burst of concurrent queries
        # overwrites requests before they are taken, and those clients never get an answer.
        self.service = self.create_service(
            QueryText,
            SERVICE,
            self._on_query,
            qos_profile=QoSProfile(depth=200, reliability=ReliabilityPolicy.RELIABLE),
            callback_group=self.query_group,
        )
        self._entities = [self.markers_pub, self.cloud_pub, self.heatmap_pub, self.objects_pub,
                          self.diag_pub, self.service]  # fmt: skip
        self.restart_diagnostics_timer()
        self.state = "inactive"
        self._stop = threading.Event()
        self._load_done.clear()
        self._worker = threading.Thread(
            target=self._work, args=(self._stop, not wait_for_model), name="pop3d_worker",
            daemon=True,
        )  # fmt: skip
        self._worker.start()
        self.log.info(
            f"{self.get_name()}: cameras {p.camera_names}, transport {p.image_transport}, "
            f"model {p.checkpoint_path}, backend {p.backend}"
        )
        if wait_for_model:
            while not self._load_done.wait(0.1):
                if self._stop.is_set():
                    break
            if self.pipeline is None:
                reason = self.model_error or "shut down while loading"
                self.cleanup()
                raise ValueError(f"model not loaded: {reason}")

    def activate(self) -> None:
        """Subscribe the cameras; camera sets and queries run from now on."""
        for name in self.params.camera_names:
            self._camera_subs.append(
                self.create_subscription(
                    CameraInfo,
                    f"{name}/camera_info",
                    partial(self._on_camera_info, name),
                    qos_profile_sensor_data,
                    callback_group=self.image_group,
                )
            )
        self._pending = list(self.params.camera_names)
        if self.mapper is not None:
            self.mapper.activate()
        self.state = "active"
        self._subscribe_images()
        if self._pending:
            self._sub_timer = self.create_timer(
                0.5, self._subscribe_images, callback_group=self.timer_group
            )

    def deactivate(self) -> None:
        """No camera subscription and no inference from when this returns."""
        self.state = "inactive"
        if self._sub_timer is not None:
            self.destroy_timer(self._sub_timer)
            self._sub_timer = None
        for sub in self._camera_subs:
            self.destroy_subscription(sub)
        self._camera_subs, self._pending = [], []
        if self.mapper is not None:
            self.mapper.deactivate()
        self.reliability.clear()
        with self._infer_lock:  # waits for an inference under way; none starts after
            self.slot = LatestSlot()
            self._latest_set = None
            if self.params is not None:
                self.matcher = CameraSetMatcher(
                    self.params.camera_names, self.params.max_camera_time_diff
                )

    def cleanup(self, timeout: float = 1.0) -> None:
        """Undo `configure`: stop the worker, free the model, remove publishers and service."""
        if self.active:
            self.deactivate()
        self.stop_worker(timeout)
        for entity in self._entities:
            if entity is self.service:
                self.destroy_service(entity)
            else:
                self.destroy_publisher(entity)
        self._entities = []
        if self.mapper is not None:
            self.mapper.destroy(self.pipeline)
            self.mapper = None
        if self._diag_timer is not None:
            self.destroy_timer(self._diag_timer)
            self._diag_timer = None
        self.pipeline = None
        if self.state != "finalized":
            self.state = "unconfigured"

    def stop_worker(self, timeout: float = 1.0) -> None:
        """Stop the worker. It finishes a running inference within `timeout` and publishes
        nothing after; a model load still running then (an ONNX export, a TensorRT build) is
        left to the daemon thread, which frees what it loaded and ends."""
        self._stop.set()
        self.slot.close()
        worker = self._worker
        if worker is not None:
            # A model load cannot be interrupted and nothing waits for its result: don't wait.
            worker.join(timeout=0.05 if self.model_loading else timeout)
            if not worker.is_alive():
                self._worker = None
        if self.runtime is not None and self._worker is None:
            self.runtime.close()
            self.runtime = None

    def close(self, timeout: float = 1.0) -> None:
        """Stop the work before the process ends (signals): `stop_worker`."""
        self.stop_worker(timeout)

    def restart_diagnostics_timer(self) -> None:
        if self._diag_timer is not None:
            self.destroy_timer(self._diag_timer)
        self._diag_timer = self.create_timer(
            self.params.diagnostics_period_s,
            self._publish_diagnostics,
            callback_group=self.timer_group,
        )

    # -- inputs -------------------------------------------------------------------------------
    def _image_topic(self, name: str) -> str:
        suffix = "/compressed" if self.params.image_transport == "compressed" else ""
        return f"{name}/image_raw{suffix}"

    def _subscribe_images(self) -> None:
        """Create the image subscriptions whose reliability is known (see image_reliability)."""
        if not self.active:
            return
        for name in list(self._pending):
            topic = self._image_topic(name)
            mode = self.params.image_reliability
            if mode == "auto":
                infos = self.get_publishers_info_by_topic(self.resolve_topic_name(topic))
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
            self._camera_subs.append(
                self.create_subscription(
                    msg_type, topic, partial(self._on_image, name), qos,
                    callback_group=self.image_group,
                )
            )  # fmt: skip
            self.reliability[name] = mode
            self._pending.remove(name)
            self.log.info(f"subscribed {self.resolve_topic_name(topic)} ({mode})")
        if not self._pending and self._sub_timer is not None:
            self.destroy_timer(self._sub_timer)
            self._sub_timer = None

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
        if self.tf is not None and self.params.extrinsics_source == "tf":
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
        rate = self.input_rates.get(name)
        if rate is not None:
            rate.tick(received)
        matcher = self.matcher
        if self.pipeline is None or not self.active or matcher is None:
            return
        t0 = time.perf_counter()
        try:  # cheap checks only; decoding and resizing wait until the set runs (worker)
            if self.params.image_transport == "compressed":
                pending = PendingImage.compressed(msg.data, msg.format, msg.header.frame_id)
            else:
                size = (msg.height, msg.width, msg.step)
                pending = PendingImage.raw(
                    msg.data, *size, msg.encoding, msg.header.frame_id, msg.is_bigendian
                )
        except ImageDecodeError as exc:
            self._reject(exc.reason, name, exc)
            return
        self.stages.record("receive", (time.perf_counter() - t0) * 1e3)
        camera_set = matcher.add(
            Frame(name, conv.stamp_to_sec(msg.header.stamp), pending, received)
        )
        if camera_set is not None:
            self._latest_set = camera_set
            self.slot.put(camera_set)

    # -- model and inference ----------------------------------------------------------------
    def model_status(self) -> str:
        """Why there is no model yet ("" once loaded): loading, or the last failure."""
        if self.pipeline is not None:
            return ""
        p = self.params
        if self.model_loading:
            note = f"; last attempt: {self.model_error}" if self.model_error else ""
            return f"loading {p.checkpoint_path} ({p.backend} backend){note}"
        return self.model_error or f"node {self.state}"

    def _load_model(self, stop: threading.Event) -> None:
        from pop3d_ros.export.runtime import load_runtime
        from pop3d_ros.pipeline.occupancy import OccupancyPipeline, PipelineConfig
        from pop3d_ros.text.factory import text_encoder_from_spec

        p = self.params
        path = p.checkpoint_path
        runtime = None
        try:
            if not path.is_file():
                raise ValueError(f"{path}: checkpoint not found (parameters model_dir/checkpoint)")
            runtime = load_runtime(path, p.backend, p.cache_dir or None, precision=p.precision,
                                   log=self.log.info, threads=p.thread_plan[0])  # fmt: skip
            if runtime.config.num_cameras != len(p.camera_names):
                raise ValueError(
                    f"model expects {runtime.config.num_cameras} cameras, "
                    f"camera_names has {len(p.camera_names)}"
                )
            text = text_encoder_from_spec(runtime.text_space)
            p = self.params  # run-time parameters may have changed while loading
            config = PipelineConfig(
                occupancy_threshold=p.occupancy_threshold, vocabulary=tuple(p.vocabulary)
            )
            pipeline = OccupancyPipeline(runtime, text, config)
            if self.mapper is not None:
                self.mapper.attach(pipeline)  # MapFileError: map_file cannot be loaded
        except Exception as exc:  # noqa: BLE001 - any failure: report, keep running, retry
            if runtime is not None:
                runtime.close()
            self.model_error = " ".join(str(exc).split()) or type(exc).__name__
            self.log.error(f"model not loaded: {self.model_error}")
            return
        if stop.is_set():  # stopped while loading: nobody will close it later
            runtime.close()
            return
        self.runtime, self.pipeline = runtime, pipeline
        self.model_error = ""
        self.log.info(f"model loaded: {runtime.description}")

    def _work(self, stop: threading.Event, retry: bool) -> None:
        next_load = 0.0
        while not stop.is_set():
            if self.pipeline is None:
                if time.monotonic() >= next_load:
                    self.model_loading = True
                    self._load_model(stop)
                    self.model_loading = False
                    self._load_done.set()
                    if not retry and self.pipeline is None:
                        return
                    retry_s = self.params.model_retry_s
                    next_load = time.monotonic() + retry_s if retry_s > 0 else float("inf")
                else:
                    stop.wait(0.1)
                continue
            camera_set = self.slot.get(timeout=0.2)
            if camera_set is None or stop.is_set():
                continue
            if self.watched():
                self._process(camera_set)
            else:
                self.sets_idle += 1  # nobody needs it now; a query runs the latest set

    def watched(self) -> bool:
        """Whether every camera set must run: a subscriber to markers or cloud, or a
        consumer of every frame (`pipeline.language_hooks`, e.g. a map)."""
        if not self._entities:
            return False
        pipe = self.pipeline
        return (
            self.markers_pub.get_subscription_count() > 0
            or self.cloud_pub.get_subscription_count() > 0
            or (pipe is not None and bool(pipe.language_hooks))
        )

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
        with self._infer_lock:
            stop, pipe = self._stop, self.pipeline
            if not self.active or pipe is None or stop.is_set():
                return
            converted = self._convert(camera_set, pipe)
            if converted is None:
                return
            try:
                result = pipe.infer(*converted, camera_set.stamp)
            except Exception as exc:  # noqa: BLE001 - one bad set must not stop the worker
                self.inference_errors += 1
                self._warn("inference", f"inference failed: {exc}")
                return
            if stop.is_set():
                return  # shutting down: the publishers may already be gone
            for stage, ms in list(result.timings_ms.items()):
                self.stages.record(stage, ms)
            if self.mapper is not None:
                self.mapper.integrate(result, converted[1], pipe.grid)
            self._publish_outputs(result, pipe)
            now = time.monotonic()
            self.last_latency_s = now - max(f.received for f in camera_set.frames)
            self.stages.record("end_to_end", self.last_latency_s * 1e3)
            self.sets_processed += 1
            self.output_rate.tick(now)

    def _publish_outputs(self, result, pipe) -> None:
        """Markers and cloud, each only when the topic has a subscriber."""
        markers = self.markers_pub.get_subscription_count() > 0
        cloud = self.cloud_pub.get_subscription_count() > 0
        if not (markers or cloud):
            return
        t0 = time.perf_counter()
        out = self.outputs.for_stamp(result.stamp)
        header = conv.make_header(result.stamp, out.frame)
        centres = out.points(result.centres)
        if markers:
            alpha = self.params.marker_alpha
            if result.labels is not None:
                colors = messages.class_colors(result.labels % len(messages.CLASS_PALETTE), alpha)
            else:  # coloured by height above base_frame's ground, whatever the output frame
                colors = messages.height_colors(result.centres[:, 2], pipe.grid.z_range, alpha)
            raw = self.serializer.serialize(
                header, "occupancy", pipe.grid.voxel_size, centres, colors
            )
            self.markers_pub.publish(raw)
        if cloud:
            arr = messages.cloud_array(centres, result.probabilities, labels=result.labels)
            self.cloud_pub.publish(conv.point_cloud(arr, header))
        self.stages.record("publish", (time.perf_counter() - t0) * 1e3)

    # -- query service --------------------------------------------------------------------------
    def _refresh_for_query(self, pipe) -> None:
        """An idle node runs the newest camera set now, once, for the query."""
        camera_set, latest = self._latest_set, pipe.latest
        if camera_set is None or (latest is not None and latest.stamp >= camera_set.stamp):
            return
        if not self.watched():
            self._process(camera_set)

    def _on_query(self, request, response):
        t0 = time.perf_counter()
        self.queries += 1
        pipe = self.pipeline
        outputs = self.outputs
        header = conv.make_header(0.0, outputs.current.frame if outputs else "")
        if not self.active:
            return conv.fail_query_response(
                response, header, f"node is {self.state}: queries run while it is active"
            )
        if pipe is None:
            return conv.fail_query_response(
                response, header, f"model not loaded: {self.model_status()}"
            )
        try:
            self._refresh_for_query(pipe)
            result = pipe.query(request.text, int(request.top_k), float(request.min_score))
        except Exception as exc:  # noqa: BLE001 - a query must always get an answer
            return conv.fail_query_response(response, header, f"query failed: {exc}")
        if result.language_head_ms:
            self.stages.record("query_language_head", result.language_head_ms)
        if result.stamp:
            out = outputs.for_stamp(result.stamp)
            header = conv.make_header(result.stamp, out.frame)
            if result.centres is not None:
                result = dataclasses.replace(
                    result, centres=out.points(result.centres), objects=out.objects(result.objects)
                )
        heat = None
        if result.success:
            heat = messages.cloud_array(result.centres, result.scores, extra="score")
        conv.fill_query_response(response, result, header, heat)
        if result.success and self.heatmap_pub.get_subscription_count() > 0:
            colors = messages.score_colors(result.scores, self.params.marker_alpha)
            raw = self.serializer.serialize(
                header, "query_heatmap", pipe.grid.voxel_size, result.centres, colors
            )
            self.heatmap_pub.publish(raw)
        if result.success and self.objects_pub.get_subscription_count() > 0:
            self.objects_pub.publish(
                conv.query_object_markers(header, result.objects, result.centres, request.text)
            )
        self.stages.record("query", (time.perf_counter() - t0) * 1e3)
        return response

    # -- diagnostics ----------------------------------------------------------------------------
    def _publish_diagnostics(self) -> None:
        if self._entities:
            self.diag_pub.publish(build_diagnostics(self))
