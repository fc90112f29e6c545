"""Per-class procedural textures, simple sun shading, sky and haze.

Textures are functions of world (ground) or object-local (primitives) coordinates, so they
stay put across frames and move with moving objects. Each class has its own look (lane
markings on the road, tiles on the sidewalk, windows on buildings, ...) so that a camera
model can tell the classes apart by appearance.
"""

from __future__ import annotations

import numpy as np

from pop3d_ros.data.classes import CLASS_ID
from pop3d_ros.data.concepts import CONCEPT_ID

SUN = np.array([0.45, 0.3, 0.84]) / np.linalg.norm([0.45, 0.3, 0.84])
SKY_TOP = np.array([0.35, 0.55, 0.9])
SKY_HORIZON = np.array([0.8, 0.86, 0.93])
HAZE_DISTANCE = 160.0  # metres: contrast falls to 1/e


def hash01(*coords, seed: int = 0) -> np.ndarray:
    """Deterministic pseudo-random values in [0, 1) per integer lattice point."""
    h = np.full(np.shape(coords[0]), (seed * 0x9E3779B1 + 0x85EBCA6B) & 0xFFFFFFFF, np.uint64)
    for k, c in enumerate(coords):
        h ^= (np.asarray(c).astype(np.int64).astype(np.uint64) + np.uint64(k * 0x27D4EB2F)) * (
            np.uint64(0x9E3779B97F4A7C15)
        )
        h ^= h >> np.uint64(29)
        h *= np.uint64(0xBF58476D1CE4E5B9)
        h ^= h >> np.uint64(32)
    return (h >> np.uint64(40)).astype(np.float64) / float(1 << 24)


def noise2(x, y, scale: float, seed: int = 0) -> np.ndarray:
    """Blocky value noise in [0, 1) at cell size `scale` metres."""
    return hash01(np.floor(x / scale), np.floor(y / scale), seed=seed)


def sky_color(dirs: np.ndarray) -> np.ndarray:
    up = np.clip(dirs[..., 2:3], 0.0, 1.0) ** 0.6
    return SKY_HORIZON * (1 - up) + SKY_TOP * up


def ground_albedo(cls: np.ndarray, x: np.ndarray, y: np.ndarray, lanes: int,
                  concept: np.ndarray | None = None) -> np.ndarray:  # fmt: skip
    """RGB (M, 3) of ground points with world coordinates (x, y), ground class `cls` and
    ground concept `concept` (crosswalk stripes, manhole covers)."""
    out = np.zeros(cls.shape + (3,))
    n1 = noise2(x, y, 0.5, seed=1)
    n2 = noise2(x, y, 2.0, seed=2)
    road = cls == CLASS_ID["driveable_surface"]
    out[road] = (0.28 + 0.06 * n1[road] + 0.03 * n2[road])[:, None] * np.ones(3)
    ay = np.abs(y)
    lane_line = np.zeros_like(road)
    for k in range(lanes + 1):
        near = np.abs(ay - k * 3.3) < 0.08
        dashed = ((x % 6.0) < 3.0) | (k == lanes)
        lane_line |= near & (dashed if k > 0 else True)
    marks = road & lane_line
    out[marks] = np.where((ay[marks] < 0.1)[:, None], [0.85, 0.75, 0.2], [0.9, 0.9, 0.88])
    side = cls == CLASS_ID["sidewalk"]
    tile = ((x % 1.0) < 0.06) | ((y % 1.0) < 0.06)
    out[side] = (0.62 + 0.05 * n1[side] - 0.15 * tile[side])[:, None] * np.array([1, 0.98, 0.95])
    ter = cls == CLASS_ID["terrain"]
    mix = (0.6 * noise2(x, y, 0.35, seed=3) + 0.4 * n2)[ter][:, None]
    out[ter] = (1 - mix) * np.array([0.3, 0.48, 0.15]) + mix * np.array([0.48, 0.4, 0.22])
    flat = cls == CLASS_ID["other_flat"]
    stripe = (x % 2.6) < 0.12
    base = np.array([0.58, 0.42, 0.34]) * (0.9 + 0.15 * n1[flat])[:, None]
    out[flat] = np.where(stripe[flat][:, None], [0.85, 0.85, 0.85], base)
    if concept is not None:
        zebra = concept == CONCEPT_ID["crosswalk"]
        bars = (y % 1.2) < 0.6
        out[zebra] = np.where(bars[zebra][:, None], [0.93, 0.93, 0.9], out[zebra])
        hole = concept == CONCEPT_ID["manhole"]
        grid = ((x % 0.25) < 0.05) | ((y % 0.25) < 0.05)
        out[hole] = np.where(grid[hole][:, None], [0.08, 0.08, 0.09], [0.2, 0.19, 0.18])
    return out


