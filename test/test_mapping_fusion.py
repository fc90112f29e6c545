"""The map's fusion rules on hand-made frames: log-odds, lattice, visibility, language.

Expected values are worked out by hand in the comments (ln 4 = 1.386294, ln 9 = 2.197225,
ln(0.97 / 0.03) = 3.476099, ln(0.12 / 0.88) = -1.992430), not by the code under test.
"""

import numpy as np
import pytest
from mapping_fixtures import camera, frame, log_odds, unit_config

from pop3d_ros.geometry.camera import PinholeCamera
from pop3d_ros.geometry.grid import VoxelGrid
from pop3d_ros.geometry.transforms import OPTICAL_TO_BODY, make_transform, yaw_rotation
from pop3d_ros.mapping import OnlineMap
from pop3d_ros.mapping.visibility import RayVisibility, walk_rays

LN4, LN9 = 1.386294, 2.197225


def test_log_odds_fusion_adds_clips_and_clamps():
    grid = VoxelGrid((0, 2), (0, 1), (0, 1), (2, 1, 1))
    m = OnlineMap(unit_config())
    eye = np.eye(4)
    assert m.integrate(frame(grid, [0.8, 0.2]), eye, 1.0).accepted
    # logit(0.8) = ln 4, logit(0.2) = -ln 4
    np.testing.assert_allclose(log_odds(m, (0, 0, 0), (1, 0, 0)), [LN4, -LN4], atol=1e-5)
    m.integrate(frame(grid, [0.8, 0.5]), eye, 2.0)
    np.testing.assert_allclose(log_odds(m, (0, 0, 0), (1, 0, 0)), [2 * LN4, -LN4], atol=1e-5)
    # p = 0.999 is clipped to 0.97: 2.772589 + 3.476099 = 6.25 -> clamped to log_odds_max 3.5
    m.integrate(frame(grid, [0.999, 0.001]), eye, 3.0)
    # p = 0.001 is clipped to 0.12: -1.386294 - 1.992430 = -3.378724 -> clamped to -2
    np.testing.assert_allclose(log_odds(m, (0, 0, 0), (1, 0, 0)), [3.5, -2.0], atol=1e-5)
    # clamping lets the voxel change its mind: 3.5 - 1.992430 = 1.507570
    m.integrate(frame(grid, [0.0, 1.0]), eye, 4.0)
    np.testing.assert_allclose(log_odds(m, (0, 0, 0), (1, 0, 0)), [1.50757, 1.476099], atol=1e-5)
    assert m.stats()["occupied_voxels"] == 2


def test_free_evidence_is_weighted_by_range():
    grid = VoxelGrid((20, 22), (0, 1), (0, 1), (2, 1, 1))
    m = OnlineMap(unit_config(range_scale_m=10.0, range_free_only=True))
    # map voxels (20, 0, 0) and (21, 0, 0), centres (20.5, 0.5) and (21.5, 0.5): squared
    # distances 420.5 and 462.5 m^2 from the ego; weights 1 / (1 + 4.205) = 0.192123 and
    # 1 / (1 + 4.625) = 0.177778; occupied evidence keeps its full weight
    grid_frame = frame(grid, [0.2, 0.8])
    m.integrate(grid_frame, np.eye(4), 1.0)
    got = log_odds(m, (20, 0, 0), (21, 0, 0))
    np.testing.assert_allclose(got, [-0.192123 * LN4, LN4], atol=1e-5)
    both = OnlineMap(unit_config(range_scale_m=10.0, range_free_only=False))
    both.integrate(grid_frame, np.eye(4), 1.0)
    got = log_odds(both, (20, 0, 0), (21, 0, 0))
    np.testing.assert_allclose(got, [-0.192123 * LN4, 0.177778 * LN4], atol=1e-5)


