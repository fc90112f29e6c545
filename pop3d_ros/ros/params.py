"""The occupancy node's parameters: one typed dataclass, declared and read in one place."""

from __future__ import annotations

import os
from dataclasses import dataclass, field, fields
from pathlib import Path

from rcl_interfaces.msg import ParameterDescriptor

from pop3d_ros.geometry.rig import CAMERA_NAMES
from pop3d_ros.resources import package_file


@dataclass
class NodeParams:
    """Every field is a ROS parameter of the same name (defaults: design.md §2)."""

    camera_names: list[str] = field(default_factory=lambda: list(CAMERA_NAMES))  # model order
    rig_file: str = ""  # camera extrinsics; "" = the package's config/rig_nuscenes.yaml
    extrinsics_source: str = "rig"  # rig | tf (TF lookup, needs tf2_ros; rig where TF has none)
    image_transport: str = "raw"  # raw (/<cam>/image_raw) | compressed (.../compressed)
    image_reliability: str = "auto"  # auto (match publishers) | reliable | best_effort
    max_camera_time_diff: float = 0.05  # seconds between the images of one set
    backend: str = "auto"  # auto | tensorrt | onnxruntime | torch
    model_dir: str = ""  # directory with the checkpoint; "" = the package's models/default
    checkpoint: str = "model.pt"  # checkpoint file name inside model_dir
    cache_dir: str = ""  # ONNX/engine cache; "" = ~/.cache/pop3d_ros
    precision: str = "fp32"  # fp32 | fp16 | int8: graph precision (int8: `pop3d export
    #   --precision int8` first; fp16 runs as fp32 on the CPU-only ONNX Runtime and torch)
    threads: int = 0  # inference threads (ORT intra-op / torch) and executor size; 0 = all cores
    # Callback executor, read at process start: events (rclpy's EventsExecutor; a
    # MultiThreadedExecutor where rclpy lacks it) | multi_threaded
    executor: str = "events"
    occupancy_threshold: float = 0.5  # P(occupied) at or above which a voxel is shown
    # Class prompts -> colour by zero-shot class; [""] = none. A list with one empty string,
    # not []: ROS has no typed empty array, so [] would leave the parameter without a value
    # (`ros2 param get/dump` fail on it).
    vocabulary: list[str] = field(default_factory=lambda: [""])
    base_frame: str = "base_link"  # the model's frame (the rig's); TF camera lookups go here
    target_frame: str = "base_link"  # frame of markers, cloud and query answers (transformed)
    # base_frame -> target_frame pose [x, y, z, qx, qy, qz, qw] (p_target = R p_base + t); all
    # zeros (no rotation is a zero quaternion) = none: TF at each set's stamp where tf2_ros
    # exists, else outputs stay in base_frame. (ROS parameter files cannot hold an empty list.)
    target_transform: list[float] = field(default_factory=lambda: [0.0] * 7)
    max_latency_warn_s: float = 1.0  # diagnostics WARN above this end-to-end latency
    camera_stale_s: float = 1.0  # diagnostics WARN when a camera is silent this long
    diagnostics_period_s: float = 1.0  # how often /diagnostics is published
    model_retry_s: float = 5.0  # retry loading a failed model this often; 0 = never
    marker_alpha: float = 0.9  # opacity of the occupancy cubes
    # The online map (README, "Mapping"). Off: no map topics, services or odometry
    # subscription exist and the node does what it does without it.
    mapping: bool = False  # fuse camera sets into a map in map_frame (query_map, costmap)
    pose_source: str = "odom"  # odom (nav_msgs/Odometry on odom_topic) | tf (needs tf2_ros)
    odom_topic: str = "odom"  # base_frame -> map_frame poses (relative: namespaces move it)
    map_frame: str = "map"  # the map's frame: odometry must be in it (header.frame_id)
    max_pose_age_s: float = 0.25  # a set needs a pose this close to its stamp, else skipped
    map_max_voxels: int = 4_000_000  # stored voxels at most; the farthest blocks go first
    map_radius_m: float = 0.0  # > 0: voxels farther than this from the ego are dropped
    map_language_every: int = 1  # fuse language features on every k-th integrated set
    map_publish_period_s: float = 1.0  # map_cloud and costmap (when changed, and watched)
    # Map file: loaded at configure when it exists (a corrupt one fails it), written by
    # pop3d/save_map; "" = start empty and save to ~/.ros/pop3d_map.npz.
    map_file: str = ""
    costmap_ground_z: float = 0.0  # ground height in map_frame (m)
    costmap_min_height: float = 0.2  # occupied voxels between these heights above the ground
    costmap_max_height: float = 2.0  # are lethal in pop3d/costmap (m)

    def validate(self) -> None:
        choices = {
            "extrinsics_source": ("rig", "tf"),
            "image_transport": ("raw", "compressed"),
            "image_reliability": ("auto", "reliable", "best_effort"),
            "backend": ("auto", "tensorrt", "onnxruntime", "torch"),
            "precision": ("fp32", "fp16", "int8"),
            "pose_source": ("odom", "tf"),
            "executor": ("events", "multi_threaded"),
        }
        for name, allowed in choices.items():
            if getattr(self, name) not in allowed:
                raise ValueError(f"parameter {name}={getattr(self, name)!r}: use one of {allowed}")
        if not self.camera_names:
            raise ValueError("parameter camera_names must not be empty")
        if not 0.0 < self.occupancy_threshold < 1.0:
            raise ValueError("parameter occupancy_threshold must be in (0, 1)")
        if self.max_camera_time_diff < 0:
            raise ValueError("parameter max_camera_time_diff must be >= 0")
        self.target_transform = [float(v) for v in self.target_transform]
        if not any(self.target_transform):
            self.target_transform = []  # "none" (see the field's comment)
        else:
            from pop3d_ros.pipeline.output_frame import pose_to_matrix

            pose_to_matrix(self.target_transform)  # ValueError: one line
        if self.threads < 0:
            raise ValueError("parameter threads must be >= 0 (0 = all cores)")
        if not 0.0 <= self.marker_alpha <= 1.0:
            raise ValueError("parameter marker_alpha must be in [0, 1]")
        for name in ("max_latency_warn_s", "camera_stale_s", "diagnostics_period_s"):
            if not getattr(self, name) > 0:
                raise ValueError(f"parameter {name} must be > 0")
        if self.model_retry_s < 0:
            raise ValueError("parameter model_retry_s must be >= 0 (0 = never)")
        for name in ("base_frame", "target_frame", "map_frame", "odom_topic"):
            if not getattr(self, name).strip():
                raise ValueError(f"parameter {name} must not be empty")
        from pop3d_ros.ros.map_settings import map_settings

        map_settings(self)  # ValueError: one line

    @property
    def thread_plan(self) -> tuple[int, int]:
        """(inference threads, executor threads) for `threads`.

        Inference (ONNX Runtime intra-op pool, or torch) gets `threads` cores, 0 = all. The
        executor threads apply only where rclpy has no EventsExecutor (node.make_executor):
        callbacks are cheap (images are kept unconverted until the worker runs them), so no
        more than `threads`, but at least two (one for images, one so the query service
        answers during a burst of images).
        """
        n = self.threads or os.cpu_count() or 1
        return n, max(2, n)

    @property
    def checkpoint_path(self) -> Path:
        return Path(self.model_dir or default_model_dir()) / self.checkpoint