def object_albedo(cls, base, local, z_rel, height, normal_local, concept=None) -> np.ndarray:
    """RGB (M, 3) of primitive hits.

    cls (M,) class id, base (M, 3) the primitive's colour, local (M, 3) hit point in the
    primitive's frame (x along its heading), z_rel (M,) height above the primitive's bottom
    as a fraction of its height, height (M,) metres above ground, normal_local (M, 3)
    normal in the primitive's frame, concept (M,) concept id (None: the class's look only).
    """
    out = base.astype(np.float64).copy()
    z = local[:, 2]
    along = np.where(np.abs(normal_local[:, 0]) > 0.5, local[:, 1], local[:, 0])
    man = cls == CLASS_ID["manmade"]
    win = man & ((along % 3.0) > 1.0) & ((along % 3.0) < 2.1) & ((z % 3.2) > 1.0)
    win &= (z % 3.2) < 2.4
    win &= np.abs(normal_local[:, 2]) < 0.5
    out[win] = np.array([0.16, 0.2, 0.3]) + 0.1 * hash01(np.floor(along[win] / 3), seed=5)[:, None]
    veg = cls == CLASS_ID["vegetation"]
    out[veg] *= (0.65 + 0.6 * hash01(*np.floor(local[veg] / 0.3).T, seed=6))[:, None]
    for name in ("bus", "truck", "trailer", "car", "construction_vehicle"):
        m = cls == CLASS_ID[name]
        if name == "bus":
            band = m & (z_rel > 0.45) & (z_rel < 0.8) & ((along % 1.6) > 0.2)
        elif name == "car":
            # the cabin box starts ~0.9 m up: its side faces are glass below the roof
            band = m & (height > 0.95) & (z_rel < 0.85) & (np.abs(normal_local[:, 2]) < 0.5)
        else:
            band = m & (z_rel < 0.12)
        out[band] = np.array([0.12, 0.14, 0.18])
    ped = cls == CLASS_ID["pedestrian"]
    out[ped & (z_rel < 0.47)] = np.array([0.12, 0.12, 0.18])
    out[ped & (z_rel > 0.88)] = np.array([0.85, 0.68, 0.55])
    cone = cls == CLASS_ID["traffic_cone"]
    out[cone & (z_rel > 0.45) & (z_rel < 0.65)] = 0.95
    bar = cls == CLASS_ID["barrier"]
    out[bar & ((local[:, 0] % 0.8) < 0.4)] = np.array([0.85, 0.1, 0.1])
    if concept is not None:
        _concept_albedo(out, np.asarray(concept), local, z_rel, height, normal_local)
    return out