def test_map_voxels_read_the_frame_voxel_holding_their_centre():
    grid = VoxelGrid((0, 2), (0, 1), (0, 1), (2, 1, 1))
    m = OnlineMap(unit_config())
    # base_link turned 90 degrees left, 10 m along x: grid voxel (1, 0, 0), centre
    # (1.5, 0.5, 0.5), lands at (10 - 0.5, 1.5, 0.5) -> map voxel (9, 1, 0); voxel (0, 0, 0),
    # centre (0.5, 0.5, 0.5), at (9.5, 0.5, 0.5) -> map voxel (9, 0, 0)
    pose = make_transform(yaw_rotation(np.pi / 2), [10.0, 0.0, 0.0])
    m.integrate(frame(grid, [0.2, 0.8]), pose, 1.0)
    np.testing.assert_allclose(log_odds(m, (9, 1, 0), (9, 0, 0)), [LN4, -LN4], atol=1e-5)
    assert m.stats()["observed_voxels"] == 2


def wall_grid():
    # 8 x 3 x 3 voxels of 1 m on the map's lattice: x in [0, 8), y and z in [0, 3)
    return VoxelGrid((0, 8), (0, 3), (0, 3), (8, 3, 3))


def test_visibility_rule_keeps_what_a_wall_hides():
    grid = wall_grid()
    cam = camera((0.5, 1.5, 1.5))
    prob = np.full(grid.shape, 0.2, np.float32)
    prob[4] = 0.9  # a wall filling the grid's section; its front face is the plane x = 4
    m = OnlineMap(
        unit_config(visibility="rays", ray_spacing_deg=2.0, occlusion="first", occlusion_limit=1)
    )
    m.integrate(frame(grid, prob, [cam]), np.eye(4), 1.0)
    # seen free in front of the wall (logit 0.2 = -ln 4), the wall seen (ln 9), behind unknown
    got = log_odds(m, (1, 1, 1), (3, 1, 1), (4, 1, 1), (4, 0, 2), (5, 1, 1), (7, 2, 0))
    np.testing.assert_allclose(got[:4], [-LN4, -LN4, LN9, LN9], atol=1e-5)
    assert got[4:] == [None, None]
    # the wall is gone: the voxels behind it are seen free now, the wall's voxel is lowered
    m.integrate(frame(grid, np.full(grid.shape, 0.2), [cam]), np.eye(4), 2.0)
    got = log_odds(m, (4, 1, 1), (5, 1, 1), (7, 1, 1))
    np.testing.assert_allclose(got, [LN9 - LN4, -LN4, -LN4], atol=1e-5)  # ln 2.25 = 0.81093


def test_occluded_voxels_keep_their_state():
    grid = wall_grid()
    cam = camera((0.5, 1.5, 1.5))
    m = OnlineMap(
        unit_config(visibility="rays", ray_spacing_deg=2.0, occlusion="first", occlusion_limit=1)
    )
    first = np.full(grid.shape, 0.2, np.float32)
    first[6, 1, 1] = 0.9  # a car, seen
    m.integrate(frame(grid, first, [cam]), np.eye(4), 1.0)
    assert log_odds(m, (6, 1, 1)) == pytest.approx([LN9], abs=1e-5)
    hidden = np.full(grid.shape, 0.1, np.float32)  # this frame thinks the car is gone...
    hidden[3] = 0.9  # ...but a truck in front hides it
    m.integrate(frame(grid, hidden, [cam]), np.eye(4), 2.0)
    assert log_odds(m, (6, 1, 1)) == pytest.approx([LN9], abs=1e-5)  # kept
    # without the rule (the naive map) the hidden car is erased: 2.197225 - 2 (clip 0.12)
    naive = OnlineMap(unit_config(visibility="all"))
    naive.integrate(frame(grid, first, [cam]), np.eye(4), 1.0)
    naive.integrate(frame(grid, hidden, [cam]), np.eye(4), 2.0)
    assert log_odds(naive, (6, 1, 1)) == pytest.approx([LN9 - 1.99243], abs=1e-5)


