"""Procedural street scenes: ground layout, primitives (boxes, cylinders), ego trajectory.

World frame: x along the street (the ego drives +x), y left, z up, ground plane z = 0.
Ground classes are regions of the plane; everything else is a primitive:
a yaw-rotated box or a vertical cylinder standing on (or above) the ground.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from pop3d_ros.data.classes import CLASS_ID
from pop3d_ros.data.synthetic.config import WorldConfig

BOX, CYLINDER = 0, 1
LANE_WIDTH = 3.3
EGO_LANE_Y = -LANE_WIDTH / 2  # right-hand traffic: the ego drives in the lane right of centre
# Body colours a class picks from (RGB 0..1), so classes differ in typical appearance.
PALETTES = {
    "car": [(0.75, 0.1, 0.1), (0.1, 0.2, 0.6), (0.85, 0.85, 0.85), (0.55, 0.57, 0.6),
            (0.1, 0.1, 0.12), (0.2, 0.45, 0.3)],
    "truck": [(0.95, 0.95, 0.92), (0.9, 0.5, 0.1), (0.2, 0.35, 0.2)],
    "bus": [(0.95, 0.8, 0.1), (0.8, 0.15, 0.1), (0.15, 0.35, 0.75)],
    "trailer": [(0.7, 0.7, 0.72), (0.6, 0.2, 0.15)],
    "construction_vehicle": [(0.95, 0.7, 0.05)],
    "bicycle": [(0.1, 0.5, 0.8), (0.1, 0.1, 0.1)],
    "motorcycle": [(0.05, 0.05, 0.05), (0.6, 0.05, 0.05)],
    "pedestrian": [(0.2, 0.25, 0.5), (0.6, 0.2, 0.2), (0.3, 0.3, 0.3), (0.8, 0.7, 0.3)],
    "traffic_cone": [(1.0, 0.45, 0.0)],
    "barrier": [(0.9, 0.9, 0.9)],
    "manmade": [(0.8, 0.72, 0.58), (0.62, 0.3, 0.22), (0.6, 0.6, 0.62), (0.85, 0.82, 0.75)],
    "pole": [(0.45, 0.45, 0.48)],
    "vegetation": [(0.2, 0.45, 0.15), (0.15, 0.38, 0.12)],
    "trunk": [(0.35, 0.25, 0.15)],
}  # fmt: skip


@dataclass
class Scene:
    """A generated street. Primitive arrays are in the world frame at time 0."""

    kind: np.ndarray  # (n,) int8 BOX / CYLINDER
    center: np.ndarray  # (n, 3) box centre / cylinder axis point at mid-height
    half: np.ndarray  # (n, 3) box half sizes (hx, hy, hz); cylinder (r, r, hz)
    yaw: np.ndarray  # (n,) heading (boxes), radians
    cls: np.ndarray  # (n,) uint8 class id
    color: np.ndarray  # (n, 3) float32 base colour
    velocity: np.ndarray  # (n, 2) m/s in world xy
    road_half: float  # |y| below this: driveable surface
    lanes: int  # traffic lanes per direction
    sidewalk: tuple[float, float]  # sidewalk widths (right side y<0, left side y>0)
    strip: tuple[float, float]  # widths of the terrain/other-flat strip beyond the sidewalk
    strip_edges: tuple[np.ndarray, np.ndarray]  # x boundaries of strip segments per side
    strip_classes: tuple[np.ndarray, np.ndarray]  # class of each segment per side
    median: np.ndarray  # (m, 2) x intervals with an other-flat median at |y| < 0.8
    x_range: tuple[float, float]  # street extent
    ego_wave: tuple[float, float]  # lateral wobble of the ego (amplitude m, wavelength m)

    def ground_class(self, x, y) -> np.ndarray:
        """Class id of the ground plane at world (x, y), vectorised."""
        x, y = np.broadcast_arrays(np.asarray(x, np.float64), np.asarray(y, np.float64))
        ay = np.abs(y)
        side = (y > 0).astype(np.int64)  # 0 = right, 1 = left
        sw = np.where(side == 1, self.sidewalk[1], self.sidewalk[0])
        st = np.where(side == 1, self.strip[1], self.strip[0])
        out = np.full(x.shape, CLASS_ID["terrain"], dtype=np.uint8)
        for s in (0, 1):
            edges, classes = self.strip_edges[s], self.strip_classes[s]
            seg = np.clip(np.searchsorted(edges, x, side="right") - 1, 0, len(classes) - 1)
            m = (side == s) & (ay < self.road_half + sw + st)
            out[m] = classes[seg[m]]
        out[ay < self.road_half + sw] = CLASS_ID["sidewalk"]
        out[ay < self.road_half] = CLASS_ID["driveable_surface"]
        for x0, x1 in self.median:
            out[(ay < 0.8) & (x >= x0) & (x < x1)] = CLASS_ID["other_flat"]
        return out

    def ego_pose(self, t: float, speed: float) -> tuple[float, float, float]:
        """Ego (x, y, yaw) at time t: along the ego lane with a gentle lateral wobble."""
        amp, wavelength = self.ego_wave
        x = speed * t
        k = 2 * np.pi / wavelength
        y = EGO_LANE_Y + amp * np.sin(k * x)
        yaw = float(np.arctan(amp * k * np.cos(k * x)))
        return float(x), float(y), yaw

    def positions_at(self, t: float) -> np.ndarray:
        """Primitive centres (n, 3) at time t (moving objects advance by velocity * t)."""
        c = self.center.copy()
        c[:, :2] += self.velocity * t
        return c


class _Builder:
    def __init__(self, rng: np.random.Generator):
        self.rng = rng
        self.rows: list[tuple] = []

    def color(self, key: str) -> np.ndarray:
        base = np.asarray(PALETTES[key][self.rng.integers(len(PALETTES[key]))])
        return np.clip(base * self.rng.uniform(0.85, 1.15), 0, 1)

    def box(self, cls, x, y, z0, length, width, height, yaw=0.0, color="manmade", vel=(0, 0)):
        c = (x, y, z0 + height / 2)
        self.rows.append((BOX, c, (length / 2, width / 2, height / 2), yaw, CLASS_ID[cls],
                          self.color(color), vel))  # fmt: skip

    def cylinder(self, cls, x, y, z0, radius, height, color, vel=(0, 0)):
        c = (x, y, z0 + height / 2)
        self.rows.append((CYLINDER, c, (radius, radius, height / 2), 0.0, CLASS_ID[cls],
                          self.color(color), vel))  # fmt: skip

    def vehicle(self, kind, x, y, yaw, vel=(0.0, 0.0)):
        """A vehicle of `kind` centred at (x, y); several boxes share the class."""
        r = self.rng
        d = (np.cos(yaw), np.sin(yaw))
        if kind == "car":
            length, width = r.uniform(3.9, 4.9), r.uniform(1.7, 1.95)
            h1, h2 = r.uniform(0.8, 1.0), r.uniform(1.4, 1.65)
            col = self.color("car")
            self.box("car", x, y, 0.0, length, width, h1, yaw, "car", vel)
            self.rows[-1] = self.rows[-1][:5] + (col, vel)
            off = -0.08 * length
            self.box("car", x + off * d[0], y + off * d[1], h1, 0.55 * length, width - 0.1,
                     h2 - h1, yaw, "car", vel)  # fmt: skip
            self.rows[-1] = self.rows[-1][:5] + (col * 0.8, vel)
        elif kind == "truck":
            length, width = r.uniform(6.0, 9.0), r.uniform(2.3, 2.5)
            cab = 2.2
            f = length / 2 - cab / 2
            self.box("truck", x + f * d[0], y + f * d[1], 0.0, cab, width, 2.9, yaw, "truck", vel)
            g = -cab / 2 - 0.15
            self.box("truck", x + g * d[0], y + g * d[1], 0.0, length - cab - 0.3, width,
                     r.uniform(3.2, 3.8), yaw, "truck", vel)  # fmt: skip
        elif kind == "bus":
            length = r.uniform(10.0, 12.5)
            self.box("bus", x, y, 0.0, length, 2.55, r.uniform(3.0, 3.4), yaw, "bus", vel)
        elif kind == "trailer":
            length = r.uniform(8.0, 12.0)
            self.box("trailer", x, y, 0.0, length, 2.5, r.uniform(3.4, 4.0), yaw, "trailer", vel)
        elif kind == "construction_vehicle":
            self.box("construction_vehicle", x, y, 0.0, 5.5, 2.6, 2.6, yaw,
                     "construction_vehicle", vel)  # fmt: skip
            self.box("construction_vehicle", x + 3.5 * d[0], y + 3.5 * d[1], 2.0, 3.0, 0.6,
                     0.6, yaw, "construction_vehicle", vel)  # fmt: skip
        elif kind in ("bicycle", "motorcycle"):
            length = 1.75 if kind == "bicycle" else 2.1
            self.box(kind, x, y, 0.0, length, 0.6, 1.15 if kind == "bicycle" else 1.25, yaw,
                     kind, vel)  # fmt: skip
        else:
            raise ValueError(f"unknown vehicle kind {kind!r}")

    def tree(self, x, y):
        r = self.rng
        trunk_h = r.uniform(2.0, 3.2)
        self.cylinder("vegetation", x, y, 0.0, r.uniform(0.15, 0.3), trunk_h, "trunk")
        self.cylinder("vegetation", x, y, trunk_h - 0.3, r.uniform(1.2, 2.6),
                      r.uniform(2.5, 4.5), "vegetation")  # fmt: skip


def _segments(rng, x0, x1, choices, probs, lo=8.0, hi=30.0):
    edges, classes = [x0 - 1000.0], []
    x = x0
    while x < x1:
        classes.append(CLASS_ID[choices[rng.choice(len(choices), p=probs)]])
        x += rng.uniform(lo, hi)
        edges.append(x)
    edges[-1] = x1 + 1000.0
    return np.asarray(edges), np.asarray(classes, dtype=np.uint8)


def generate_scene(config: WorldConfig) -> Scene:
    """The street of `config.seed`, long enough for the whole drive plus sensor range."""
    rng = np.random.default_rng([int(config.seed), 7331])
    b = _Builder(rng)
    length = config.ego_speed * config.frame_interval * (config.num_frames - 1)
    margin = 90.0
    x0, x1 = -margin, length + margin
    lanes = int(rng.integers(1, 3))  # per direction
    parking = rng.random() < 0.6
    road_half = lanes * LANE_WIDTH + (2.4 if parking else 0.0)
    sidewalk = (float(rng.uniform(2.5, 4.5)), float(rng.uniform(2.5, 4.5)))
    strip = (float(rng.uniform(3.0, 9.0)), float(rng.uniform(3.0, 9.0)))
    seg = [_segments(rng, x0, x1, ["terrain", "other_flat"], [0.65, 0.35]) for _ in range(2)]
    median = []
    if rng.random() < 0.5:
        x = x0 + rng.uniform(0, 40)
        while x < x1:
            ln = rng.uniform(10, 30)
            median.append((x, x + ln))
            x += ln + rng.uniform(20, 60)
    median = np.asarray(median, dtype=np.float64).reshape(-1, 2)
    dens = config.density
    n_street = max(1, int((x1 - x0) / 10 * dens))

    def free_of_median(x):
        return not any(a - 3 <= x <= c + 3 for a, c in median)

    def moving():
        return rng.random() < config.moving_fraction

    for s, sign in ((0, -1.0), (1, 1.0)):
        kerb = road_half + sidewalk[s]
        outer = kerb + strip[s]
        # buildings along the outer edge, with gaps
        x = x0
        while x < x1:
            ln = rng.uniform(8, 30)
            if rng.random() < 0.85:
                depth = rng.uniform(8, 16)
                setback = rng.uniform(0.0, 3.0)
                b.box("manmade", x + ln / 2, sign * (outer + setback + depth / 2), 0.0, ln,
                      depth, rng.uniform(5, 20))  # fmt: skip
            x += ln + rng.uniform(0, 6)
        # poles on the sidewalk's kerb side
        x = x0 + rng.uniform(0, 20)
        while x < x1:
            b.cylinder("manmade", x, sign * (road_half + 0.5), 0.0, rng.uniform(0.12, 0.2),
                       rng.uniform(5, 9), "pole")  # fmt: skip
            x += rng.uniform(15, 35)
        # trees and hedges in the strip (terrain), barriers on other-flat
        edges, classes = seg[s]
        for _ in range(int(n_street * 1.2)):
            x = rng.uniform(x0, x1)
            y = sign * rng.uniform(kerb + 1.0, outer - 0.5) if outer - kerb > 1.6 else None
            if y is None:
                continue
            k = classes[np.clip(np.searchsorted(edges, x, side="right") - 1, 0, len(classes) - 1)]
            if k == CLASS_ID["terrain"]:
                if rng.random() < 0.7:
                    b.tree(x, y)
                else:
                    b.box("vegetation", x, y, 0.0, rng.uniform(2, 6), rng.uniform(0.8, 1.5),
                          rng.uniform(0.8, 1.6), 0.0, "vegetation")  # fmt: skip
            elif rng.random() < 0.5:
                b.vehicle(str(rng.choice(["car", "car", "trailer", "construction_vehicle"])),
                          x, y, float(rng.choice([0.0, np.pi])) + rng.normal(0, 0.1))  # fmt: skip
            else:
                b.box("barrier", x, y, 0.0, 2.0, 0.5, 1.0, rng.normal(0, 0.2), "barrier")
        # pedestrians (some walking), bicycles and motorcycles on the sidewalk
        for _ in range(int(n_street * 0.8)):
            x = rng.uniform(x0, x1)
            y = sign * rng.uniform(road_half + 1.0, kerb - 0.4)
            vel = (rng.choice([-1, 1]) * rng.uniform(0.8, 1.6), 0.0) if moving() else (0, 0)
            b.cylinder("pedestrian", x, y, 0.0, rng.uniform(0.22, 0.3), rng.uniform(1.55, 1.9),
                       "pedestrian", vel)  # fmt: skip
        for _ in range(int(n_street * 0.15)):
            kind = "bicycle" if rng.random() < 0.5 else "motorcycle"
            b.vehicle(kind, rng.uniform(x0, x1), sign * (road_half + 0.9), rng.normal(0, 0.1))
        # parked vehicles in the parking lane
        if parking:
            x = x0 + rng.uniform(0, 10)
            while x < x1:
                if rng.random() < 0.6:
                    kind = str(rng.choice(["car"] * 6 + ["truck", "bus", "trailer"]))
                    b.vehicle(kind, x, sign * (road_half - 1.2), rng.normal(0, 0.03))
                x += rng.uniform(6, 14)
        # construction zone: a row of cones along the road edge
        if rng.random() < 0.6:
            cx = rng.uniform(x0 + 20, x1 - 20)
            y = sign * (road_half - (2.6 if parking else 0.4))
            for i in range(int(rng.integers(4, 9))):
                b.cylinder("traffic_cone", cx + 2.0 * i, y, 0.0, 0.18, 0.7, "traffic_cone")
    # traffic in the lanes
    for lane in range(lanes):
        for sign in (-1.0, 1.0):
            y = sign * (LANE_WIDTH / 2 + lane * LANE_WIDTH)
            ego_lane = sign < 0 and lane == 0
            x = x0 + rng.uniform(0, 20) if not ego_lane else rng.uniform(14, 30)
            while x < x1:
                kind = str(rng.choice(["car"] * 7 + ["truck", "bus", "motorcycle"]))
                speed = config.ego_speed if ego_lane else rng.uniform(4, 12)
                direction = 1.0 if sign < 0 else -1.0
                if ego_lane or moving() or rng.random() < 0.5:
                    if free_of_median(x) or lane > 0:
                        yaw = 0.0 if direction > 0 else np.pi
                        b.vehicle(kind, x, y, yaw, (direction * speed, 0.0))
                x += rng.uniform(18, 45) / dens
    kinds, centers, halves, yaws, cls, colors, vels = zip(*b.rows, strict=True)
    return Scene(
        kind=np.asarray(kinds, np.int8),
        center=np.asarray(centers, np.float64),
        half=np.asarray(halves, np.float64),
        yaw=np.asarray(yaws, np.float64),
        cls=np.asarray(cls, np.uint8),
        color=np.asarray(colors, np.float32),
        velocity=np.asarray(vels, np.float64),
        road_half=float(road_half),
        lanes=lanes,
        sidewalk=sidewalk,
        strip=strip,
        strip_edges=(seg[0][0], seg[1][0]),
        strip_classes=(seg[0][1], seg[1][1]),
        median=median,
        x_range=(x0, x1),
        ego_wave=(float(rng.uniform(0.0, 0.4)), float(rng.uniform(40, 120))),
    )
