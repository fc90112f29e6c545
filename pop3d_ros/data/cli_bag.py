"""`pop3d export-bag`: write a sequence as a rosbag2 (MCAP storage) of the six camera topics
and `/odom` (nav_msgs/Odometry, the ego pose in `odom`, before each camera set).

Writes `<out>/<name>_0.mcap` plus the `metadata.yaml` that rosbag2 writes next to it, so
`ros2 bag play <out>`, `ros2 bag info <out>` and readers such as `rosbags` accept the
directory. As rosbag2's MCAP plugin (Jazzy) does: messages are CDR, the ROS 2 message
definitions are embedded as schemas (ros2msg, profile "ros2"), and every channel carries the
metadata `offered_qos_profiles` (the publisher QoS as YAML, the same text as in
metadata.yaml) and `topic_type_hash` (RIHS01 type hash). Readers match a topic of
metadata.yaml to its MCAP channel by both; without them a reader finds the topics but no
messages.
"""

from __future__ import annotations

import sys
from dataclasses import dataclass, field
from pathlib import Path

import yaml
from mcap.well_known import MessageEncoding, SchemaEncoding
from mcap.writer import CompressionType, Writer
from mcap_ros2._dynamic import serialize_dynamic
from tqdm import tqdm

from pop3d_ros.cli_config import run_command
from pop3d_ros.data.messages import ego_twist, sample_messages
from pop3d_ros.data.sources import drive_samples
from pop3d_ros.data.synthetic.config import WorldConfig

_SEP = "=" * 80 + "\n"
_HEADER = "MSG: std_msgs/Header\nbuiltin_interfaces/Time stamp\nstring frame_id\n"
_TIME = "MSG: builtin_interfaces/Time\nint32 sec\nuint32 nanosec\n"
MSG_DEFS = {
    "sensor_msgs/msg/Image": "std_msgs/Header header\nuint32 height\nuint32 width\n"
    "string encoding\nuint8 is_bigendian\nuint32 step\nuint8[] data\n"
    + _SEP
    + _HEADER
    + _SEP
    + _TIME,
    "sensor_msgs/msg/CompressedImage": "std_msgs/Header header\nstring format\nuint8[] data\n"
    + _SEP
    + _HEADER
    + _SEP
    + _TIME,
    "sensor_msgs/msg/CameraInfo": "std_msgs/Header header\nuint32 height\nuint32 width\n"
    "string distortion_model\nfloat64[] d\nfloat64[9] k\nfloat64[9] r\nfloat64[12] p\n"
    "uint32 binning_x\nuint32 binning_y\nsensor_msgs/RegionOfInterest roi\n"
    + _SEP
    + _HEADER
    + _SEP
    + _TIME
    + _SEP
    + "MSG: sensor_msgs/RegionOfInterest\nuint32 x_offset\nuint32 y_offset\nuint32 height\n"
    "uint32 width\nbool do_rectify\n",
}
_VEC3 = "float64 x\nfloat64 y\nfloat64 z\n"
MSG_DEFS["nav_msgs/msg/Odometry"] = (
    "std_msgs/Header header\nstring child_frame_id\ngeometry_msgs/PoseWithCovariance pose\n"
    "geometry_msgs/TwistWithCovariance twist\n"
    + _SEP
    + _HEADER
    + _SEP
    + _TIME
    + _SEP
    + "MSG: geometry_msgs/PoseWithCovariance\ngeometry_msgs/Pose pose\nfloat64[36] covariance\n"
    + _SEP
    + "MSG: geometry_msgs/Pose\ngeometry_msgs/Point position\n"
    "geometry_msgs/Quaternion orientation\n"
    + _SEP
    + "MSG: geometry_msgs/Point\n"
    + _VEC3
    + _SEP
    + "MSG: geometry_msgs/Quaternion\nfloat64 x 0\nfloat64 y 0\nfloat64 z 0\n"
    "float64 w 1\n" + _SEP + "MSG: geometry_msgs/TwistWithCovariance\ngeometry_msgs/Twist twist\n"
    "float64[36] covariance\n" + _SEP + "MSG: geometry_msgs/Twist\n"
    "geometry_msgs/Vector3 linear\ngeometry_msgs/Vector3 angular\n"
    + _SEP
    + "MSG: geometry_msgs/Vector3\n"
    + _VEC3
)
# RIHS01 hashes of the type descriptions (the `type_hashes` of share/<pkg>/msg/*.json in
# Jazzy and Kilted); rosbag2 stores them per topic.
TYPE_HASHES = {
    "sensor_msgs/msg/Image": (
        "RIHS01_d31d41a9a4c4bc8eae9be757b0beed306564f7526c88ea6a4588fb9582527d47"
    ),
    "sensor_msgs/msg/CompressedImage": (
        "RIHS01_15640771531571185e2efc8a100baf923961a4d15d5569652e6cb6691e8e371a"
    ),
    "sensor_msgs/msg/CameraInfo": (
        "RIHS01_b3dfd68ff46c9d56c80fd3bd4ed22c7a4ddce8c8348f2f59c299e73118e7e275"
    ),
    "nav_msgs/msg/Odometry": (
        "RIHS01_3cc97dc7fb7502f8714462c526d369e35b603cfc34d946e3f2eda2766dfec6e0"
    ),
}
# rosbag2 records the publisher QoS per topic (metadata version 8 encoding, as Jazzy writes
# it); reliable, volatile, keep last 10
_QOS = ("- history: 1\n  depth: 10\n  reliability: 1\n  durability: 2\n"
        "  deadline:\n    sec: 2147483647\n    nsec: 4294967295\n"
        "  lifespan:\n    sec: 2147483647\n    nsec: 4294967295\n"
        "  liveliness: 1\n  liveliness_lease_duration:\n    sec: 2147483647\n"
        "    nsec: 4294967295\n  avoid_ros_namespace_conventions: false\n")  # fmt: skip


