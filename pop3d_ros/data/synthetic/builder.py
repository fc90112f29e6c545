"""Collects a scene's primitives: every object is one instance of one concept, made of
yaw-rotated boxes and vertical cylinders that share its class, concept, instance id and
velocity (so a moving object's parts move together)."""

from __future__ import annotations

import numpy as np

from pop3d_ros.data.classes import CLASS_ID
from pop3d_ros.data.concepts import CONCEPT_ID, PARENT

BOX, CYLINDER = 0, 1
# Body colours a class or concept picks from (RGB 0..1), so they differ in typical look.
PALETTES = {
    "car": [(0.75, 0.1, 0.1), (0.1, 0.2, 0.6), (0.85, 0.85, 0.85), (0.55, 0.57, 0.6),
            (0.1, 0.1, 0.12), (0.2, 0.45, 0.3)],
    "truck": [(0.95, 0.95, 0.92), (0.9, 0.5, 0.1), (0.2, 0.35, 0.2)],
    "bus": [(0.8, 0.15, 0.1), (0.15, 0.35, 0.75), (0.85, 0.85, 0.85)],
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
    # long-tail concepts
    "stairs": [(0.78, 0.76, 0.72)],
    "bench": [(0.55, 0.33, 0.16)],
    "fire_hydrant": [(0.85, 0.08, 0.06)],
    "traffic_light": [(0.12, 0.12, 0.12)],
    "street_sign": [(0.1, 0.3, 0.75)],
    "bus_shelter": [(0.55, 0.75, 0.8)],
    "mailbox": [(0.1, 0.15, 0.45)],
    "trash_bin": [(0.12, 0.32, 0.18)],
    "street_lamp": [(0.25, 0.27, 0.3)],
    "bike_rack": [(0.75, 0.76, 0.8)],
    "parking_meter": [(0.35, 0.37, 0.42)],
    "kiosk": [(0.55, 0.1, 0.45)],
    "bollard": [(0.3, 0.3, 0.32)],
    "ambulance": [(0.97, 0.97, 0.97)],
    "police_car": [(0.05, 0.05, 0.08)],
    "taxi": [(0.98, 0.78, 0.05)],
    "delivery_van": [(0.45, 0.3, 0.15), (0.96, 0.96, 0.96)],
    "fire_truck": [(0.8, 0.05, 0.05)],
    "school_bus": [(0.98, 0.72, 0.0)],
    "stroller": [(0.85, 0.35, 0.55), (0.15, 0.2, 0.35)],
    "pine_tree": [(0.06, 0.26, 0.16)],
    "flower_bed": [(0.3, 0.5, 0.2)],
}  # fmt: skip