def test_occluded_voxels_take_occupied_evidence_only_when_asked():
    """occluded_evidence "occupied": a hidden voxel predicted occupied gains its evidence, a
    hidden voxel predicted free keeps its state (nothing out of sight is cleared)."""
    grid = wall_grid()
    cam = camera((0.5, 1.5, 1.5))
    cfg = dict(visibility="rays", ray_spacing_deg=2.0, occlusion="first", occlusion_limit=1)
    first = np.full(grid.shape, 0.2, np.float32)
    first[6, 1, 1] = 0.9  # a car, seen
    hidden = np.full(grid.shape, 0.1, np.float32)  # the next frame thinks the car is gone...
    hidden[3] = 0.9  # ...but a truck in front hides it...
    hidden[7, 1, 1] = 0.8  # ...and it guesses a post behind the truck (and behind the car)
    got = {}
    for mode in ("none", "occupied"):
        m = OnlineMap(unit_config(occluded_evidence=mode, **cfg))
        m.integrate(frame(grid, first, [cam]), np.eye(4), 1.0)
        m.integrate(frame(grid, hidden, [cam]), np.eye(4), 2.0)
        got[mode] = log_odds(m, (6, 1, 1), (7, 1, 1), (7, 1, 0))
    assert got["none"][0] == pytest.approx(LN9, abs=1e-5)  # kept
    assert got["none"][1] is None  # never seen
    assert got["none"][2] == pytest.approx(-LN4, abs=1e-5)  # seen free at first, then hidden
    assert got["occupied"][0] == pytest.approx(LN9, abs=1e-5)  # hidden, predicted free: kept
    assert got["occupied"][1] == pytest.approx(np.log(4.0), abs=1e-5)  # hidden post: logit 0.8
    assert got["occupied"][2] == pytest.approx(-LN4, abs=1e-5)  # hidden, predicted free: as was
    with pytest.raises(ValueError, match="occluded_evidence"):
        unit_config(occluded_evidence="free")


def test_a_wall_on_a_voxel_face_stops_the_ray_that_runs_along_it():
    # The camera sits on the plane z = 2, the face between layers 1 and 2. A ray along
    # that face belongs to the layer above it (floor), so a wall in the layer below is
    # grazed over, and a wall in both layers stops every ray.
    grid = wall_grid()
    cam = camera((0.5, 1.5, 2.0))
    low = np.full(grid.shape, 0.2, np.float32)
    low[4, 1, 1] = 0.9
    m = OnlineMap(
        unit_config(visibility="rays", ray_spacing_deg=2.0, occlusion="first", occlusion_limit=1)
    )
    m.integrate(frame(grid, low, [cam]), np.eye(4), 1.0)
    got = log_odds(m, (6, 1, 2), (6, 1, 1))
    assert got[0] == pytest.approx(-LN4, abs=1e-5) and got[1] is None
    both = low.copy()
    both[4, 1, 2] = 0.9
    m2 = OnlineMap(
        unit_config(visibility="rays", ray_spacing_deg=2.0, occlusion="first", occlusion_limit=1)
    )
    m2.integrate(frame(grid, both, [cam]), np.eye(4), 1.0)
    assert log_odds(m2, (6, 1, 2), (6, 1, 1), (4, 1, 2)) == [None, None, pytest.approx(LN9)]


def test_a_ray_through_a_corner_does_not_slip_between_diagonal_voxels():
    grid = VoxelGrid((0, 6), (0, 6), (0, 1), (6, 6, 1))
    origin = np.array([0.5, 0.5, 0.5])
    diag = np.array([[1.0, 1.0, 0.0]]) / np.sqrt(2)
    cells, starts, entry = walk_rays(origin, diag, grid)
    ij = np.stack(np.unravel_index(cells, grid.shape), 1)[:, :2]
    # 6-connected: every step changes one axis by one; on the exact tie x steps first
    assert (np.abs(np.diff(ij, axis=0)).sum(1) == 1).all()
    assert ij[:4].tolist() == [[0, 0], [1, 0], [1, 1], [2, 1]]
    assert entry[:3].tolist() == [0, 1, 1]  # START, then sideways (x or y) steps
    vis = RayVisibility(grid, [(origin, diag)])
    occ = np.zeros(grid.shape, bool)
    occ[1, 2, 0] = occ[2, 1, 0] = True  # a diagonal wall; the ray passes their shared corner
    seen = vis.visible(occ).reshape(grid.shape)[:, :, 0]
    assert seen[1, 1] and seen[2, 1] and not seen[2, 2] and not seen[4, 4]
    assert vis.visible(np.zeros(grid.shape, bool)).reshape(grid.shape)[4, 4, 0]


