"""Long-tail street objects (world version 2): their shapes, and where a street has them.

Each function adds one object (a new instance) through a `Builder`; `sign` is the street
side (-1 right, +1 left), so objects face the road. The concept's parent class
(`data.concepts.PARENT`) is what every primitive of the object carries as its class.
"""

from __future__ import annotations

import numpy as np

from pop3d_ros.data.synthetic.builder import Builder


def stairs(b: Builder, x: float, face_y: float, sign: float) -> None:
    """Steps at a building entrance: `face_y` is the facade, the steps descend roadwards."""
    r = b.rng
    b.new("stairs")
    width = r.uniform(2.5, 4.5)
    n = int(r.integers(4, 6))
    rise, run = 0.24, 0.42
    col = b.color("stairs")
    for k in range(n):
        depth = (n - k) * run
        y = face_y - sign * depth / 2
        b.box("manmade", x, y, 0.0, width, depth, (k + 1) * rise, 0.0, col * (1 - 0.03 * k))


def bench(b: Builder, x: float, y: float, sign: float) -> None:
    b.new("bench")
    col = b.color("bench")
    b.box("manmade", x, y, 0.0, 1.8, 0.55, 0.45, 0.0, col)
    b.box("manmade", x, y + sign * 0.25, 0.45, 1.8, 0.08, 0.45, 0.0, col * 0.9)


def fire_hydrant(b: Builder, x: float, y: float) -> None:
    b.new("fire_hydrant")
    col = b.color("fire_hydrant")
    b.cylinder("manmade", x, y, 0.0, 0.2, 0.75, col)
    b.cylinder("manmade", x, y, 0.75, 0.13, 0.12, col * 0.7)


def traffic_light(b: Builder, x: float, y: float) -> None:
    b.new("traffic_light")
    b.cylinder("manmade", x, y, 0.0, 0.1, 3.4, (0.3, 0.3, 0.32))
    b.box("manmade", x, y, 3.4, 0.4, 0.4, 1.1, 0.0, "traffic_light")


def street_sign(b: Builder, x: float, y: float) -> None:
    b.new("street_sign")
    b.cylinder("manmade", x, y, 0.0, 0.05, 2.2, (0.6, 0.6, 0.62))
    b.box("manmade", x, y, 2.2, 0.06, 0.8, 0.8, 0.0, "street_sign")


def bus_shelter(b: Builder, x: float, y: float, sign: float) -> None:
    b.new("bus_shelter")
    col = b.color("bus_shelter")
    frame = (0.3, 0.32, 0.35)
    b.box("manmade", x, y, 2.3, 4.2, 1.7, 0.12, 0.0, frame)
    b.box("manmade", x, y + sign * 0.8, 0.1, 4.0, 0.08, 2.2, 0.0, col)
    for dx in (-2.0, 2.0):
        b.box("manmade", x + dx, y, 0.0, 0.1, 1.6, 2.3, 0.0, frame)


def mailbox(b: Builder, x: float, y: float) -> None:
    b.new("mailbox")
    b.box("manmade", x, y, 0.0, 0.5, 0.5, 1.2, 0.0, "mailbox")


def trash_bin(b: Builder, x: float, y: float) -> None:
    b.new("trash_bin")
    b.cylinder("manmade", x, y, 0.0, 0.3, 0.95, "trash_bin")


def street_lamp(b: Builder, x: float, y: float, sign: float) -> None:
    r = b.rng
    b.new("street_lamp")
    h = r.uniform(6.0, 8.0)
    b.cylinder("manmade", x, y, 0.0, r.uniform(0.12, 0.18), h, "street_lamp")
    b.box("manmade", x, y - sign * 0.7, h - 0.25, 0.45, 1.6, 0.25, 0.0, "street_lamp")


def bike_rack(b: Builder, x: float, y: float) -> None:
    b.new("bike_rack")
    b.box("manmade", x, y, 0.0, 2.4, 0.35, 0.85, 0.0, "bike_rack")


def parking_meter(b: Builder, x: float, y: float) -> None:
    b.new("parking_meter")
    col = b.color("parking_meter")
    b.cylinder("manmade", x, y, 0.0, 0.06, 1.15, col)
    b.box("manmade", x, y, 1.15, 0.3, 0.25, 0.4, 0.0, col)


def kiosk(b: Builder, x: float, y: float) -> None:
    b.new("kiosk")
    b.box("manmade", x, y, 0.0, 2.6, 2.0, 2.6, 0.0, "kiosk")


def bollards(b: Builder, x: float, y: float, count: int) -> None:
    """A row of bollards along the kerb, each its own instance."""
    for i in range(count):
        b.new("bollard")
        b.cylinder("barrier", x + 1.5 * i, y, 0.0, 0.12, 0.95, "bollard")


def stroller(b: Builder, x: float, y: float, vel) -> None:
    b.new("stroller")
    b.box("pedestrian", x, y, 0.15, 0.85, 0.55, 0.85, 0.0, "stroller", vel)


def flower_bed(b: Builder, x: float, y: float) -> None:
    b.new("flower_bed")
    b.box("vegetation", x, y, 0.0, b.rng.uniform(2.0, 4.0), 1.1, 0.55, 0.0, "flower_bed")


# kerb-side furniture (x, y on the sidewalk next to the road) and its relative frequency
KERB_FURNITURE = {
    "fire_hydrant": 1.0,
    "traffic_light": 0.7,
    "street_sign": 1.0,
    "parking_meter": 0.7,
    "mailbox": 0.7,
    "trash_bin": 1.0,
    "bike_rack": 0.6,
    "bench": 0.8,
    "bus_shelter": 0.4,
    "flower_bed": 0.6,
}


def kerb_object(b: Builder, kind: str, x: float, road_half: float, kerb: float, sign: float):
    """One piece of street furniture on the sidewalk at x (kerb side or back side)."""
    near = sign * (road_half + 0.45)  # close to the road
    back = sign * (kerb - 0.5)  # along the back of the sidewalk
    if kind == "fire_hydrant":
        fire_hydrant(b, x, near)
    elif kind == "traffic_light":
        traffic_light(b, x, near)
    elif kind == "street_sign":
        street_sign(b, x, near)
    elif kind == "parking_meter":
        parking_meter(b, x, near)
    elif kind == "mailbox":
        mailbox(b, x, back)
    elif kind == "trash_bin":
        trash_bin(b, x, near)
    elif kind == "bike_rack":
        bike_rack(b, x, back)
    elif kind == "bench":
        bench(b, x, sign * (kerb - 0.4), sign)
    elif kind == "bus_shelter":
        bus_shelter(b, x, sign * (kerb - 0.9), sign)
    elif kind == "flower_bed":
        flower_bed(b, x, back)
    else:
        raise ValueError(f"unknown kerb object {kind!r}")


def pick(rng: np.random.Generator, weights: dict[str, float]) -> str:
    names = list(weights)
    p = np.asarray([weights[n] for n in names], np.float64)
    return names[int(rng.choice(len(names), p=p / p.sum()))]
