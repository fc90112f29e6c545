"""Synthetic world v2: long-tail concepts, instance ids, moving agents, versioned caches."""

import json

import numpy as np
import pytest

from pop3d_ros.data.classes import CLASS_ID, CLASS_NAMES, EMPTY, IGNORE
from pop3d_ros.data.concepts import (
    CONCEPT_ID,
    CONCEPT_NAMES,
    LONG_TAIL_IDS,
    LONG_TAIL_NAMES,
    PARENT,
    concept_to_class,
)
from pop3d_ros.data.synthetic import SyntheticWorld, WorldConfig
from pop3d_ros.data.synthetic.config import WORLD_VERSION
from pop3d_ros.data.synthetic.scene import generate_scene
from pop3d_ros.text.synthetic_text import SyntheticTextSpace

SMALL = dict(num_frames=4, image_width=128, image_height=72, lidar_azimuths=540)


@pytest.fixture(scope="module")
def world():
    return SyntheticWorld(WorldConfig(seed=11, **SMALL))


@pytest.fixture(scope="module")
def samples(world):
    return [world.sample(0), world.sample(3)]


def test_concept_table_maps_every_long_tail_concept_to_its_parent_class():
    assert len(LONG_TAIL_NAMES) >= 20
    assert CONCEPT_NAMES[: len(CLASS_NAMES)] == CLASS_NAMES
    assert min(LONG_TAIL_IDS) == EMPTY + 1 and max(LONG_TAIL_IDS) < IGNORE
    for name in LONG_TAIL_NAMES:
        assert concept_to_class(CONCEPT_ID[name]) == CLASS_ID[PARENT[name]], name
    assert PARENT["stairs"] == "manmade" and PARENT["ambulance"] == "car"
    assert PARENT["crosswalk"] == "driveable_surface"
    np.testing.assert_array_equal(concept_to_class([EMPTY, IGNORE, 3]), [EMPTY, IGNORE, 3])
    # every concept is a phrase of the v2 text space, under the same parent
    space = SyntheticTextSpace()
    for name in LONG_TAIL_NAMES:
        assert space.parent_of(name) == PARENT[name]


def test_every_long_tail_concept_occurs_on_some_street():
    seen = set()
    for seed in range(4):
        scene = generate_scene(WorldConfig(seed=seed, num_frames=10))
        seen |= {int(c) for c in np.unique(scene.concept)}
        if len(scene.crosswalks):
            seen.add(CONCEPT_ID["crosswalk"])
        if len(scene.manholes):
            seen.add(CONCEPT_ID["manhole"])
        # an object's primitives share one concept and one class
        for inst in np.unique(scene.instance):
            m = scene.instance == inst
            assert len(np.unique(scene.concept[m])) == 1 and len(np.unique(scene.cls[m])) == 1
        assert np.all(concept_to_class(scene.concept) == scene.cls)
    assert seen >= set(LONG_TAIL_IDS)


def test_concepts_agree_with_classes_per_pixel_point_and_voxel(samples):
    for s in samples:
        assert s["world_version"] == WORLD_VERSION
        np.testing.assert_array_equal(concept_to_class(s["concept"]), s["semantic"])
        np.testing.assert_array_equal(concept_to_class(s["lidar_concepts"]), s["lidar_labels"])
        np.testing.assert_array_equal(concept_to_class(s["occupancy_concept"]), s["occupancy"])
        # long-tail concepts are visible in all three
        for key in ("concept", "lidar_concepts", "occupancy_concept"):
            assert np.isin(s[key], LONG_TAIL_IDS).any(), key


def test_instances_listed_with_their_points(samples):
    s = samples[0]
    ids = set(s["instance_ids"].tolist())
    hit = s["lidar_instances"][s["lidar_instances"] > 0]
    assert len(hit) > 1000 and set(np.unique(hit).tolist()) <= ids
    # the points of an instance have its concept and lie in (or on) its box
    for inst in np.unique(hit)[:40]:
        k = int(np.flatnonzero(s["instance_ids"] == inst)[0])
        pts = s["lidar_points"][s["lidar_instances"] == inst]
        assert np.all(s["lidar_concepts"][s["lidar_instances"] == inst]
                      == s["instance_concepts"][k])  # fmt: skip
        lo = s["instance_centers"][k] - s["instance_sizes"][k] / 2 - 1e-3
        hi = s["instance_centers"][k] + s["instance_sizes"][k] / 2 + 1e-3
        assert np.all((pts >= lo) & (pts <= hi)), CONCEPT_NAMES[s["instance_concepts"][k]]


def test_moving_agents_move_consistently_in_every_sensor(world, samples):
    scene = world.scene
    moving = np.linalg.norm(scene.velocity, axis=1) > 0
    kinds = {CLASS_NAMES[c] for c in np.unique(scene.cls[moving])}
    assert {"car", "pedestrian"} <= kinds and kinds & {"bicycle", "motorcycle"}
    a, b = samples
    t = 3 * world.config.frame_interval
    ego_a, ego_b = a["ego_to_world"].astype(np.float64), b["ego_to_world"].astype(np.float64)
    checked = 0
    for inst in set(a["lidar_instances"].tolist()) & set(b["lidar_instances"].tolist()):
        rows = np.flatnonzero(scene.instance == inst)
        if inst == 0 or not moving[rows].any():
            continue
        # the instance's box centre in the world moved by velocity * t between the frames
        ca = a["instance_centers"][a["instance_ids"] == inst][0].astype(np.float64)
        cb = b["instance_centers"][b["instance_ids"] == inst][0].astype(np.float64)
        wa = ego_a[:3, :3] @ ca + ego_a[:3, 3]
        wb = ego_b[:3, :3] @ cb + ego_b[:3, 3]
        np.testing.assert_allclose(wb[:2] - wa[:2], scene.velocity[rows[0]] * t, atol=0.05)
        checked += 1
    assert checked >= 2


def test_render_cache_refuses_another_world_version(tmp_path):
    from pop3d_ros.data.cli_render import render
    from pop3d_ros.data.dataset import SyntheticDataset, world_config_from_dict

    out = tmp_path / "r"
    index = render(out, [1], 1, width=64, height=36, progress=False)
    assert index["configs"]["1"]["world_version"] == WORLD_VERSION
    assert len(SyntheticDataset([1], root=out)) == 1
    old = json.loads((out / "index.json").read_text())
    del old["configs"]["1"]["world_version"]  # what a version-1 render recorded
    (out / "index.json").write_text(json.dumps(old))
    with pytest.raises(ValueError, match="world version"):
        SyntheticDataset([1], root=out)
    with pytest.raises(ValueError, match="world version"):
        render(out, [1], 1, width=64, height=36, progress=False)
    with pytest.raises(ValueError, match="version 1"):
        world_config_from_dict(old["configs"]["1"])