def test_voxels_outside_every_frustum_are_not_updated():
    grid = wall_grid()
    cam = camera((2.5, 1.5, 1.5))  # looks along +x from voxel (2, 1, 1)
    m = OnlineMap(
        unit_config(visibility="rays", ray_spacing_deg=2.0, occlusion="first", occlusion_limit=1)
    )
    m.integrate(frame(grid, np.full(grid.shape, 0.2), [cam]), np.eye(4), 1.0)
    assert log_odds(m, (0, 1, 1), (1, 1, 1)) == [None, None]  # behind the camera
    assert log_odds(m, (5, 1, 1)) == pytest.approx([-LN4], abs=1e-5)


def test_language_running_mean_is_confidence_weighted_and_capped():
    grid = VoxelGrid((0, 1), (0, 1), (0, 1), (1, 1, 1))
    m = OnlineMap(unit_config(feature_weight_max=1.0))
    e = np.eye(4, dtype=np.float32)
    m.integrate(frame(grid, [0.8], features={0: e[0]}), np.eye(4), 1.0)
    m.integrate(frame(grid, [0.6], features={0: e[1]}), np.eye(4), 2.0)
    # (0.8 e0 + 0.6 e1) / 1.4 = (0.571429, 0.428571, 0, 0); the weight is capped at 1.0
    rows = m.store.feature_row.reshape(-1)[m.store.find([[0, 0, 0]])]
    np.testing.assert_allclose(m.store.feature_values(rows)[0], [0.571429, 0.428571, 0, 0],
                               atol=3e-3)  # fmt: skip
    assert m.store.feature_weight[rows[0]] == pytest.approx(1.0)
    m.integrate(frame(grid, [0.5], features={0: e[2]}), np.eye(4), 3.0)
    # capped weight 1.0 vs 0.5: 2/3 of the mean, 1/3 of e2 = (0.380952, 0.285714, 0.333333, 0)
    np.testing.assert_allclose(m.store.feature_values(rows)[0],
                               [0.380952, 0.285714, 0.333333, 0], atol=3e-3)  # fmt: skip
    # seen free: log-odds 1.386294 + 0.405465 + 0 - 1.992430 = -0.200671 <= 0 -> no feature
    m.integrate(frame(grid, [0.1], features={}), np.eye(4), 4.0)
    assert m.num_features == 0 and m.store.feature_row.max() == -1


def test_language_every_k_frames():
    grid = VoxelGrid((0, 1), (0, 1), (0, 1), (1, 1, 1))
    m = OnlineMap(unit_config(language_every=2))
    e = np.eye(4, dtype=np.float32)
    for t, vec in enumerate([e[0], e[1], e[2]]):  # frames 0 and 2 fuse, frame 1 does not
        m.integrate(frame(grid, [0.8], features={0: vec}), np.eye(4), float(t))
    rows = m.store.feature_row.reshape(-1)[m.store.find([[0, 0, 0]])]
    np.testing.assert_allclose(m.store.feature_values(rows)[0], [0.5, 0, 0.5, 0], atol=3e-3)


def test_query_over_the_map_has_the_per_frame_semantics():
    grid = VoxelGrid((0, 4), (0, 1), (0, 1), (4, 1, 1))
    m = OnlineMap(unit_config())
    e = np.eye(4, dtype=np.float32)
    feats = {0: e[0], 1: e[0], 2: e[1], 3: (e[0] + e[1]) / np.sqrt(2)}
    m.integrate(frame(grid, [0.9, 0.9, 0.9, 0.9], features=feats), np.eye(4), 5.0)
    res = m.query(e[0] * 3.0, top_k=2, min_score=0.9)  # the embedding's norm does not matter
    assert res.success and res.stamp == 5.0
    order = np.argsort(res.centres[:, 0])
    np.testing.assert_allclose(res.scores[order], [1, 1, 0, 0.707107], atol=1e-2)
    assert sorted(res.centres[res.top][:, 0].tolist()) == [0.5, 1.5]
    # voxels 0 and 1 touch: one object, centred at x = 1.0, two voxels long
    assert len(res.objects) == 1 and res.objects[0].num_voxels == 2
    np.testing.assert_allclose(res.objects[0].center, [1.0, 0.5, 0.5], atol=1e-3)
    np.testing.assert_allclose(res.objects[0].size, [2.0, 1.0, 1.0], atol=1e-6)
    assert not m.query(np.ones(3), top_k=1).success  # another text space's width
    assert not OnlineMap(unit_config()).query(e[0]).success  # nothing mapped yet


