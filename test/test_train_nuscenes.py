"""End to end on a tiny nuScenes-format fixture: MaskCLIP teacher cache -> train -> eval."""

import json

import pytest

from pop3d_ros.cli import main
from pop3d_ros.data.nuscenes_fixture import write_nuscenes_fixture


@pytest.fixture(scope="module")
def nus(tmp_path_factory):
    root = tmp_path_factory.mktemp("nus")
    info = write_nuscenes_fixture(root / "data", scenes=2, samples_per_scene=2)
    (root / "train.txt").write_text(info["scenes"][0] + "\n")
    (root / "val.txt").write_text(info["scenes"][1] + "\n")
    (root / "all.txt").write_text("\n".join(info["scenes"]) + "\n")
    return root


@pytest.mark.slow
def test_teacher_cache_train_eval_on_nuscenes_fixture(nus):
    data, cache = str(nus / "data"), str(nus / "cache")
    assert (
        main(
            [
                "teacher-cache",
                "--data",
                "nuscenes",
                "--root",
                data,
                "--split",
                str(nus / "all.txt"),
                "--model",
                "ViT-B-32",
                "--out",
                cache,
            ]
        )
        == 0
    )
    assert len(list((nus / "cache" / "features").glob("*.npy"))) == 4
    out = nus / "run"
    assert (
        main(
            [
                "train",
                "--data",
                "nuscenes",
                "--root",
                data,
                "--split",
                str(nus / "train.txt"),
                "--teacher.cache",
                cache,
                "--steps",
                "1",
                "--warmup-steps",
                "1",
                "--eval-every",
                "1",
                "--eval.held_out_split",
                str(nus / "val.txt"),
                "--out",
                str(out),
            ]
        )
        == 0
    )
    from pop3d_ros.model.checkpoint import read_checkpoint

    # The periodic evaluation ran on the val frames, with the cache's teacher as baseline.
    meta = read_checkpoint(out / "model.pt")["meta"]
    assert meta["teacher"]["variant"] == "maskclip"  # the official MaskCLIP path by default
    assert meta["eval_volume"] == "pop3d-nuscenes"  # POP-3D's LiDAR-frame volume
    periodic = meta["eval"]
    assert periodic["step"] == 1 and {"iou", "lidar_miou", "teacher_lidar_miou"} <= set(periodic)
    ev = nus / "eval.json"
    assert (
        main(
            [
                "eval",
                "--checkpoint",
                str(out / "model.pt"),
                "--data",
                "nuscenes",
                "--root",
                data,
                "--split",
                str(nus / "val.txt"),
                "--teacher-cache",
                cache,
                "--max-frames",
                "1",
                "--out",
                str(ev),
            ]
        )
        == 0
    )
    res = json.loads(ev.read_text())
    assert res["frames"] == 1 and res["text_space"].startswith("open_clip")
    assert res["conventions"]["volume"]["name"] == "pop3d-nuscenes"
    assert res["conventions"]["volume"]["frame"] == "lidar"
    keys = ("iou", "iou_mean_empty_occupied", "miou", "lidar_miou", "teacher_lidar_miou")
    for key in (*keys, "prior_iou", "per_class"):
        assert key in res
