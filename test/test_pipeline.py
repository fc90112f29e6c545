"""The node's ROS-free pipeline: decoding, preprocessing, matching, caching, inference, queries,
message field arrays."""

from __future__ import annotations

import array

import cv2
import numpy as np
import pytest
from pipeline_fixtures import random_images, rig_cameras, write_tiny_checkpoint

from pop3d_ros.geometry.grid import VoxelGrid
from pop3d_ros.pipeline import messages
from pop3d_ros.pipeline.images import (
    ImageDecodeError,
    decode_compressed,
    raw_image_view,
    to_rgb,
)
from pop3d_ros.pipeline.occupancy import OccupancyPipeline, PipelineConfig, prepare_query_text
from pop3d_ros.pipeline.preprocess import cameras_for_input, images_to_input, resize_to_rgb
from pop3d_ros.pipeline.sampling_cache import SamplingCache
from pop3d_ros.pipeline.sync import CameraSetMatcher, Frame, LatestSlot
from pop3d_ros.text.base import TextEncodingError
from pop3d_ros.text.synthetic_text import SyntheticTextSpace


# -- decoding ---------------------------------------------------------------------------------
@pytest.mark.parametrize(
    "encoding,order", [("rgb8", [0, 1, 2]), ("bgr8", [2, 1, 0]), ("rgba8", [0, 1, 2, 3])]
)
def test_raw_view_is_zero_copy_with_padded_rows(encoding, order):
    rng = np.random.default_rng(1)
    rgb = rng.integers(0, 256, (5, 7, 3), dtype=np.uint8)
    native = np.concatenate([rgb, np.full((5, 7, 1), 9, np.uint8)], axis=2)[:, :, order]
    step = 7 * native.shape[2] + 3  # 3 bytes of row padding
    buf = np.zeros((5, step), np.uint8)
    buf[:, : 7 * native.shape[2]] = native.reshape(5, -1)
    data = array.array("B", buf.tobytes())  # what rclpy gives for uint8[]
    view = raw_image_view(data, 5, 7, step, encoding)
    assert np.shares_memory(view, np.frombuffer(data, np.uint8))
    np.testing.assert_array_equal(to_rgb(view, encoding), rgb)


def test_mono8_and_bgra8_to_rgb():
    gray = np.arange(12, dtype=np.uint8).reshape(3, 4)
    rgb = to_rgb(raw_image_view(gray.tobytes(), 3, 4, 4, "mono8"), "mono8")
    assert rgb.shape == (3, 4, 3) and np.all(rgb[..., 0] == gray) and np.all(rgb[..., 2] == gray)
    bgra = np.zeros((2, 2, 4), np.uint8)
    bgra[..., 0] = 200  # blue
    out = to_rgb(raw_image_view(bgra.tobytes(), 2, 2, 8, "bgra8"), "bgra8")
    assert out.shape == (2, 2, 3) and np.all(out[..., 2] == 200) and np.all(out[..., 0] == 0)


# The colour of each pixel of a ROS Bayer pattern, by its name: the first row starts with the
# name's first two letters, the second row with its last two (REP-104/sensor_msgs encodings).
BAYER_CV_CODES = {
    "bayer_rggb8": cv2.COLOR_BayerBG2RGB,
    "bayer_bggr8": cv2.COLOR_BayerRG2RGB,
    "bayer_gbrg8": cv2.COLOR_BayerGR2RGB,
    "bayer_grbg8": cv2.COLOR_BayerGB2RGB,
}


def _mosaic(rgb: np.ndarray, pattern: str) -> np.ndarray:
    """The Bayer mosaic a sensor with `pattern` (e.g. "rggb") records of an RGB image."""
    index = {"r": 0, "g": 1, "b": 2}
    out = np.empty(rgb.shape[:2], np.uint8)
    for k, (dy, dx) in enumerate(((0, 0), (0, 1), (1, 0), (1, 1))):
        out[dy::2, dx::2] = rgb[dy::2, dx::2, index[pattern[k]]]
    return out


