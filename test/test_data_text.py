"""Synthetic text space and synthetic dense teacher."""

from dataclasses import replace

import numpy as np
import pytest

from pop3d_ros.data.classes import CLASS_ID, CLASS_NAMES, IGNORE
from pop3d_ros.data.synthetic_teacher import SyntheticTeacher, TeacherConfig
from pop3d_ros.text.base import TextEncoder, TextEncodingError
from pop3d_ros.text.synthetic_text import VOCABULARY, SyntheticTextSpace


def test_space_implements_text_encoder_and_is_seeded():
    space = SyntheticTextSpace(seed=0)
    assert isinstance(space, TextEncoder)
    assert space.space_id == "synthetic:v2:seed=0:dim=512"
    assert SyntheticTextSpace(seed=0, version=1).space_id == "synthetic:v1:seed=0:dim=512"
    assert space.embed_dim == 512 and space.context_length == 77
    a = space.encode(["car", "bus"])
    assert a.shape == (2, 512) and a.dtype == np.float32
    np.testing.assert_allclose(np.linalg.norm(a, axis=1), 1.0, atol=1e-5)
    np.testing.assert_array_equal(a, SyntheticTextSpace(seed=0).encode(["car", "bus"]))
    b = SyntheticTextSpace(seed=1).encode(["car", "bus"])
    assert np.abs(a - b).max() > 0.1


def test_classes_near_orthogonal_synonyms_close_templates_work():
    space = SyntheticTextSpace(seed=3, dim=256)
    emb = space.class_embeddings()
    cos = emb @ emb.T
    off = cos[~np.eye(len(CLASS_NAMES), dtype=bool)]
    assert np.abs(off).max() < 0.35
    car, auto, photo = space.encode(["car", "automobile", "a photo of a car."])
    assert car @ auto > 0.9
    np.testing.assert_allclose(photo, car, atol=1e-6)
    # plurals, multi-word phrases, and no spurious "man" inside "manmade"
    assert space.classes_of("two buses and some trees") == ["bus", "vegetation"]
    assert space.classes_of("a traffic cone") == ["traffic_cone"]
    assert space.classes_of("manmade structure") == ["manmade", "manmade"]
    assert space.classes_of("People walking") == ["pedestrian"]
    # every vocabulary phrase is the most similar to its own class
    for name, phrases in VOCABULARY.items():
        e = space.encode(list(phrases))
        assert (np.argmax(e @ emb.T, axis=1) == CLASS_ID[name]).all(), name
    mixed = space.encode(["a car next to a bus"])[0]
    assert mixed @ emb[CLASS_ID["car"]] > 0.6 and mixed @ emb[CLASS_ID["bus"]] > 0.6


@pytest.mark.parametrize("bad", ["", "   ", "a unicorn", "a photo of a spaceship"])
def test_unknown_or_empty_text_raises(bad):
    with pytest.raises(TextEncodingError):
        SyntheticTextSpace().encode([bad])


def test_v1_knows_classes_only_and_v2_knows_long_tail_concepts():
    with pytest.raises(TextEncodingError, match="vocabulary"):
        SyntheticTextSpace(version=1).encode(["stairs"])
    space = SyntheticTextSpace(seed=2, dim=128)
    assert space.concepts_of("the stairs") == ["stairs"]
    assert space.classes_of("the stairs") == ["manmade"]
    # longest match: the concept, not the class word inside it
    assert space.concepts_of("a fire truck by the street lamp") == ["fire_truck", "street_lamp"]
    assert space.concepts_of("two bike racks on the pedestrian crossing") == [
        "bike_rack", "crosswalk"]  # fmt: skip
    with pytest.raises(ValueError, match="version"):
        SyntheticTextSpace(version=3)
    # v2 extends v1: classes and their synonyms keep their v1 vectors
    v1 = SyntheticTextSpace(seed=2, dim=128, version=1)
    np.testing.assert_array_equal(space.class_embeddings(), v1.class_embeddings())
    phrases = [p for ps in VOCABULARY.values() for p in ps] + ["sky"]
    np.testing.assert_array_equal(space.encode(phrases), v1.encode(phrases))


