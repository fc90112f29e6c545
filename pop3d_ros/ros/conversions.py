"""Conversions between ROS messages and the pipeline's numpy structures (no logic here).

CUBE_LIST markers hold one geometry_msgs/Point object per voxel; building tens of thousands of
Python objects costs far more than the inference output is worth. `MarkerArraySerializer`
instead serialises a one-point template with the ROS serializer itself and splices the numpy
point and colour buffers into the CDR bytes, which `Publisher.publish(bytes)` sends as is.
"""

from __future__ import annotations

import math
import struct

import numpy as np
from builtin_interfaces.msg import Time
from geometry_msgs.msg import Point, Vector3
from rclpy.serialization import serialize_message
from sensor_msgs.msg import PointCloud2, PointField
from std_msgs.msg import ColorRGBA, Header
from visualization_msgs.msg import Marker, MarkerArray

from pop3d_ros.pipeline import messages
from pop3d_ros.pipeline.images import decode_compressed, raw_image_view


def stamp_to_sec(stamp) -> float:
    return float(stamp.sec) + float(stamp.nanosec) * 1e-9


def sec_to_stamp(t: float) -> Time:
    sec = math.floor(t)
    nanosec = int(round((t - sec) * 1e9))
    if nanosec >= 1_000_000_000:
        sec, nanosec = sec + 1, nanosec - 1_000_000_000
    return Time(sec=int(sec), nanosec=nanosec)


def make_header(stamp: float, frame_id: str) -> Header:
    return Header(stamp=sec_to_stamp(stamp), frame_id=frame_id)


def image_view(msg) -> np.ndarray:
    """(H, W, C) view over a sensor_msgs/Image's buffer (ImageDecodeError if bad)."""
    return raw_image_view(
        msg.data, msg.height, msg.width, msg.step, msg.encoding, bool(msg.is_bigendian)
    )


def compressed_rgb(msg) -> np.ndarray:
    return decode_compressed(msg.data, msg.format)


def camera_info_k(msg) -> tuple[np.ndarray, int, int]:
    """(K 3x3, width, height) of a CameraInfo (validated by the caller via PinholeCamera)."""
    return np.asarray(msg.k, dtype=np.float64).reshape(3, 3), int(msg.width), int(msg.height)


def point_cloud(arr: np.ndarray, header: Header) -> PointCloud2:
    """PointCloud2 of a packed structured array (one point per row)."""
    msg = PointCloud2(header=header, height=1, width=int(arr.shape[0]))
    msg.fields = [
        PointField(name=name, offset=offset, datatype=code, count=1)
        for name, offset, code in messages.point_fields(arr.dtype)
    ]
    msg.is_bigendian = False
    msg.point_step = int(arr.dtype.itemsize)
    msg.row_step = msg.point_step * msg.width
    msg.data = np.ascontiguousarray(arr).tobytes()
    msg.is_dense = True
    return msg


def cloud_to_array(msg: PointCloud2) -> np.ndarray:
    """Structured array of a PointCloud2 (the inverse of `point_cloud`; little-endian only)."""
    if msg.is_bigendian:
        raise ValueError("big-endian PointCloud2 is not supported")
    codes = {code: dtype for dtype, code in messages.POINTFIELD_CODES.items()}
    dtype = np.dtype(
        {
            "names": [f.name for f in msg.fields],
            "formats": [codes[f.datatype].newbyteorder("<") for f in msg.fields],
            "offsets": [f.offset for f in msg.fields],
            "itemsize": msg.point_step,
        }
    )
    return np.frombuffer(bytes(msg.data), dtype=dtype, count=msg.width * msg.height)


# Sentinels whose bytes appear exactly once in the template's serialisation.
_PT = (1.2345678901234e-300, -9.87654321e-299, 3.1415926535e-297)
_COL = (0.12345679, 0.87654322, 0.31415927, 0.27182817)


def cube_list_marker(header, ns: str, marker_id: int, scale, points=(), colors=()) -> Marker:
    m = Marker(header=header, ns=ns, id=int(marker_id), type=Marker.CUBE_LIST)
    m.action = Marker.ADD
    m.pose.orientation.w = 1.0
    m.scale.x, m.scale.y, m.scale.z = (float(s) for s in scale)
    m.color = ColorRGBA(r=1.0, g=1.0, b=1.0, a=1.0)
    m.points = list(points)
    m.colors = list(colors)
    return m