class Builder:
    """Rows of primitives; `new(concept)` starts the next object (instance)."""

    def __init__(self, rng: np.random.Generator):
        self.rng = rng
        self.rows: list[tuple] = []
        self.instance = 0
        self.concept = CONCEPT_ID["manmade"]

    def new(self, concept: str) -> int:
        """Start a new object of `concept` (a class name or a long-tail concept name)."""
        self.instance += 1
        self.concept = CONCEPT_ID[concept]
        return self.instance

    def color(self, key: str) -> np.ndarray:
        base = np.asarray(PALETTES[key][self.rng.integers(len(PALETTES[key]))])
        return np.clip(base * self.rng.uniform(0.85, 1.15), 0, 1)

    def _add(self, kind, cls, c, half, yaw, color, vel):
        col = self.color(color) if isinstance(color, str) else np.asarray(color)
        self.rows.append((kind, c, half, yaw, CLASS_ID[cls], col, vel, self.concept,
                          self.instance))  # fmt: skip

    def box(self, cls, x, y, z0, length, width, height, yaw=0.0, color="manmade", vel=(0, 0)):
        c = (x, y, z0 + height / 2)
        self._add(BOX, cls, c, (length / 2, width / 2, height / 2), yaw, color, vel)

    def cylinder(self, cls, x, y, z0, radius, height, color, vel=(0, 0)):
        c = (x, y, z0 + height / 2)
        self._add(CYLINDER, cls, c, (radius, radius, height / 2), 0.0, color, vel)

    def vehicle(self, kind, x, y, yaw, vel=(0.0, 0.0)):
        """A vehicle of class or concept `kind` centred at (x, y), one new instance."""
        r = self.rng
        cls = PARENT.get(kind, kind)
        self.new(kind)
        d = (np.cos(yaw), np.sin(yaw))
        if cls == "car" and kind != "ambulance":
            length, width = r.uniform(3.9, 4.9), r.uniform(1.7, 1.95)
            h1, h2 = r.uniform(0.8, 1.0), r.uniform(1.4, 1.65)
            col = self.color(kind)
            self.box("car", x, y, 0.0, length, width, h1, yaw, col, vel)
            off = -0.08 * length
            self.box("car", x + off * d[0], y + off * d[1], h1, 0.55 * length, width - 0.1,
                     h2 - h1, yaw, col * 0.8, vel)  # fmt: skip
            if kind in ("taxi", "police_car"):  # roof sign / light bar
                top = (1.0, 0.95, 0.6) if kind == "taxi" else (0.1, 0.2, 0.95)
                self.box("car", x + off * d[0], y + off * d[1], h2, 0.35, 0.9 if kind ==
                         "police_car" else 0.5, 0.16, yaw, top, vel)  # fmt: skip
        elif kind == "ambulance":
            self.box("car", x, y, 0.0, r.uniform(5.2, 5.8), 2.1, 2.5, yaw, "ambulance", vel)
        elif kind == "delivery_van":
            col = self.color(kind)
            f = 2.0
            self.box("truck", x + f * d[0], y + f * d[1], 0.0, 1.4, 2.0, 1.9, yaw, col, vel)
            self.box("truck", x - 0.7 * d[0], y - 0.7 * d[1], 0.0, 4.0, 2.1, 2.6, yaw, col, vel)
        elif kind == "fire_truck":
            length = r.uniform(8.0, 9.0)
            self.box("truck", x, y, 0.0, length, 2.5, 3.0, yaw, "fire_truck", vel)
            self.box("truck", x, y, 3.0, length * 0.8, 0.8, 0.3, yaw, (0.8, 0.8, 0.82), vel)
        elif kind == "truck":
            length, width = r.uniform(6.0, 9.0), r.uniform(2.3, 2.5)
            cab = 2.2
            f = length / 2 - cab / 2
            self.box("truck", x + f * d[0], y + f * d[1], 0.0, cab, width, 2.9, yaw, "truck", vel)
            g = -cab / 2 - 0.15
            self.box("truck", x + g * d[0], y + g * d[1], 0.0, length - cab - 0.3, width,
                     r.uniform(3.2, 3.8), yaw, "truck", vel)  # fmt: skip
        elif cls == "bus":
            length = r.uniform(10.0, 12.5)
            self.box("bus", x, y, 0.0, length, 2.55, r.uniform(3.0, 3.4), yaw, kind, vel)
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

    def tree(self, x, y, kind="vegetation"):
        r = self.rng
        self.new(kind)
        trunk_h = r.uniform(2.0, 3.2) if kind == "vegetation" else r.uniform(1.0, 1.6)
        self.cylinder("vegetation", x, y, 0.0, r.uniform(0.15, 0.3), trunk_h, "trunk")
        if kind == "pine_tree":  # tall narrow dark crown
            self.cylinder("vegetation", x, y, trunk_h - 0.2, r.uniform(0.8, 1.2),
                          r.uniform(5.0, 8.0), "pine_tree")  # fmt: skip
        else:
            self.cylinder("vegetation", x, y, trunk_h - 0.3, r.uniform(1.2, 2.6),
                          r.uniform(2.5, 4.5), "vegetation")  # fmt: skip