@pytest.mark.parametrize("encoding", list(BAYER_CV_CODES))
def test_bayer_encodings_demosaic_as_cv_bridge(encoding):
    """A flat colour recorded through the pattern comes back as that colour (independent of
    OpenCV's naming), and every pixel equals cv_bridge's OpenCV conversion of the mosaic."""
    colour = np.array([200, 100, 30], np.uint8)
    flat = np.broadcast_to(colour, (16, 20, 3)).copy()
    mosaic = _mosaic(flat, encoding.split("_")[1][:4])
    rgb = to_rgb(raw_image_view(mosaic.tobytes(), 16, 20, 20, encoding), encoding)
    assert rgb.shape == (16, 20, 3)
    np.testing.assert_array_equal(rgb[2:-2, 2:-2], np.broadcast_to(colour, (12, 16, 3)))
    rng = np.random.default_rng(3)
    pattern = rng.integers(0, 256, (16, 20), dtype=np.uint8)
    got = to_rgb(raw_image_view(pattern.tobytes(), 16, 20, 20, encoding), encoding)
    np.testing.assert_array_equal(got, cv2.cvtColor(pattern, BAYER_CV_CODES[encoding]))
    # Through the node's preprocessing (demosaic at full size, then resize).
    small = resize_to_rgb(raw_image_view(mosaic.tobytes(), 16, 20, 20, encoding), encoding, (8, 10))
    np.testing.assert_allclose(small[1:-1, 1:-1], np.broadcast_to(colour, (6, 8, 3)), atol=1)


@pytest.mark.parametrize("encoding,order", [("yuv422", "UYVY"), ("yuv422_yuy2", "YUYV")])
def test_yuv422_encodings_as_cv_bridge(encoding, order):
    """Packed 4:2:2 built in the test from a known colour (BT.601 video range, the YUV of
    camera drivers' 4:2:2) converts back to it; and equals OpenCV's UYVY / YUY2 conversion."""
    colour = np.array([[[40, 160, 220]]], np.uint8)
    r, g, b = colour[0, 0].astype(float)
    y = round(16 + 0.257 * r + 0.504 * g + 0.098 * b)
    u = round(128 - 0.148 * r - 0.291 * g + 0.439 * b)
    v = round(128 + 0.439 * r - 0.368 * g - 0.071 * b)
    pair = {"UYVY": [u, y, v, y], "YUYV": [y, u, y, v]}[order]
    packed = np.tile(np.array(pair, np.uint8), (6, 5))  # 6 rows of 10 pixels, 2 bytes each
    rgb = to_rgb(raw_image_view(packed.tobytes(), 6, 10, 20, encoding), encoding)
    assert rgb.shape == (6, 10, 3)
    assert np.abs(rgb.astype(int) - colour.astype(int)).max() <= 3
    noise = np.random.default_rng(4).integers(0, 256, (6, 20), dtype=np.uint8)
    code = {"UYVY": cv2.COLOR_YUV2RGB_UYVY, "YUYV": cv2.COLOR_YUV2RGB_YUY2}[order]
    got = to_rgb(raw_image_view(noise.tobytes(), 6, 10, 20, encoding), encoding)
    np.testing.assert_array_equal(got, cv2.cvtColor(noise.reshape(6, 10, 2), code))