def share_path(*parts: str) -> Path:
    """A file of the package's share directory (first that exists; else the source tree)."""
    return package_file(*parts)


def default_model_dir() -> Path:
    return share_path("models", "default")


# Parameters that apply from the next camera set on when changed at run time (`ros2 param
# set`); every other one is read when the node is configured (see `runtime_params`).
RUNTIME_PARAMETERS = (
    "occupancy_threshold",
    "vocabulary",
    "marker_alpha",
    "target_frame",
    "target_transform",
    "max_latency_warn_s",
    "camera_stale_s",
    "diagnostics_period_s",
    "model_retry_s",
)


def declare_all(node) -> None:
    """Declare every parameter on `node` with its default (values from files/overrides)."""
    defaults = NodeParams()
    for f in fields(NodeParams):
        desc = ParameterDescriptor(description=f.name)
        node.declare_parameter(f.name, getattr(defaults, f.name), desc)


def from_values(values: dict) -> NodeParams:
    """Validated NodeParams of {name: value} (ValueError with the reason)."""
    defaults = NodeParams()
    values = {
        name: list(v) if isinstance(getattr(defaults, name), list) else v
        for name, v in values.items()
    }
    params = NodeParams(**values)
    params.vocabulary = [v for v in params.vocabulary if str(v).strip()]
    params.validate()
    return params


def read(node) -> NodeParams:
    """The node's current parameter values, validated (ValueError with the reason)."""
    return from_values({f.name: node.get_parameter(f.name).value for f in fields(NodeParams)})


def declare(node) -> NodeParams:
    """Declare every parameter on `node` and read it (`declare_parameter(...).value`)."""
    declare_all(node)
    return read(node)


def declared_names() -> list[str]:
    """Names the node declares (for the launch-file test)."""
    return [f.name for f in fields(NodeParams)] + ["use_sim_time"]