class MarkerArraySerializer:
    """Serialised MarkerArray with one CUBE_LIST whose points/colours come from numpy arrays."""

    def __init__(self):
        self.spliced = 0  # messages built by splicing (vs. the object fallback)

    def serialize(
        self, header: Header, ns: str, scale, points: np.ndarray, colors: np.ndarray
    ) -> bytes:
        points, colors = messages.marker_arrays(points, colors)
        n = points.shape[0]
        if n == 0 or colors.shape[0] != n:
            return serialize_message(self.objects(header, ns, scale, points, colors))
        template = MarkerArray(
            markers=[
                cube_list_marker(
                    header, ns, 0, scale, [Point(x=_PT[0], y=_PT[1], z=_PT[2])],
                    [ColorRGBA(r=_COL[0], g=_COL[1], b=_COL[2], a=_COL[3])],
                )
            ]
        )  # fmt: skip
        raw = serialize_message(template)
        if raw[1] != 1:  # not little-endian CDR: fall back to message objects
            return serialize_message(self.objects(header, ns, scale, points, colors))
        p = raw.index(struct.pack("<ddd", *_PT))
        count_p = p - 4 if raw[p - 4 : p] == b"\x01\0\0\0" else p - 8
        q = raw.index(struct.pack("<ffff", *_COL))
        count_q = q - 4
        if raw[count_p : count_p + 4] != b"\x01\0\0\0" or raw[count_q:q] != b"\x01\0\0\0":
            return serialize_message(self.objects(header, ns, scale, points, colors))
        self.spliced += 1
        return b"".join(
            (
                raw[:count_p],
                struct.pack("<I", n),
                raw[count_p + 4 : p],
                points.tobytes(),
                raw[p + 24 : count_q],
                struct.pack("<I", n),
                colors.tobytes(),
                raw[q + 16 :],
            )
        )

    @staticmethod
    def objects(header, ns, scale, points, colors) -> MarkerArray:
        """The same MarkerArray built from one message object per voxel (slow reference)."""
        pts = [Point(x=float(x), y=float(y), z=float(z)) for x, y, z in np.asarray(points)]
        cols = [
            ColorRGBA(r=float(r), g=float(g), b=float(b), a=float(a))
            for r, g, b, a in np.asarray(colors)
        ]
        return MarkerArray(markers=[cube_list_marker(header, ns, 0, scale, pts, cols)])


def empty_heatmap() -> np.ndarray:
    """A heatmap with no points but the fields x, y, z, score: what readers of a failed
    answer's cloud (sensor_msgs_py, PCL) need to parse it."""
    return messages.cloud_array(np.zeros((0, 3), np.float32), np.zeros(0, np.float32), "score")


def fail_query_response(response, header: Header, message: str):
    """A QueryText response with success false, the reason and an empty heatmap."""
    response.success, response.message, response.header = False, message, header
    response.heatmap = point_cloud(empty_heatmap(), header)
    return response


def fill_query_response(response, result, header: Header, heatmap_arr) -> None:
    """Copy a pipeline QueryResult into a QueryText response (no heatmap: an empty one)."""
    response.success = bool(result.success)
    response.message = result.message
    response.header = header
    response.heatmap = point_cloud(empty_heatmap() if heatmap_arr is None else heatmap_arr, header)
    if result.success and result.top is not None and len(result.top):
        top = result.centres[result.top].astype(np.float64)
        response.top_points = [Point(x=x, y=y, z=z) for x, y, z in top.tolist()]
        response.top_scores = result.scores[result.top].astype(np.float32).tolist()
    if result.success and result.objects:
        response.objects = grounded_object_msgs(result.objects)


def grounded_object_msgs(objects) -> list:
    """pop3d_ros/GroundedObject messages of the pipeline's grounded objects (same order)."""
    from pop3d_ros.msg import GroundedObject

    return [
        GroundedObject(
            center=Point(x=float(o.center[0]), y=float(o.center[1]), z=float(o.center[2])),
            size=Vector3(x=float(o.size[0]), y=float(o.size[1]), z=float(o.size[2])),
            max_score=float(o.max_score),
            mean_score=float(o.mean_score),
            num_voxels=int(o.num_voxels),
        )
        for o in objects
    ]


OBJECT_COLOR = (1.0, 0.55, 0.0)  # boxes of grounded objects (orange), RGB
LABEL_HEIGHT = 0.8  # metres: text size of the labels above the boxes


def query_object_markers(
    header: Header, objects, centres: np.ndarray, text: str, alpha: float = 0.4
) -> MarkerArray:
    """RViz markers of grounded objects: DELETEALL (drops the previous query's), then per
    object a CUBE box (namespace "query_objects") and a TEXT_VIEW_FACING label with the query
    and the object's peak score above it (namespace "query_labels"), both with the object's
    rank as id. The box spans the object's voxels (`centres` = the voxel centres its
    `voxel_indices` index), so it sits around them rather than at the score-weighted centre."""
    label = " ".join(str(text).split())
    label = label if len(label) <= 40 else label[:39] + "…"
    markers = [Marker(header=header, action=Marker.DELETEALL)]
    r, g, b = OBJECT_COLOR
    for i, o in enumerate(objects):
        own = np.asarray(centres, dtype=np.float64)[o.voxel_indices]
        cx, cy, cz = ((own.min(axis=0) + own.max(axis=0)) / 2).tolist()
        sx, sy, sz = (float(v) for v in o.size)
        box = Marker(header=header, ns="query_objects", id=i, type=Marker.CUBE)
        box.action = Marker.ADD
        box.pose.position = Point(x=cx, y=cy, z=cz)
        box.pose.orientation.w = 1.0
        box.scale = Vector3(x=sx, y=sy, z=sz)
        box.color = ColorRGBA(r=r, g=g, b=b, a=float(alpha))
        tag = Marker(header=header, ns="query_labels", id=i, type=Marker.TEXT_VIEW_FACING)
        tag.action = Marker.ADD
        tag.pose.position = Point(x=cx, y=cy, z=cz + sz / 2 + LABEL_HEIGHT)
        tag.pose.orientation.w = 1.0
        tag.scale.z = LABEL_HEIGHT
        tag.color = ColorRGBA(r=1.0, g=1.0, b=1.0, a=1.0)
        tag.text = f"{label} {float(o.max_score):.2f}"
        markers += [box, tag]
    return MarkerArray(markers=markers)