@pytest.mark.parametrize("bigendian", [False, True])
@pytest.mark.parametrize(
    "encoding,order", [("mono16", [0]), ("rgb16", [0, 1, 2]), ("bgr16", [2, 1, 0]),
                       ("rgba16", [0, 1, 2, 3]), ("bgra16", [2, 1, 0, 3])],
)  # fmt: skip
def test_16bit_encodings_scale_to_8bit_as_cv_bridge(encoding, order, bigendian):
    """16-bit values v become round(v * 255 / 65535) (cv_bridge's toCvCopy to rgb8), in RGB
    order, from either byte order; padded rows are skipped."""
    rng = np.random.default_rng(5)
    rgb16 = rng.integers(0, 65536, (4, 6, 3), dtype=np.uint16)
    rgb16[0, 0] = [0, 65535, 32896]  # 0, 255 and an exact 128
    alpha = np.full((4, 6, 1), 7, np.uint16)
    native = np.concatenate([rgb16, alpha], axis=2)[:, :, order]
    step = 6 * native.shape[2] * 2 + 4
    buf = np.zeros((4, step), np.uint8)
    raw = native.astype(">u2" if bigendian else "<u2").tobytes()
    buf[:, : 6 * native.shape[2] * 2] = np.frombuffer(raw, np.uint8).reshape(4, -1)
    view = raw_image_view(buf.tobytes(), 4, 6, step, encoding, bigendian=bigendian)
    got = to_rgb(view, encoding)
    source = rgb16[:, :, :1].repeat(3, axis=2) if encoding == "mono16" else rgb16
    want = np.floor(source.astype(np.float64) * 255.0 / 65535.0 + 0.5).astype(np.uint8)
    np.testing.assert_array_equal(got, want)
    assert got.dtype == np.uint8 and got.shape == (4, 6, 3)
    assert (
        got[0, 0].tolist()[: 1 if encoding == "mono16" else 3]
        == [0, 255, 128][: 1 if encoding == "mono16" else 3]
    )


@pytest.mark.parametrize(
    "args,reason",
    [
        ((b"\0" * 10, 2, 2, 6, "rgb8"), "short_data"),
        ((b"", 0, 0, 0, "rgb8"), "zero_size"),
        ((b"\0" * 100, 2, 2, 4, "rgb8"), "bad_step"),
        ((b"\0" * 100, 2, 2, 8, "nv21"), "unsupported_encoding"),
        ((b"\0" * 100, 2, 2, 8, "16UC1"), "unsupported_encoding"),
    ],
)
def test_bad_raw_images_give_clear_errors(args, reason):
    with pytest.raises(ImageDecodeError) as info:
        raw_image_view(*args)
    assert info.value.reason == reason and str(info.value)


def test_compressed_jpeg_png_and_corrupt():
    rgb = np.zeros((16, 24, 3), np.uint8)
    rgb[:, :12] = (250, 10, 10)
    for ext, fmt in ((".png", "png"), (".jpg", "rgb8; jpeg compressed bgr8")):
        ok, enc = cv2.imencode(ext, cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR))
        out = decode_compressed(enc.tobytes(), fmt)
        assert out.shape == rgb.shape
        assert abs(int(out[8, 2, 0]) - 250) < 8 and out[8, 2, 2] < 20  # red stays red
    with pytest.raises(ImageDecodeError, match="could not be decoded"):
        decode_compressed(b"\xff\xd8 not really a jpeg", "jpeg")
    with pytest.raises(ImageDecodeError, match="no data"):
        decode_compressed(b"", "jpeg")


# -- preprocessing ----------------------------------------------------------------------------
def test_resize_and_intrinsics_scaling():
    bgr = np.zeros((90, 160, 3), np.uint8)
    bgr[..., 0] = 255  # blue in BGR
    out = resize_to_rgb(bgr, "bgr8", (64, 96))
    assert out.shape == (64, 96, 3) and out.flags.c_contiguous
    assert np.all(out[..., 2] == 255) and np.all(out[..., 0] == 0)
    cams = cameras_for_input(rig_cameras(1600, 900), (64, 96))
    assert all((c.width, c.height) == (96, 64) for c in cams)
    assert cams[0].K[0, 0] == pytest.approx(1266.4 * 96 / 1600)
    x = images_to_input([out] * 6)
    assert x.shape == (1, 6, 3, 64, 96) and x.dtype == np.float32 and x.max() == 1.0