def _bag_world() -> WorldConfig:
    return WorldConfig(num_frames=10)


@dataclass
class ExportBagCommand:
    """Writes a synthetic drive (rendered dir --data, or rendered on the fly from --world.*)
    as a rosbag2 MCAP directory of the six camera topics and /odom."""

    out: str  # bag directory to create (must not exist or be empty)
    data: str = ""  # rendered dir (pop3d render); "" = render on the fly
    compressed: bool = False  # JPEG sensor_msgs/CompressedImage topics instead of raw Image
    world: WorldConfig = field(default_factory=_bag_world)


def main(argv=None) -> int:
    argv = sys.argv[2:] if argv is None else argv
    return run_command(
        ExportBagCommand, argv, "pop3d export-bag", run,
        errors=(ValueError, FileExistsError, FileNotFoundError),
    )  # fmt: skip


def write_bag(out, samples, compressed: bool = False, progress: bool = True) -> dict:
    """Write samples as a rosbag2 MCAP directory; returns the metadata dict."""
    out = Path(out)
    if out.exists() and any(out.iterdir()):
        raise FileExistsError(f"{out} exists and is not empty (rosbag2 refuses that too)")
    out.mkdir(parents=True, exist_ok=True)
    name = f"{out.name}_0.mcap"
    counts: dict[tuple[str, str], int] = {}
    first = last = None
    with open(out / name, "wb") as f:
        writer = Writer(f, compression=CompressionType.ZSTD)
        writer.start(profile="ros2", library="pop3d_ros export-bag")
        schemas: dict[str, int] = {}
        encoders = {}
        channels: dict[str, int] = {}
        prev = None  # (pose, stamp) of the previous frame: the ego's twist on /odom
        for sample in tqdm(samples, desc="export-bag", unit="frame", disable=not progress):
            twist = None
            if sample.get("ego_to_world") is not None:
                twist = ego_twist(*(prev or (None, 0)), sample["ego_to_world"],
                                  sample["timestamp"])  # fmt: skip
                prev = (sample["ego_to_world"], sample["timestamp"])
            for topic, type_name, fields in sample_messages(sample, compressed, twist=twist):
                if type_name not in schemas:
                    schemas[type_name] = writer.register_schema(
                        type_name, SchemaEncoding.ROS2, MSG_DEFS[type_name].encode()
                    )
                    encoders[type_name] = serialize_dynamic(type_name, MSG_DEFS[type_name])[
                        type_name
                    ]
                if topic not in channels:
                    channels[topic] = writer.register_channel(
                        topic,
                        MessageEncoding.CDR,
                        schemas[type_name],
                        {"offered_qos_profiles": _QOS, "topic_type_hash": TYPE_HASHES[type_name]},
                    )
                t_ns = int(sample["timestamp"]) * 1000
                writer.add_message(channels[topic], log_time=t_ns, publish_time=t_ns,
                                   data=encoders[type_name](fields))  # fmt: skip
                counts[(topic, type_name)] = counts.get((topic, type_name), 0) + 1
                first = t_ns if first is None else min(first, t_ns)
                last = t_ns if last is None else max(last, t_ns)
        writer.finish()
    total = sum(counts.values())
    first, last = first or 0, last or 0
    info = {
        "version": 8,
        "storage_identifier": "mcap",
        "duration": {"nanoseconds": last - first},
        "starting_time": {"nanoseconds_since_epoch": first},
        "message_count": total,
        "topics_with_message_count": [
            {
                "topic_metadata": {
                    "name": t,
                    "type": ty,
                    "serialization_format": "cdr",
                    "offered_qos_profiles": _QOS,
                    "type_description_hash": TYPE_HASHES[ty],
                },
                "message_count": n,
            }
            for (t, ty), n in sorted(counts.items())
        ],  # fmt: skip
        "compression_format": "",
        "compression_mode": "",
        "relative_file_paths": [name],
        "files": [
            {
                "path": name,
                "starting_time": {"nanoseconds_since_epoch": first},
                "duration": {"nanoseconds": last - first},
                "message_count": total,
            }
        ],  # fmt: skip
        "custom_data": {},
        "ros_distro": "jazzy",
    }
    (out / "metadata.yaml").write_text(
        yaml.safe_dump({"rosbag2_bagfile_information": info}, sort_keys=False)
    )
    return info


def run(args: ExportBagCommand) -> int:
    samples = drive_samples(args.data, args.world)
    info = write_bag(args.out, samples, compressed=args.compressed)
    print(f"wrote {info['message_count']} messages to {args.out}")
    return 0