def test_refused_sets_leave_the_map_untouched():
    grid = VoxelGrid((0, 2), (0, 1), (0, 1), (2, 1, 1))
    m = OnlineMap(unit_config())
    assert m.integrate(frame(grid, [0.8, 0.2]), np.eye(4), 10.0).accepted
    before = m.store.log_odds.copy()
    nan_pose = np.eye(4)
    nan_pose[0, 3] = np.nan
    jump = make_transform(None, [1000.0, 0.0, 0.0])
    bad_prob = np.array([0.5, np.nan])
    for pose, stamp, prob, why in [
        (nan_pose, 11.0, [0.9, 0.9], "NaN"),
        (jump, 10.5, [0.9, 0.9], "jumped"),
        (np.eye(4), 9.0, [0.9, 0.9], "older"),
        (np.eye(4), 11.0, bad_prob, "finite"),
    ]:
        report = m.integrate(frame(grid, prob), pose, stamp)
        assert not report.accepted and why in report.reason
    np.testing.assert_array_equal(m.store.log_odds, before)
    assert m.frames_integrated == 1


def test_surface_rule_runs_over_the_road_but_not_through_walls():
    # A road layer (z in [0, 1)) under free air; the camera 1.5 m above the road's top, looking
    # along +x and down. Rays land on the road from above far away at a shallow angle: the
    # first voxel they land on is seen under either rule, the next ones only under "surface".
    grid = VoxelGrid((0, 40), (0, 1), (0, 4), (40, 1, 4))
    cam = PinholeCamera(np.array([[10.0, 0, 10], [0, 10.0, 10], [0, 0, 1]]),
                        make_transform(OPTICAL_TO_BODY @ pitch_down(0.3), [0.5, 0.5, 2.5]),
                        21, 21)  # fmt: skip
    prob = np.full(grid.shape, 0.1, np.float32)
    prob[:, :, 0] = 0.9  # the road's layer
    vis = RayVisibility.for_cameras(grid, [cam], 1.0)
    occ = prob >= 0.5
    first = vis.visible(occ, "first", 1).reshape(grid.shape)
    surface = vis.visible(occ, "surface", 40).reshape(grid.shape)
    assert surface[:, 0, 0].sum() > first[:, 0, 0].sum() + 5
    assert (surface >= first).all()  # the surface rule sees at least what the first one does
    # a wall standing on the road at x = 20 (layers 1-3): met sideways, nothing behind it
    walled = occ.copy()
    walled[20, 0, 1:] = True
    seen = vis.visible(walled, "surface", 40).reshape(grid.shape)
    assert seen[20, 0, 1] and not seen[21:, 0, 1:].any()
    # nothing below the road is ever seen: a step down out of it stops the ray
    deep = VoxelGrid((0, 40), (0, 1), (-1, 4), (40, 1, 5))
    vis = RayVisibility.for_cameras(deep, [cam], 1.0)
    below = np.zeros(deep.shape, bool)
    below[:, :, 1] = True  # the road layer is now z index 1; z index 0 lies under it
    assert not vis.visible(below, "surface", 40).reshape(deep.shape)[:, :, 0].any()
    with pytest.raises(ValueError, match="rule"):
        vis.visible(below, "nearest", 1)


def pitch_down(angle):
    """Rotation about the optical x axis that turns the optical axis (z) towards +y (down in
    the image) by `angle`: cam_to_ego = OPTICAL_TO_BODY @ this looks down."""
    c, s = np.cos(angle), np.sin(angle)
    return np.array([[1.0, 0, 0], [0, c, s], [0, -s, c]])
