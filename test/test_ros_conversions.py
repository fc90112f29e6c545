"""Message conversions: spliced CUBE_LIST serialisation equals the per-object message, clouds,
stamps, query responses (real message types, no DDS needed)."""

from __future__ import annotations

import numpy as np
import pytest
from rclpy.serialization import deserialize_message, serialize_message
from visualization_msgs.msg import MarkerArray

from pop3d_ros.pipeline import messages
from pop3d_ros.pipeline.occupancy import QueryResult
from pop3d_ros.ros import conversions as conv
from pop3d_ros.srv import QueryText

pytestmark = pytest.mark.ros


@pytest.mark.parametrize("n", [0, 1, 7, 5000])
def test_spliced_markers_equal_object_markers(n):
    rng = np.random.default_rng(n)
    pts = rng.normal(size=(n, 3)) * 20
    cols = rng.random((n, 4)).astype(np.float32)
    header = conv.make_header(1234.5678, "base_link")
    ser = conv.MarkerArraySerializer()
    raw = ser.serialize(header, "occupancy", (1.024, 1.024, 1.0), pts, cols)
    got = deserialize_message(raw, MarkerArray)
    ref = conv.MarkerArraySerializer.objects(header, "occupancy", (1.024, 1.024, 1.0), pts, cols)
    assert got == ref  # field-wise equality of the whole message
    assert ser.spliced == (1 if n else 0)
    (m,) = got.markers
    assert m.type == m.CUBE_LIST and len(m.points) == n
    if n:
        assert m.points[-1].x == pts[-1, 0] and m.colors[-1].a == pytest.approx(cols[-1, 3])
    # Byte-for-byte equal apart from CDR padding, which the serializer leaves undefined.
    assert len(raw) == len(serialize_message(ref))


def test_point_cloud_and_stamps():
    arr = messages.cloud_array(np.ones((3, 3)), [0.1, 0.5, 0.9], labels=[1, 2, 3])
    msg = conv.point_cloud(arr, conv.make_header(1.5, "base_link"))
    assert (msg.width, msg.height, msg.point_step, msg.row_step) == (3, 1, 18, 54)
    assert [(f.name, f.offset, f.datatype) for f in msg.fields][-1] == ("label", 16, 4)
    assert bytes(msg.data) == arr.tobytes()
    back = conv.cloud_to_array(msg)
    assert back.dtype.names == ("x", "y", "z", "occupancy", "label")
    np.testing.assert_array_equal(back["occupancy"], np.float32([0.1, 0.5, 0.9]))
    np.testing.assert_array_equal(back["label"], [1, 2, 3])
    for t in (0.0, 1.5, 1e9 + 0.999999999, 12.25):
        assert conv.stamp_to_sec(conv.sec_to_stamp(t)) == pytest.approx(t, abs=1e-9)
    s = conv.sec_to_stamp(2.9999999999)
    assert s.nanosec < 1_000_000_000


def test_fill_query_response():
    centres = np.arange(12, dtype=np.float32).reshape(4, 3)
    scores = np.array([0.1, 0.9, 0.5, 0.7], np.float32)
    result = QueryResult(True, "note", 3.0, centres, scores, np.array([1, 3]))
    response = QueryText.Response()
    header = conv.make_header(3.0, "base_link")
    conv.fill_query_response(
        response, result, header, messages.cloud_array(centres, scores, extra="score")
    )
    assert response.success and response.message == "note"
    assert [(p.x, p.y, p.z) for p in response.top_points] == [(3, 4, 5), (9, 10, 11)]
    assert list(response.top_scores) == pytest.approx([0.9, 0.7])
    assert response.heatmap.width == 4 and response.header.frame_id == "base_link"


def test_tf_transform_to_matrix_hand_computed():
    from geometry_msgs.msg import Transform

    from pop3d_ros.ros.tf_extrinsics import transform_to_matrix

    t = Transform()
    t.translation.x, t.translation.y, t.translation.z = 1.5, -0.5, 2.0
    # 90 deg about +z, ROS order (x, y, z, w)
    t.rotation.x, t.rotation.y, t.rotation.z, t.rotation.w = 0.0, 0.0, 2**-0.5, 2**-0.5
    m = transform_to_matrix(t)
    np.testing.assert_allclose(m[:3, 3], [1.5, -0.5, 2.0])
    np.testing.assert_allclose(m[:3, :3] @ [1.0, 0.0, 0.0], [0.0, 1.0, 0.0], atol=1e-12)


def test_grounded_objects_in_response_and_markers():
    from visualization_msgs.msg import Marker

    from pop3d_ros.pipeline.grounding import ground_objects

    # Two blobs on a 0.5 m grid: cells (0..2, 0, 0) and (6, 6, 1).
    cells = np.array([(0, 0, 0), (1, 0, 0), (2, 0, 0), (6, 6, 1)], dtype=np.float32)
    centres = (cells + 0.5) * 0.5
    scores = np.array([0.3, 0.6, 0.3, 0.9], np.float32)
    objects = tuple(ground_objects(centres, scores, 0.5, 0.2))
    result = QueryResult(True, "", 3.0, centres, scores, np.array([3]), objects=objects)
    response = QueryText.Response()
    header = conv.make_header(3.0, "base_link")
    conv.fill_query_response(response, result, header, None)
    assert [o.num_voxels for o in response.objects] == [1, 3]
    second = response.objects[1]
    # weighted x: (0.25 * 0.3 + 0.75 * 0.6 + 1.25 * 0.3) / 1.2 = 0.75
    assert (second.center.x, second.center.y, second.center.z) == pytest.approx((0.75, 0.25, 0.25))
    assert (second.size.x, second.size.y, second.size.z) == pytest.approx((1.5, 0.5, 0.5))
    assert second.max_score == pytest.approx(0.6) and second.mean_score == pytest.approx(0.4)
    # No objects asked for: the field stays empty.
    empty = QueryText.Response()
    conv.fill_query_response(empty, QueryResult(True, "", 3.0, centres, scores, None), header, None)
    assert len(empty.objects) == 0

    # Asymmetric scores: the box sits around the voxels, not at the weighted centre.
    lop = tuple(ground_objects(centres[:3], [0.9, 0.3, 0.3], 0.5, 0.2))
    arr = conv.query_object_markers(header, objects + lop, centres, "  a   red car ")
    assert arr.markers[0].action == Marker.DELETEALL
    boxes = [m for m in arr.markers if m.type == Marker.CUBE]
    labels = [m for m in arr.markers if m.type == Marker.TEXT_VIEW_FACING]
    assert len(boxes) == len(labels) == 3 and len(arr.markers) == 7
    assert [m.id for m in boxes] == [0, 1, 2] and boxes[0].ns == "query_objects"
    assert boxes[2].pose.position.x == pytest.approx(0.75)  # middle of 0.25..1.25
    assert (boxes[1].scale.x, boxes[1].scale.y) == pytest.approx((1.5, 0.5))
    assert labels[0].text == "a red car 0.90" and labels[0].header.frame_id == "base_link"
    assert labels[1].pose.position.z > boxes[1].pose.position.z + boxes[1].scale.z / 2
    assert len(conv.query_object_markers(header, (), centres, "car").markers) == 1
