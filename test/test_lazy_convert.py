"""Lazy image conversion: a message is kept as a zero-copy view (or compressed bytes) with cheap
checks on arrival, and decoded/resized only when its set runs."""

import cv2
import numpy as np
import pytest

from pop3d_ros.geometry.camera import PinholeCamera
from pop3d_ros.pipeline.images import ImageDecodeError
from pop3d_ros.pipeline.preprocess import PendingImage, convert_set

HW = (36, 64)


def _image(h=90, w=160, seed=0):
    return np.random.default_rng(seed).integers(0, 256, (h, w, 3), dtype=np.uint8)


def _camera(i, frame_id, w, h):
    K = np.array([[w / 2, 0, w / 2], [0, w / 2, h / 2], [0, 0, 1]], float)
    return PinholeCamera(K, np.eye(4), w, h, frame_id).resized(HW[1], HW[0])


def test_raw_is_a_view_and_converts_like_an_eager_resize():
    img = _image()
    data = bytearray(img.tobytes())
    p = PendingImage.raw(data, 90, 160, 160 * 3, "bgr8", "cam_front_optical")
    assert np.shares_memory(p.view, np.frombuffer(data, np.uint8))  # no copy on arrival
    small, native = p.convert(HW)
    want = cv2.cvtColor(cv2.resize(img, (64, 36), interpolation=cv2.INTER_AREA), cv2.COLOR_BGR2RGB)
    assert native == (160, 90) and np.array_equal(small, want)


def test_cheap_checks_on_arrival_decode_errors_when_run():
    with pytest.raises(ImageDecodeError) as e:
        PendingImage.raw(b"\0" * 100, 90, 160, 480, "rgb8")
    assert e.value.reason == "short_data"
    with pytest.raises(ImageDecodeError) as e:
        PendingImage.compressed(b"abc", "tiff")
    assert e.value.reason == "unsupported_encoding"
    ok = cv2.imencode(".png", _image(seed=1))[1].tobytes()
    good = PendingImage.compressed(ok, "png", "f0")
    corrupt = PendingImage.compressed(b"not a jpeg at all", "jpeg", "f1")  # accepted on arrival
    images, cameras = convert_set([good], HW, _camera)
    assert images[0].shape == (*HW, 3) and cameras[0].name == "f0"
    with pytest.raises(ImageDecodeError) as e:
        convert_set([good, corrupt], HW, _camera)
    assert e.value.reason == "corrupt_compressed" and e.value.index == 1


def test_camera_gets_native_size_and_frame_id():
    seen = []

    def fn(i, frame_id, w, h):
        seen.append((i, frame_id, w, h))
        return _camera(i, frame_id, w, h)

    imgs = [_image(90, 160), _image(120, 200, 2)]
    pend = [
        PendingImage.raw(im.tobytes(), im.shape[0], im.shape[1], im.shape[1] * 3, "rgb8", f"c{i}")
        for i, im in enumerate(imgs)
    ]
    images, _ = convert_set(pend, HW, fn)
    assert seen == [(0, "c0", 160, 90), (1, "c1", 200, 120)]
    assert all(im.shape == (*HW, 3) for im in images)