def test_sampling_cache_recomputes_only_on_calibration_change():
    grid = VoxelGrid((-8, 8), (-8, 8), (-2, 2), (8, 8, 2))
    cache = SamplingCache(grid, (8, 12), (64, 96))
    cams = rig_cameras(96, 64)
    g1, m1 = cache.get(cams)
    g2, _ = cache.get(rig_cameras(96, 64))  # equal calibration, new objects
    assert cache.computations == 1 and g1 is g2
    assert g1.shape == (1, 6, 128, 2) and m1.shape == (1, 6, 128) and m1.sum() > 0
    moved = rig_cameras(96, 64)
    moved[2].cam_to_ego[0, 3] += 0.05
    cache.get(moved)
    assert cache.computations == 2
    k = rig_cameras(96, 64)
    k[0].K[0, 0] *= 1.01
    cache.get(k)
    assert cache.computations == 3


# -- matching ---------------------------------------------------------------------------------
NAMES = ["a", "b", "c"]


def _feed(matcher, stamps_by_cam):
    out = []
    for cam, stamp in stamps_by_cam:
        s = matcher.add(Frame(cam, stamp, payload=(cam, stamp)))
        if s is not None:
            out.append(s)
    return out


def test_matcher_emits_complete_sets_within_tolerance():
    m = CameraSetMatcher(NAMES, max_time_diff=0.02)
    sets = _feed(m, [("a", 1.000), ("b", 1.005), ("c", 1.010)])
    assert len(sets) == 1
    assert [f.camera for f in sets[0].frames] == NAMES
    assert sets[0].stamp == 1.010 and sets[0].spread == pytest.approx(0.010)
    # Stamps too far apart never form a set.
    assert _feed(m, [("a", 2.0), ("b", 2.0), ("c", 2.5)]) == []


def test_matcher_prefers_newest_and_counts_drops():
    m = CameraSetMatcher(NAMES, max_time_diff=0.01)
    sets = _feed(m, [("a", 1.0), ("a", 2.0), ("b", 1.0), ("b", 2.0), ("c", 2.0)])
    assert len(sets) == 1 and sets[0].stamp == 2.0
    assert m.stats.frames_dropped == 2  # the 1.0 frames of a and b can no longer be used
    # A late frame (older than the set) is dropped on arrival.
    assert _feed(m, [("c", 1.0)]) == [] and m.stats.late_frames == 1


def test_matcher_staleness_and_validation():
    m = CameraSetMatcher(NAMES, 0.01)
    m.add(Frame("a", 1.0, None, received=100.0))
    st = m.staleness(now=102.5)
    assert st["a"] == pytest.approx(2.5) and st["b"] == float("inf")
    with pytest.raises(ValueError, match="unknown camera"):
        m.add(Frame("zzz", 1.0, None))
    with pytest.raises(ValueError):
        CameraSetMatcher([], 0.1)


def test_latest_slot_keeps_newest_and_counts():
    slot = LatestSlot()
    assert slot.put(1) is False and slot.put(2) is True and slot.put(3) is True
    assert slot.dropped == 2 and slot.get(0.1) == 3 and slot.get(0.05) is None
    slot.close()
    assert slot.get(5.0) is None  # returns at once after close


# -- message field arrays ---------------------------------------------------------------------
def test_cloud_array_matches_per_voxel_loop_and_fields():
    rng = np.random.default_rng(0)
    c = rng.normal(size=(50, 3)).astype(np.float32)
    v = rng.random(50).astype(np.float32)
    lab = rng.integers(0, 16, 50)
    arr = messages.cloud_array(c, v, labels=lab)
    assert arr.dtype.itemsize == 18
    assert arr.tobytes() == messages.cloud_bytes_loop(c, v, lab)
    assert messages.point_fields(arr.dtype) == [
        ("x", 0, 7),
        ("y", 4, 7),
        ("z", 8, 7),
        ("occupancy", 12, 7),
        ("label", 16, 4),
    ]
    heat = messages.cloud_array(c, v, extra="score")
    assert heat.dtype.names == ("x", "y", "z", "score") and heat.dtype.itemsize == 16