def test_v2_is_structured_child_near_parent_siblings_near_each_other():
    space = SyntheticTextSpace(seed=1, dim=512)
    names = ("building", "stairs", "bench", "car", "ambulance", "taxi", "tree", "pine tree")
    emb = {n: space.encode([n])[0] for n in names}
    cos = lambda a, b: float(emb[a] @ emb[b])  # noqa: E731
    # child = normalise(parent + 0.8 own): cos(child, parent) = 1 / sqrt(1 + 0.64) = 0.78
    assert abs(cos("stairs", "building") - 0.78) < 0.1
    assert abs(cos("ambulance", "car") - 0.78) < 0.1
    # siblings: 1 / 1.64 = 0.61; unrelated concepts: ~0 (random directions in 512-d)
    assert 0.45 < cos("stairs", "bench") < 0.75 and 0.45 < cos("ambulance", "taxi") < 0.75
    for a, b in (("stairs", "ambulance"), ("stairs", "car"), ("taxi", "pine tree")):
        assert abs(cos(a, b)) < 0.2, (a, b)
    # every concept's phrases (2+ synonyms each) are nearest to that concept, then its parent
    classes = space.class_embeddings()
    for name, phrases in space.concepts.items():
        assert len(phrases) >= 2, name
        e = space.encode(list(phrases))
        own = space.embedding(name)
        assert np.all(e @ own > 0.9), name
        parent = list(VOCABULARY).index(space.parent_of(name))
        assert np.all(np.argmax(e @ classes.T, axis=1) == parent), name


def test_description_round_trip():
    for version in (1, 2):
        space = SyntheticTextSpace(seed=5, dim=64, version=version)
        again = SyntheticTextSpace.from_description(space.describe())
        assert again.space_id == space.space_id
        np.testing.assert_array_equal(again.encode(["road"]), space.encode(["road"]))
    old = {"kind": "synthetic", "seed": 0, "dim": 512}  # a description without a version
    assert SyntheticTextSpace.from_description(old).space_id == "synthetic:v1:seed=0:dim=512"


def _semantic():
    sem = np.full((6, 40, 70), CLASS_ID["driveable_surface"], dtype=np.uint8)
    sem[:, :10] = IGNORE  # sky in the first patch row
    sem[0, 16:32, 16:32] = CLASS_ID["car"]
    sem[1, 16:32, 0:16] = CLASS_ID["pedestrian"]
    return sem


def test_teacher_clean_features_are_class_embeddings():
    space = SyntheticTextSpace(seed=0, dim=64)
    teacher = SyntheticTeacher(space, TeacherConfig(noise_std=0.0, confusion_prob=0.0))
    out = teacher(_semantic(), token="t")
    f = out["features"]
    assert f.shape == (6, 64, 3, 5)  # ceil(40/16), ceil(70/16)
    emb = space.class_embeddings()
    np.testing.assert_allclose(f[0, :, 1, 1], emb[CLASS_ID["car"]], atol=1e-6)
    np.testing.assert_allclose(f[1, :, 1, 0], emb[CLASS_ID["pedestrian"]], atol=1e-6)
    np.testing.assert_allclose(f[2, :, 1, 3], emb[CLASS_ID["driveable_surface"]], atol=1e-6)
    assert np.all(f[:, :, 0] == 0)  # sky patches are zero
    assert out["patch_classes"][0, 0, 0] == IGNORE
    assert out["patch_classes"][0, 1, 1] == CLASS_ID["car"]


