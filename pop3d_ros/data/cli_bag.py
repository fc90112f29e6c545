"""`pop3d export-bag`: write a sequence as a rosbag2 (MCAP storage) of the six camera topics.

Writes `<out>/<name>_0.mcap` plus the `metadata.yaml` that rosbag2 writes next to it, so
`ros2 bag play <out>` and `ros2 bag info <out>` accept the directory. Messages are CDR with
the ROS 2 message definitions embedded as schemas (ros2msg), as rosbag2's MCAP plugin does.
"""

from __future__ import annotations

import sys
from pathlib import Path

import yaml
from mcap_ros2.writer import Writer
from tqdm import tqdm

from pop3d_ros.data.messages import sample_messages

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
# rosbag2 records the publisher QoS per topic; reliable, volatile, keep last 10
_QOS = ("- history: 1\n  depth: 10\n  reliability: 1\n  durability: 2\n"
        "  deadline:\n    sec: 2147483647\n    nsec: 4294967295\n"
        "  lifespan:\n    sec: 2147483647\n    nsec: 4294967295\n"
        "  liveliness: 1\n  liveliness_lease_duration:\n    sec: 2147483647\n"
        "    nsec: 4294967295\n  avoid_ros_namespace_conventions: false\n")  # fmt: skip


def add_arguments(parser) -> None:
    parser.add_argument("--out", required=True, help="bag directory to create")
    parser.add_argument("--data", default=None, help="rendered dir (pop3d render); default: "
                        "render on the fly")  # fmt: skip
    parser.add_argument("--seed", type=int, default=0, help="synthetic drive seed")
    parser.add_argument("--frames", type=int, default=10, help="frames to write")
    parser.add_argument("--width", type=int, default=256)
    parser.add_argument("--height", type=int, default=144)
    parser.add_argument("--compressed", action="store_true", help="JPEG CompressedImage topics")


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
        writer = Writer(f)
        schemas = {}
        for sample in tqdm(samples, desc="export-bag", unit="frame", disable=not progress):
            for topic, type_name, fields in sample_messages(sample, compressed=compressed):
                if type_name not in schemas:
                    schemas[type_name] = writer.register_msgdef(type_name, MSG_DEFS[type_name])
                t_ns = int(sample["timestamp"]) * 1000
                writer.write_message(topic, schemas[type_name], fields, log_time=t_ns,
                                     publish_time=t_ns)  # fmt: skip
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
                    "type_description_hash": "",
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


def iter_samples(data, seed: int, frames: int, width: int, height: int):
    if data:
        from pop3d_ros.data.dataset import SyntheticDataset

        ds = SyntheticDataset([seed], root=data)
        for i in range(min(frames, len(ds))):
            yield ds[i]
    else:
        from pop3d_ros.data.synthetic import SyntheticWorld, WorldConfig

        world = SyntheticWorld(WorldConfig(seed=seed, num_frames=frames, image_width=width,
                                           image_height=height))  # fmt: skip
        for i in range(frames):
            yield world.sample(i, occupancy=False)


def run(args) -> int:
    try:
        if args.frames < 1:
            raise ValueError("--frames must be >= 1")
        samples = iter_samples(args.data, args.seed, args.frames, args.width, args.height)
        info = write_bag(args.out, samples, compressed=args.compressed)
    except (ValueError, FileExistsError, FileNotFoundError) as exc:
        print(f"pop3d export-bag: error: {exc}", file=sys.stderr)
        return 2
    print(f"wrote {info['message_count']} messages to {args.out}")
    return 0
