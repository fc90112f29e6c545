"""The 16 semantic classes of POP-3D's nuScenes evaluation (lidarseg, merged as in the
occupancy benchmarks), and the ids used throughout the project.

Class ids 0..15 index CLASS_NAMES. In occupancy grids EMPTY marks free space and IGNORE
marks unknown/unobserved; in per-point labels IGNORE marks points without a class.
"""

CLASS_NAMES = (
    "barrier",
    "bicycle",
    "bus",
    "car",
    "construction_vehicle",
    "motorcycle",
    "pedestrian",
    "traffic_cone",
    "trailer",
    "truck",
    "driveable_surface",
    "other_flat",
    "sidewalk",
    "terrain",
    "manmade",
    "vegetation",
)
NUM_CLASSES = len(CLASS_NAMES)
EMPTY = 16
IGNORE = 255
CLASS_ID = {name: i for i, name in enumerate(CLASS_NAMES)}
# Classes whose objects may move between frames: dropped from adjacent-frame rays and from the
# photometric loss of VFM depth calibration. RenderOcc's `dynamic_class = [0, 1, 3, 4, 5, 7, 9,
# 10]` (Occ3D ids, `mmdet3d/datasets/nuscenes_dataset_occ.py`) differs from these eight in two
# ids, not by a shift: it lists 0 "others" and 1 barrier where the movable bicycle (2) and
# motorcycle (6) would be; bus, car, construction vehicle, pedestrian, trailer, truck agree.
MOVABLE_CLASSES = tuple(
    CLASS_ID[n]
    for n in (
        "bicycle",
        "bus",
        "car",
        "construction_vehicle",
        "motorcycle",
        "pedestrian",
        "trailer",
        "truck",
    )
)