def test_teacher_average_mode_mixes_by_area():
    space = SyntheticTextSpace(seed=0, dim=64)
    cfg = TeacherConfig(mode="average", noise_std=0.0, confusion_prob=0.0)
    sem = np.full((6, 16, 16), CLASS_ID["car"], dtype=np.uint8)
    sem[:, :, :4] = CLASS_ID["truck"]
    f = SyntheticTeacher(space, cfg)(sem, token="x")["features"][0, :, 0, 0]
    emb = space.class_embeddings()
    np.testing.assert_allclose(f, 0.75 * emb[CLASS_ID["car"]] + 0.25 * emb[CLASS_ID["truck"]],
                               atol=1e-6)  # fmt: skip


def test_teacher_noise_and_confusion_deterministic():
    space = SyntheticTextSpace(seed=0, dim=64)
    cfg = TeacherConfig(noise_std=0.3, confusion_prob=0.5, seed=7, dtype="float16")
    sem = np.full((6, 160, 160), CLASS_ID["car"], dtype=np.uint8)
    a = SyntheticTeacher(space, cfg)(sem, token="frame1")
    b = SyntheticTeacher(space, cfg)(sem, token="frame1")
    c = SyntheticTeacher(space, cfg)(sem, token="frame2")
    assert a["features"].dtype == np.float16
    np.testing.assert_array_equal(a["features"], b["features"])
    assert not np.array_equal(a["features"], c["features"])
    frac_truck = (a["patch_classes"] == CLASS_ID["truck"]).mean()
    assert 0.4 < frac_truck < 0.6  # car's only confusable class is truck
    assert set(np.unique(a["patch_classes"])) <= {CLASS_ID["car"], CLASS_ID["truck"]}
    # noise: the features are near, not equal to, the class vectors
    emb = space.class_embeddings()
    f = a["features"].astype(np.float32).transpose(0, 2, 3, 1).reshape(-1, 64)
    f /= np.linalg.norm(f, axis=1, keepdims=True)
    best = np.max(f @ emb.T, axis=1)
    assert 0.8 < best.mean() < 0.99


def test_teacher_context_confusion_draws_from_the_same_image():
    space = SyntheticTextSpace(seed=0, dim=64)
    sem = np.full((2, 160, 160), CLASS_ID["driveable_surface"], dtype=np.uint8)
    sem[:, :16] = IGNORE  # one sky patch row
    sem[0, 16:64] = CLASS_ID["manmade"]  # camera 0: 3 of 9 non-sky rows are buildings
    sem[1, 16:32, :16] = CLASS_ID["pedestrian"]  # camera 1: one pedestrian patch of 90
    cfg = TeacherConfig(noise_std=0.0, confusion="context", confusion_prob=1.0, seed=3)
    out = SyntheticTeacher(space, cfg)(sem, token="ctx")["patch_classes"]
    assert np.all(out[:, 0] == IGNORE)  # sky is never relabelled, nor drawn from
    road, man, ped = (CLASS_ID[n] for n in ("driveable_surface", "manmade", "pedestrian"))
    # Every patch takes a class of its own image, in proportion to that class's area.
    assert set(np.unique(out[0, 1:])) == {road, man}
    assert 0.2 < (out[0, 1:] == man).mean() < 0.47  # 1/3 expected over 90 patches
    assert set(np.unique(out[1, 1:])) <= {road, ped} and (out[1, 1:] == ped).sum() < 6
    none = TeacherConfig(noise_std=0.0, confusion="context", confusion_prob=0.0)
    clean = SyntheticTeacher(space, none)(sem, token="ctx")["patch_classes"]
    assert clean[1, 1, 0] == ped and np.all(clean[0, 1:4] == man)


def test_teacher_profiles_are_valid_and_differ():
    from pop3d_ros.data.synthetic_teacher import TEACHER_PROFILES

    assert TEACHER_PROFILES["near-gt"] == TeacherConfig()
    weak = TEACHER_PROFILES["maskclip-like"]
    assert weak.confusion == "context" and weak.confusion_prob > 0.5
    for cfg in TEACHER_PROFILES.values():
        SyntheticTeacher(config=cfg)  # validates