def test_colours_vectorised_equal_loop():
    z = np.linspace(-3, 5, 40)
    vec = messages.height_colors(z, (-2.0, 4.4))
    loop = np.array(messages.height_colors_loop(z, (-2.0, 4.4)), dtype=np.float32)
    np.testing.assert_allclose(vec, loop, atol=1e-6)
    assert not np.allclose(vec[0], vec[-1])  # low and high differ
    cls = messages.class_colors(np.array([0, 3, 99]))
    np.testing.assert_allclose(cls[1, :3], messages.CLASS_PALETTE[3])
    assert np.allclose(cls[2, :3], 0.5)
    pts, cols = messages.marker_arrays(np.zeros((4, 3), np.float32), vec[:4])
    assert pts.dtype == np.float64 and cols.dtype == np.float32 and pts.flags.c_contiguous


# -- inference and queries ----------------------------------------------------------------------
@pytest.fixture(scope="module")
def runtime(tmp_path_factory):
    from pop3d_ros.export.runtime import load_runtime

    ckpt = write_tiny_checkpoint(tmp_path_factory.mktemp("m") / "model.pt", occupancy_bias=2.0)
    return load_runtime(ckpt, backend="torch", log=lambda _s: None)


def test_pipeline_infer_and_query(runtime):
    text = SyntheticTextSpace(dim=64)
    pipe = OccupancyPipeline(runtime, text, PipelineConfig(occupancy_threshold=0.5))
    early = pipe.query("car")
    assert not early.success and "no occupancy yet" in early.message
    cams = rig_cameras(96, 64)
    res = pipe.infer(random_images(6, 64, 96), cams, stamp=12.5)
    assert res.count > 0 and res.stamp == 12.5
    assert res.centres.shape == (res.count, 3) and res.language_features.shape == (res.count, 64)
    np.testing.assert_allclose(np.linalg.norm(res.language_features, axis=1), 1.0, atol=1e-5)
    grid = runtime.config.voxel_grid
    np.testing.assert_allclose(res.centres, grid.index_to_center(res.indices), atol=1e-5)
    assert np.all(res.probabilities >= 0.5)
    assert pipe.sampling.computations == 1

    q = pipe.query("a car", top_k=7)
    assert q.success and q.message == "" and not q.cached
    assert q.scores.shape == (res.count,) and len(q.top) == 7
    assert np.all(np.diff(q.scores[q.top]) <= 0)  # best first
    assert q.scores[q.top[0]] == pytest.approx(q.scores.max())
    assert pipe.query("a car", top_k=0).cached and len(pipe.query("a car").top) == 10

    for bad in ("", "   \n\t"):
        r = pipe.query(bad)
        assert not r.success and "empty query" in r.message
    r = pipe.query("qwertyuiop zxcv")  # no word of the closed synthetic space
    assert not r.success and "cannot encode" in r.message
    long = pipe.query("car " * 25000)  # 100 000 characters
    assert long.success and "truncated" in long.message

    pipe.infer(random_images(6, 64, 96, seed=1), cams, stamp=13.0)
    assert pipe.sampling.computations == 1 and pipe.query("car").stamp == 13.0
    # A higher threshold keeps fewer voxels.
    strict = OccupancyPipeline(runtime, text, PipelineConfig(occupancy_threshold=0.99))
    assert strict.infer(random_images(6, 64, 96), cams, 1.0).count < res.count
    with pytest.raises(ValueError, match="need 6 images"):
        pipe.infer(random_images(5, 64, 96), cams, 1.0)


