"""Procedural street scenes: ground layout, primitives (boxes, cylinders), ego trajectory.

World frame: x along the street (the ego drives +x), y left, z up, ground plane z = 0.
Ground classes are regions of the plane (crosswalks and manhole covers are ground concepts
on the road); everything else is a primitive: a yaw-rotated box or a vertical cylinder
standing on (or above) the ground. Objects (instances) are one or more primitives of one
concept (`data/concepts.py`); long-tail street furniture comes from `furniture.py`.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from pop3d_ros.data.classes import CLASS_ID
from pop3d_ros.data.concepts import CONCEPT_ID
from pop3d_ros.data.synthetic import furniture as fur
from pop3d_ros.data.synthetic.builder import BOX, CYLINDER, Builder
from pop3d_ros.data.synthetic.config import WorldConfig

__all__ = ["BOX", "CYLINDER", "Scene", "generate_scene"]

LANE_WIDTH = 3.3
EGO_LANE_Y = -LANE_WIDTH / 2  # right-hand traffic: the ego drives in the lane right of centre


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
    concept: np.ndarray  # (n,) uint8 concept id (data/concepts.py); its class is `cls`
    instance: np.ndarray  # (n,) int32 object id (> 0); an object's primitives share it
    road_half: float  # |y| below this: driveable surface
    lanes: int  # traffic lanes per direction
    sidewalk: tuple[float, float]  # sidewalk widths (right side y<0, left side y>0)
    strip: tuple[float, float]  # widths of the terrain/other-flat strip beyond the sidewalk
    strip_edges: tuple[np.ndarray, np.ndarray]  # x boundaries of strip segments per side
    strip_classes: tuple[np.ndarray, np.ndarray]  # class of each segment per side
    median: np.ndarray  # (m, 2) x intervals with an other-flat median at |y| < 0.8
    x_range: tuple[float, float]  # street extent
    ego_wave: tuple[float, float]  # lateral wobble of the ego (amplitude m, wavelength m)
    crosswalks: np.ndarray  # (k, 2) x intervals of zebra crossings over the whole road
    manholes: np.ndarray  # (m, 3) manhole covers on the road: x, y, radius
    ground_instances: np.ndarray  # (k + m,) int32 instance ids: crosswalks, then manholes

    def ground_concept(self, x, y) -> tuple[np.ndarray, np.ndarray]:
        """(concept id uint8, instance id int32; 0 = none) of the ground at world (x, y)."""
        x, y = np.broadcast_arrays(np.asarray(x, np.float64), np.asarray(y, np.float64))
        cls = self.ground_class(x, y)
        concept = cls.copy()
        inst = np.zeros(x.shape, np.int32)
        road = cls == CLASS_ID["driveable_surface"]
        k = len(self.crosswalks)
        for i, (x0, x1) in enumerate(self.crosswalks):
            m = road & (x >= x0) & (x < x1)
            concept[m], inst[m] = CONCEPT_ID["crosswalk"], self.ground_instances[i]
        for i, (mx, my, mr) in enumerate(self.manholes):
            m = road & ((x - mx) ** 2 + (y - my) ** 2 <= mr * mr)
            concept[m], inst[m] = CONCEPT_ID["manhole"], self.ground_instances[k + i]
        return concept, inst

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
    b = Builder(rng)
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
        # buildings along the outer edge, with gaps; some with steps at the entrance
        x = x0
        while x < x1:
            ln = rng.uniform(8, 30)
            if rng.random() < 0.85:
                depth = rng.uniform(8, 16)
                setback = rng.uniform(0.0, 3.0)
                b.new("manmade")
                b.box("manmade", x + ln / 2, sign * (outer + setback + depth / 2), 0.0, ln,
                      depth, rng.uniform(5, 20))  # fmt: skip
                if rng.random() < 0.45:
                    fur.stairs(b, x + rng.uniform(0.3, 0.7) * ln, sign * (outer + setback), sign)
            x += ln + rng.uniform(0, 6)
        # poles and street lamps on the sidewalk's kerb side
        x = x0 + rng.uniform(0, 20)
        while x < x1:
            if rng.random() < 0.5:
                fur.street_lamp(b, x, sign * (road_half + 0.5), sign)
            else:
                b.new("manmade")
                b.cylinder("manmade", x, sign * (road_half + 0.5), 0.0,
                           rng.uniform(0.12, 0.2), rng.uniform(5, 9), "pole")  # fmt: skip
            x += rng.uniform(15, 35)
        # street furniture along the sidewalk
        x = x0 + rng.uniform(0, 8)
        while x < x1:
            fur.kerb_object(b, fur.pick(rng, fur.KERB_FURNITURE), x, road_half, kerb, sign)
            x += rng.uniform(6, 16) / dens
        if rng.random() < 0.5:
            fur.bollards(b, rng.uniform(x0, x1), sign * (road_half + 0.25),
                         int(rng.integers(3, 7)))  # fmt: skip
        # trees and hedges in the strip (terrain), barriers/vehicles/kiosks on other-flat
        edges, classes = seg[s]
        for _ in range(int(n_street * 1.2)):
            x = rng.uniform(x0, x1)
            y = sign * rng.uniform(kerb + 1.0, outer - 0.5) if outer - kerb > 1.6 else None
            if y is None:
                continue
            k = classes[np.clip(np.searchsorted(edges, x, side="right") - 1, 0, len(classes) - 1)]
            if k == CLASS_ID["terrain"]:
                u = rng.random()
                if u < 0.5:
                    b.tree(x, y)
                elif u < 0.75:
                    b.tree(x, y, "pine_tree")
                else:
                    b.new("vegetation")
                    b.box("vegetation", x, y, 0.0, rng.uniform(2, 6), rng.uniform(0.8, 1.5),
                          rng.uniform(0.8, 1.6), 0.0, "vegetation")  # fmt: skip
            elif rng.random() < 0.2:
                fur.kiosk(b, x, y)
            elif rng.random() < 0.5:
                b.vehicle(str(rng.choice(["car", "car", "trailer", "construction_vehicle"])),
                          x, y, float(rng.choice([0.0, np.pi])) + rng.normal(0, 0.1))  # fmt: skip
            else:
                b.new("barrier")
                b.box("barrier", x, y, 0.0, 2.0, 0.5, 1.0, rng.normal(0, 0.2), "barrier")
        # pedestrians (some walking, some pushing a stroller) on the sidewalk
        for _ in range(int(n_street * 0.8)):
            x = rng.uniform(x0, x1)
            y = sign * rng.uniform(road_half + 1.0, kerb - 0.4)
            vel = (rng.choice([-1, 1]) * rng.uniform(0.8, 1.6), 0.0) if moving() else (0, 0)
            b.new("pedestrian")
            b.cylinder("pedestrian", x, y, 0.0, rng.uniform(0.22, 0.3), rng.uniform(1.55, 1.9),
                       "pedestrian", vel)  # fmt: skip
            if rng.random() < 0.15:
                ahead = 0.75 if vel[0] >= 0 else -0.75
                fur.stroller(b, x + ahead, y, vel)
        # bicycles and motorcycles at the kerb; some ridden along it
        for _ in range(int(n_street * 0.15)):
            kind = "bicycle" if rng.random() < 0.5 else "motorcycle"
            vel = (rng.choice([-1, 1]) * rng.uniform(3.0, 6.0), 0.0) if moving() else (0, 0)
            yaw = (0.0 if vel[0] >= 0 else np.pi) + rng.normal(0, 0.1)
            b.vehicle(kind, rng.uniform(x0, x1), sign * (road_half + 0.9), yaw, vel)
        # parked vehicles in the parking lane
        if parking:
            x = x0 + rng.uniform(0, 10)
            while x < x1:
                if rng.random() < 0.6:
                    kind = str(rng.choice(["car"] * 6 + ["truck", "bus", "trailer", "taxi",
                               "delivery_van", "police_car", "ambulance"]))  # fmt: skip
                    b.vehicle(kind, x, sign * (road_half - 1.2), rng.normal(0, 0.03))
                x += rng.uniform(6, 14)
        # construction zone: a row of cones along the road edge
        if rng.random() < 0.6:
            cx = rng.uniform(x0 + 20, x1 - 20)
            y = sign * (road_half - (2.6 if parking else 0.4))
            for i in range(int(rng.integers(4, 9))):
                b.new("traffic_cone")
                b.cylinder("traffic_cone", cx + 2.0 * i, y, 0.0, 0.18, 0.7, "traffic_cone")
    # traffic in the lanes
    traffic = ["car"] * 7 + ["truck", "bus", "motorcycle", "taxi", "delivery_van", "police_car",
                             "ambulance", "fire_truck", "school_bus"]  # fmt: skip
    weights = np.asarray([1.0] * 10 + [0.8, 0.8, 0.5, 0.5, 0.35, 0.35])
    for lane in range(lanes):
        for sign in (-1.0, 1.0):
            y = sign * (LANE_WIDTH / 2 + lane * LANE_WIDTH)
            ego_lane = sign < 0 and lane == 0
            x = x0 + rng.uniform(0, 20) if not ego_lane else rng.uniform(14, 30)
            while x < x1:
                kind = traffic[int(rng.choice(len(traffic), p=weights / weights.sum()))]
                speed = config.ego_speed if ego_lane else rng.uniform(4, 12)
                direction = 1.0 if sign < 0 else -1.0
                if ego_lane or moving() or rng.random() < 0.5:
                    if free_of_median(x) or lane > 0:
                        yaw = 0.0 if direction > 0 else np.pi
                        b.vehicle(kind, x, y, yaw, (direction * speed, 0.0))
                x += rng.uniform(18, 45) / dens
    # ground concepts on the road: zebra crossings and manhole covers
    crosswalks = []
    x = x0 + rng.uniform(0, 30)
    while x < x1:
        crosswalks.append((x, x + rng.uniform(3.0, 4.5)))
        x += rng.uniform(40, 90)
    manholes = []
    x = x0 + rng.uniform(0, 10)
    while x < x1:
        lane_y = (rng.integers(0, lanes) + 0.5) * LANE_WIDTH * rng.choice([-1.0, 1.0])
        manholes.append((x, lane_y + rng.normal(0, 0.4), rng.uniform(0.55, 0.7)))
        x += rng.uniform(12, 30)
    n_ground = len(crosswalks) + len(manholes)
    ground_ids = np.arange(b.instance + 1, b.instance + 1 + n_ground, dtype=np.int32)
    kinds, centers, halves, yaws, cls, colors, vels, concepts, insts = zip(*b.rows, strict=True)
    return Scene(
        kind=np.asarray(kinds, np.int8),
        center=np.asarray(centers, np.float64),
        half=np.asarray(halves, np.float64),
        yaw=np.asarray(yaws, np.float64),
        cls=np.asarray(cls, np.uint8),
        color=np.asarray(colors, np.float32),
        velocity=np.asarray(vels, np.float64),
        concept=np.asarray(concepts, np.uint8),
        instance=np.asarray(insts, np.int32),
        road_half=float(road_half),
        lanes=lanes,
        sidewalk=sidewalk,
        strip=strip,
        strip_edges=(seg[0][0], seg[1][0]),
        strip_classes=(seg[0][1], seg[1][1]),
        median=median,
        x_range=(x0, x1),
        ego_wave=(float(rng.uniform(0.0, 0.4)), float(rng.uniform(40, 120))),
        crosswalks=np.asarray(crosswalks, np.float64).reshape(-1, 2),
        manholes=np.asarray(manholes, np.float64).reshape(-1, 3),
        ground_instances=ground_ids,
    )