def test_teacher_rejects_bad_config():
    with pytest.raises(ValueError, match="mode"):
        SyntheticTeacher(config=TeacherConfig(mode="median"))
    with pytest.raises(ValueError, match="confusion"):
        SyntheticTeacher(config=TeacherConfig(confusion="random"))


@pytest.mark.parametrize("confusion", ["context", "lookalike"])
def test_teacher_expected_is_the_mean_over_its_random_draws(confusion):
    space = SyntheticTextSpace(seed=0, dim=64)
    sem = _semantic()
    sem[2, 10:] = CLASS_ID["manmade"]  # camera 2 sees another class mix
    cfg = TeacherConfig(noise_std=0.3, confusion=confusion, confusion_prob=0.6)
    expected = SyntheticTeacher(space, cfg).expected(sem)
    draws = [SyntheticTeacher(space, replace(cfg, seed=s))(sem, token="t") for s in range(2000)]
    draws = np.mean([d["features"] for d in draws], axis=0)
    assert expected.shape == draws.shape == (6, 64, 3, 5)
    clean = SyntheticTeacher(space, replace(cfg, noise_std=0.0, confusion_prob=0.0))
    clean = clean(sem, token="t")["features"]
    sky = np.linalg.norm(clean, axis=1) == 0  # the first row, and the mostly padded column
    assert sky.sum() == 6 * (5 + 2) and np.all(expected.transpose(0, 2, 3, 1)[sky] == 0)
    err = np.linalg.norm(draws - expected, axis=1)[~sky]
    assert err.max() < 0.1 * np.linalg.norm(expected, axis=1)[~sky].min()
    # ...and it is not just the clean features: confusion moved it off the class vectors.
    assert np.linalg.norm(expected - clean, axis=1)[~sky].max() > 0.3


def test_teacher_expected_without_randomness_is_the_features():
    space = SyntheticTextSpace(seed=0, dim=64)
    cfg = TeacherConfig(noise_std=0.0, confusion="context", confusion_prob=0.0)
    teacher = SyntheticTeacher(space, cfg)
    np.testing.assert_allclose(
        teacher.expected(_semantic()), teacher(_semantic(), token="t")["features"], atol=1e-6
    )
    with pytest.raises(ValueError, match="majority"):
        SyntheticTeacher(space, TeacherConfig(mode="average")).expected(_semantic())


def test_teacher_sees_concepts_and_confuses_siblings():
    from pop3d_ros.data.concepts import CONCEPT_ID, PARENT

    space = SyntheticTextSpace(seed=0, dim=64)
    con = np.full((6, 160, 160), CONCEPT_ID["stairs"], dtype=np.uint8)
    clean = SyntheticTeacher(space, TeacherConfig(noise_std=0.0, confusion_prob=0.0))
    out = clean({"concept": con, "semantic": np.zeros_like(con), "token": "s"})
    np.testing.assert_allclose(out["features"][0, :, 0, 0], space.embedding("stairs"), atol=1e-6)
    assert np.all(out["patch_concepts"] == CONCEPT_ID["stairs"])
    assert np.all(out["patch_classes"] == CLASS_ID["manmade"])
    # look-alike confusion of a long-tail concept: its siblings or its parent class only
    cfg = TeacherConfig(noise_std=0.0, confusion_prob=1.0, seed=1)
    got = set(np.unique(SyntheticTeacher(space, cfg)(con, token="s")["patch_concepts"]))
    siblings = {CONCEPT_ID[n] for n, p in PARENT.items() if p == "manmade" and n != "stairs"}
    assert got <= siblings | {CLASS_ID["manmade"]} and len(got) > 3
    # a v1 space cannot tell stairs from buildings: the teacher gives the parent's vector
    v1 = SyntheticTextSpace(seed=0, dim=64, version=1)
    f = SyntheticTeacher(v1, TeacherConfig(noise_std=0.0, confusion_prob=0.0))(con, token="s")
    np.testing.assert_allclose(f["features"][0, :, 0, 0],
                               v1.class_embeddings()[CLASS_ID["manmade"]], atol=1e-6)  # fmt: skip