def _concept_albedo(out, concept, local, z_rel, height, normal_local) -> None:
    """Long-tail concepts' own markings, painted over the class look (in place)."""
    z = local[:, 2]
    side = np.abs(normal_local[:, 2]) < 0.5
    along = np.where(np.abs(normal_local[:, 0]) > 0.5, local[:, 1], local[:, 0])

    def of(name):
        return concept == CONCEPT_ID[name]

    m = of("stairs")  # dark step noses, lighter treads
    out[m & side & ((height % 0.24) > 0.19)] = np.array([0.3, 0.3, 0.32])
    out[m & ~side] = np.array([0.88, 0.86, 0.82])
    m = of("bench")  # wooden slats
    out[m & ((z % 0.12) < 0.03)] = np.array([0.25, 0.15, 0.08])
    m = of("fire_hydrant")  # white band
    out[m & (z_rel > 0.6) & (z_rel < 0.72)] = 0.95
    m = of("traffic_light")  # red / amber / green lamps on the head
    head = m & (height > 3.4) & side
    for lo, col in ((0.75, (0.95, 0.1, 0.05)), (0.45, (1.0, 0.7, 0.0)), (0.15, (0.1, 0.9, 0.2))):
        out[head & (z_rel > lo) & (z_rel < lo + 0.17) & (np.abs(along) < 0.12)] = col
    m = of("street_sign")  # white border and arrow on the plate
    plate = m & (height > 2.2)
    out[plate & ((z_rel < 0.1) | (z_rel > 0.9) | (np.abs(along) > 0.32))] = 0.95
    m = of("bus_shelter")  # advertising panel on the glass wall
    out[m & (z_rel > 0.3) & (z_rel < 0.8) & (np.abs(along) < 0.8)] = np.array([0.9, 0.85, 0.3])
    m = of("mailbox")  # white band and slot
    out[m & (z_rel > 0.7) & (z_rel < 0.78)] = 0.95
    m = of("trash_bin")  # lid
    out[m & (z_rel > 0.88)] = np.array([0.05, 0.05, 0.05])
    m = of("street_lamp")  # bright lamp underside
    out[m & (normal_local[:, 2] < -0.5)] = np.array([1.0, 0.95, 0.7])
    m = of("bike_rack")  # hoops: bars every 0.4 m
    out[m & ((along % 0.4) > 0.08) & (z_rel < 0.9)] = np.array([0.2, 0.2, 0.22])
    m = of("parking_meter")  # display
    out[m & (height > 1.35) & (height < 1.45)] = np.array([0.2, 0.8, 0.9])
    m = of("kiosk")  # magazine racks
    out[m & side & (z_rel > 0.25) & (z_rel < 0.6) & ((along % 0.5) < 0.35)] = np.array(
        [0.95, 0.9, 0.85]
    )
    m = of("bollard")  # reflective band
    out[m & (z_rel > 0.8) & (z_rel < 0.9)] = np.array([1.0, 0.85, 0.1])
    m = of("ambulance")  # white box body (no car glass band), red stripe, high windows
    out[m] = 0.96
    out[m & (z_rel > 0.4) & (z_rel < 0.5)] = np.array([0.9, 0.05, 0.05])
    out[m & (z_rel > 0.62) & (z_rel < 0.85) & side] = np.array([0.15, 0.17, 0.22])
    m = of("police_car")  # white doors
    out[m & (height < 0.8) & (np.abs(along) < 1.2) & side] = 0.95
    m = of("taxi")  # checker band
    out[m & (height > 0.7) & (height < 0.85) & ((along % 0.3) < 0.15)] = 0.05
    m = of("delivery_van")  # logo band
    out[m & (z_rel > 0.55) & (z_rel < 0.7) & side] = np.array([0.95, 0.75, 0.2])
    m = of("fire_truck")  # white band, chrome ladder
    out[m & (z_rel > 0.35) & (z_rel < 0.45) & side] = 0.95
    m = of("school_bus")  # black rub rails
    out[m & (((z_rel > 0.3) & (z_rel < 0.34)) | ((z_rel > 0.2) & (z_rel < 0.24)))] = 0.05
    m = of("stroller")  # hood
    out[m & (z_rel > 0.6)] = np.array([0.1, 0.1, 0.12])
    m = of("pine_tree")  # darker needles in layers
    out[m & ((z % 0.8) < 0.25) & (height > 1.5)] *= 0.6
    m = of("flower_bed")  # blossoms
    bloom = hash01(*np.floor(local[:, :2] / 0.15).T, seed=11)
    top = m & (z_rel > 0.7)
    cols = np.array([[0.95, 0.15, 0.2], [1.0, 0.85, 0.1], [0.95, 0.5, 0.8]])
    out[top & (bloom < 0.5)] = cols[(bloom[top & (bloom < 0.5)] * 6).astype(int) % 3]


def shade(albedo, normals, dirs, distance) -> np.ndarray:
    """Lambert + ambient shading with distance haze towards the sky colour."""
    lam = np.clip(normals @ SUN, 0.0, 1.0)
    # faces lit from behind still get sky light; side faces differ so boxes read as 3D
    light = 0.45 + 0.55 * lam
    rgb = albedo * light[:, None]
    haze = 1.0 - np.exp(-np.minimum(distance, 1e4) / HAZE_DISTANCE)
    return rgb * (1 - haze[:, None]) + SKY_HORIZON * haze[:, None]