def test_pipeline_vocabulary_labels(runtime):
    vocab = ("car", "tree", "road")
    pipe = OccupancyPipeline(runtime, SyntheticTextSpace(dim=64), PipelineConfig(vocabulary=vocab))
    res = pipe.infer(random_images(6, 64, 96), rig_cameras(96, 64), 1.0)
    assert res.labels.shape == (res.count,) and set(res.labels.tolist()) <= {0, 1, 2}
    # Labels are the argmax of the similarity to each class prompt.
    emb = SyntheticTextSpace(dim=64).encode(list(vocab))
    expect = np.argmax(res.language_features @ emb.T, axis=1)
    np.testing.assert_array_equal(res.labels, expect)


def test_prepare_query_text():
    assert prepare_query_text("  a   red\tcar ", 77, 1000) == ("a red car", "")
    text, note = prepare_query_text("w " * 200, 77, 1000)
    assert len(text.split()) == 75 and "75 words" in note
    text, note = prepare_query_text("x" * 100000, 77, 1000)
    assert len(text) == 1000 and "characters" in note
    assert prepare_query_text("car\x00\x07\ufffd", 77, 100)[0] == "car \ufffd"
    with pytest.raises(TextEncodingError):
        prepare_query_text("\x00\x01", 77, 100)
    with pytest.raises(ValueError, match="occupancy_threshold"):
        PipelineConfig(occupancy_threshold=1.5)


class _CountingHead:
    """The runtime's language head with a count of its calls (the real backend runs)."""

    def __init__(self, head):
        self.head, self.calls = head, 0

    def infer(self, feed):
        self.calls += 1
        return self.head.infer(feed)

    def __getattr__(self, name):
        return getattr(self.head, name)


def test_language_head_runs_once_per_frame_on_demand(runtime):
    """No vocabulary and no hook: infer leaves the language head alone (stage time 0), the
    frame's first query runs it once, later queries reuse it; the next frame starts over.
    A vocabulary or a hook that asks for the frame runs it during infer."""
    text = SyntheticTextSpace(dim=64)
    pipe = OccupancyPipeline(runtime, text)
    counting = _CountingHead(runtime.language_head)
    pipe.runtime = type("R", (), {"encoder": runtime.encoder, "language_head": counting,
                                  "config": runtime.config})()  # fmt: skip
    cams = rig_cameras(96, 64)
    res = pipe.infer(random_images(6, 64, 96), cams, stamp=1.0)
    assert res.count > 0 and counting.calls == 0 and not res.language.computed
    assert res.timings_ms["language_head"] == 0.0 and not pipe.needs_language(res)
    first = pipe.query("car")
    assert first.success and counting.calls == 1 and first.language_head_ms > 0
    assert pipe.query("tree").success and counting.calls == 1
    assert pipe.query("tree").language_head_ms == 0.0
    np.testing.assert_allclose(np.linalg.norm(res.language_features, axis=1), 1.0, atol=1e-5)
    pipe.infer(random_images(6, 64, 96, seed=2), cams, stamp=2.0)
    assert counting.calls == 1
    assert pipe.query("car").success and counting.calls == 2

    seen = []
    pipe.language_hooks.append(lambda r: seen.append(r.stamp) or r.stamp >= 4.0)
    pipe.infer(random_images(6, 64, 96), cams, stamp=3.0)  # the hook does not need this one
    assert counting.calls == 2 and seen == [3.0]
    res = pipe.infer(random_images(6, 64, 96), cams, stamp=4.0)
    assert counting.calls == 3 and res.language.computed and res.timings_ms["language_head"] > 0
    pipe.language_hooks.clear()
    pipe.reconfigure(0.5, ["car", "road"])
    res = pipe.infer(random_images(6, 64, 96), cams, stamp=5.0)
    assert counting.calls == 4 and res.labels.shape == (res.count,)
    with pytest.raises(ValueError, match="occupancy_threshold"):
        pipe.reconfigure(1.5, ["car"])
    assert pipe.config.occupancy_threshold == 0.5 and pipe.config.vocabulary == ("car", "road")
