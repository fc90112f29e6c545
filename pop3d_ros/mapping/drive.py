"""Offline drives for the map: the node's inference path (a runtime behind
`OccupancyPipeline`) on synthetic frames, each frame a `FramePrediction` with its ego pose."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

import numpy as np

from pop3d_ros.geometry.camera import PinholeCamera
from pop3d_ros.mapping.frame import FramePrediction


@dataclass(frozen=True)
class DriveFrame:
    index: int  # frame of the drive
    sample: dict  # the synthetic sample (architecture.md sample format)
    prediction: FramePrediction
    pose: np.ndarray  # 4x4 base_link -> world (the map frame)
    stamp: float  # seconds


def sample_cameras(sample: dict) -> list[PinholeCamera]:
    """The sample's cameras at its image size."""
    h, w = sample["images"].shape[1:3]
    return [
        PinholeCamera(sample["intrinsics"][i], sample["cam_to_ego"][i], w, h, name)
        for i, name in enumerate(sample["camera_names"])
    ]


def predict_sample(pipeline, sample: dict) -> FramePrediction:
    """Run the pipeline on a sample as the node does (resize, infer); dense prediction."""
    from pop3d_ros.pipeline.preprocess import cameras_for_input, resize_to_rgb

    hw = pipeline.image_hw
    cams = cameras_for_input(sample_cameras(sample), hw)
    images = [resize_to_rgb(im, "rgb8", hw) for im in sample["images"]]
    result = pipeline.infer(images, cams, stamp=float(sample["timestamp"]) * 1e-6)
    return FramePrediction.from_result(result, pipeline.grid, cams)


def drive_frames(pipeline, world, frames: int | None = None) -> Iterator[DriveFrame]:
    """Frames 0..frames-1 (default: all) of a `SyntheticWorld`, predicted by `pipeline`."""
    for i in range(len(world) if frames is None else frames):
        sample = world.sample(i, occupancy=False)
        yield DriveFrame(
            index=i,
            sample=sample,
            prediction=predict_sample(pipeline, sample),
            pose=world.ego_to_world(i),
            stamp=float(sample["timestamp"]) * 1e-6,
        )


def load_pipeline(checkpoint, backend: str = "torch", threads: int = 1):
    """(OccupancyPipeline, text encoder) for a checkpoint, as the node builds them."""
    from pop3d_ros.export.runtime import load_runtime
    from pop3d_ros.pipeline.occupancy import OccupancyPipeline
    from pop3d_ros.text.factory import text_encoder_from_spec

    runtime = load_runtime(checkpoint, backend, log=lambda s: None, threads=threads)
    encoder = text_encoder_from_spec(runtime.text_space)
    return OccupancyPipeline(runtime, encoder), encoder
