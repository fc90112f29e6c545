"""A small nuScenes v1.0 reader (no nuscenes-devkit: it pins numpy<2, the ROS wheels need 2).

Reads the JSON tables (scene, sample, sample_data, calibrated_sensor, ego_pose, sensor,
category, lidarseg), the six CAM_* key-frame images, LIDAR_TOP (`.pcd.bin`, float32 x 5:
x, y, z, intensity, ring) and lidarseg labels (`.bin`, uint8 per point), and returns samples
in our format. The sample's ego frame is the ego pose at the LiDAR key-frame timestamp;
each camera's `cam_to_ego` includes the ego motion between its own timestamp and the
LiDAR's (camera -> ego(t_cam) -> world -> ego(t_lidar)). Quaternions are (w, x, y, z) in
nuScenes as in our geometry module.

Label mapping: the 32 lidarseg categories -> the 16 classes of the lidarseg challenge (the
ones POP-3D evaluates on), see LIDARSEG_TO_CLASS; anything else -> IGNORE.
"""

from __future__ import annotations

import json
from functools import cached_property
from pathlib import Path

import numpy as np
from PIL import Image

from pop3d_ros.data.classes import CLASS_ID, IGNORE
from pop3d_ros.geometry.camera import scale_intrinsics
from pop3d_ros.geometry.rig import CAMERA_NAMES
from pop3d_ros.geometry.transforms import invert_transform, make_transform

# nuScenes channel -> our camera name (same order as CAMERA_NAMES)
CHANNELS = {
    "CAM_FRONT": "cam_front",
    "CAM_FRONT_RIGHT": "cam_front_right",
    "CAM_BACK_RIGHT": "cam_back_right",
    "CAM_BACK": "cam_back",
    "CAM_BACK_LEFT": "cam_back_left",
    "CAM_FRONT_LEFT": "cam_front_left",
}
LIDAR_CHANNEL = "LIDAR_TOP"

# nuScenes-lidarseg category name -> our class name (None = IGNORE). Emergency vehicles,
# strollers, wheelchairs, personal mobility, animals, debris, pushable/pullable objects,
# bicycle racks, static.other, noise and the ego vehicle are ignored, as in the challenge.
LIDARSEG_TO_CLASS: dict[str, str | None] = {
    "noise": None,
    "animal": None,
    "human.pedestrian.adult": "pedestrian",
    "human.pedestrian.child": "pedestrian",
    "human.pedestrian.construction_worker": "pedestrian",
    "human.pedestrian.personal_mobility": None,
    "human.pedestrian.police_officer": "pedestrian",
    "human.pedestrian.stroller": None,
    "human.pedestrian.wheelchair": None,
    "movable_object.barrier": "barrier",
    "movable_object.debris": None,
    "movable_object.pushable_pullable": None,
    "movable_object.trafficcone": "traffic_cone",
    "static_object.bicycle_rack": None,
    "vehicle.bicycle": "bicycle",
    "vehicle.bus.bendy": "bus",
    "vehicle.bus.rigid": "bus",
    "vehicle.car": "car",
    "vehicle.construction": "construction_vehicle",
    "vehicle.emergency.ambulance": None,
    "vehicle.emergency.police": None,
    "vehicle.motorcycle": "motorcycle",
    "vehicle.trailer": "trailer",
    "vehicle.truck": "truck",
    "flat.driveable_surface": "driveable_surface",
    "flat.other": "other_flat",
    "flat.sidewalk": "sidewalk",
    "flat.terrain": "terrain",
    "static.manmade": "manmade",
    "static.other": None,
    "static.vegetation": "vegetation",
    "vehicle.ego": None,
}
# the official v1.0-mini split (full train/val: pass a file of scene names as `split`)
MINI_SPLITS = {
    "mini_train": ("scene-0061", "scene-0553", "scene-0655", "scene-0757", "scene-0796",
                   "scene-1077", "scene-1094", "scene-1100"),
    "mini_val": ("scene-0103", "scene-0916"),
}  # fmt: skip


class NuScenesError(ValueError):
    """A dataset directory that cannot be read, with the file and the problem."""


class NuScenesReader:
    """Samples of a nuScenes v1.0 directory (`root/<version>/*.json`, `root/samples/...`).

    Args:
        root: dataset root.
        version: table folder, e.g. "v1.0-trainval" or "v1.0-mini".
        image_size: (width, height) to resize images to (intrinsics follow); None = as is.
    """

    def __init__(self, root, version: str = "v1.0-mini", image_size=None):
        self.root = Path(root)
        self.version = version
        self.image_size = tuple(image_size) if image_size else None
        table_dir = self.root / version
        if not table_dir.is_dir():
            raise NuScenesError(f"{table_dir}: no such table directory (version {version!r})")
        self._dir = table_dir
        names = ("scene", "sample", "sample_data", "calibrated_sensor", "ego_pose", "sensor")
        self.tables = {name: self._by_token(name) for name in names}
        self.category = self._load("category", required=False)
        lidarseg = self._load("lidarseg", required=False)
        self._lidarseg_file = {r["sample_data_token"]: r["filename"] for r in lidarseg}
        self._channel = {
            tok: self.tables["sensor"][c["sensor_token"]]["channel"]
            for tok, c in self.tables["calibrated_sensor"].items()
        }
        # sample token -> {channel: key-frame sample_data record}
        self._key_data: dict[str, dict[str, dict]] = {}
        for sd in self.tables["sample_data"].values():
            if sd.get("is_key_frame", True):
                ch = self._channel[sd["calibrated_sensor_token"]]
                self._key_data.setdefault(sd["sample_token"], {})[ch] = sd

    def _load(self, name: str, required: bool = True) -> list:
        path = self._dir / f"{name}.json"
        if not path.is_file():
            if required:
                raise NuScenesError(f"{path}: table missing")
            return []
        try:
            return json.loads(path.read_text())
        except json.JSONDecodeError as exc:
            raise NuScenesError(f"{path}: not valid JSON ({exc})") from exc

    def _by_token(self, name: str) -> dict:
        return {r["token"]: r for r in self._load(name)}

    @cached_property
    def label_lut(self) -> np.ndarray:
        """uint8 (256,): lidarseg index -> our class id / IGNORE (from category.json)."""
        lut = np.full(256, IGNORE, dtype=np.uint8)
        for cat in self.category:
            if "index" not in cat:
                continue
            target = LIDARSEG_TO_CLASS.get(cat["name"])
            if target is not None:
                lut[int(cat["index"])] = CLASS_ID[target]
        return lut

    # -- navigation ------------------------------------------------------------------------
    def sample_tokens(self, split=None, scenes=None) -> list[str]:
        """Key-frame tokens in scene then time order, for a split name / split file / scenes."""
        by_name = {s["name"]: s for s in self.tables["scene"].values()}
        if scenes is not None:
            names = list(scenes)
        elif split is None:
            names = sorted(by_name)
        elif split in MINI_SPLITS:
            names = list(MINI_SPLITS[split])
        elif Path(split).is_file():
            names = [ln.strip() for ln in Path(split).read_text().splitlines() if ln.strip()]
        else:
            raise NuScenesError(f"unknown split {split!r}: use {sorted(MINI_SPLITS)}, "
                                "a file with one scene name per line, or scenes=")  # fmt: skip
        missing = [n for n in names if n not in by_name]
        if missing and scenes is not None:
            raise NuScenesError(f"scenes not in {self._dir}: {missing}")
        tokens = []
        for name in names:
            if name not in by_name:
                continue
            tok = by_name[name]["first_sample_token"]
            while tok:
                tokens.append(tok)
                tok = self.tables["sample"][tok]["next"]
        return tokens

    def _pose(self, sd: dict) -> np.ndarray:
        ep = self.tables["ego_pose"][sd["ego_pose_token"]]
        return make_transform(ep["rotation"], ep["translation"])

    def _calib(self, sd: dict) -> dict:
        return self.tables["calibrated_sensor"][sd["calibrated_sensor_token"]]

    # -- samples ---------------------------------------------------------------------------
    def sample(self, token: str) -> dict:
        if token not in self.tables["sample"]:
            raise NuScenesError(f"no sample {token!r} in {self._dir}")
        rec = self.tables["sample"][token]
        data = self._key_data.get(token, {})
        missing = [ch for ch in list(CHANNELS) + [LIDAR_CHANNEL] if ch not in data]
        if missing:
            raise NuScenesError(f"sample {token}: no key-frame data for {missing}")
        lidar = data[LIDAR_CHANNEL]
        lidar_calib = self._calib(lidar)
        ego_to_world = self._pose(lidar)
        world_to_ego = invert_transform(ego_to_world)
        images, Ks, cam_to_ego = [], [], []
        for ch in CHANNELS:
            sd = data[ch]
            calib = self._calib(sd)
            sensor_to_ego = make_transform(calib["rotation"], calib["translation"])
            cam_to_ego.append(world_to_ego @ self._pose(sd) @ sensor_to_ego)
            img, K = self._image(sd, np.asarray(calib["camera_intrinsic"], np.float64))
            images.append(img)
            Ks.append(K)
        if len({im.shape for im in images}) != 1:
            raise NuScenesError(f"sample {token}: camera images differ in size; set image_size")
        points = self._points(lidar)
        lidar_to_ego = make_transform(lidar_calib["rotation"], lidar_calib["translation"])
        xyz = points[:, :3].astype(np.float64) @ lidar_to_ego[:3, :3].T + lidar_to_ego[:3, 3]
        scene = self.tables["scene"][rec["scene_token"]]
        return {
            "token": token,
            "scene": scene["name"],
            "timestamp": int(rec["timestamp"]),
            "prev": rec["prev"] or None,
            "next": rec["next"] or None,
            "camera_names": list(CAMERA_NAMES),
            "images": np.stack(images),
            "intrinsics": np.stack(Ks).astype(np.float32),
            "cam_to_ego": np.stack(cam_to_ego).astype(np.float32),
            "ego_to_world": ego_to_world.astype(np.float32),
            "lidar_points": xyz.astype(np.float32),
            "lidar_labels": self._labels(lidar, len(points)),
            "lidar_origin": np.asarray(lidar_calib["translation"], dtype=np.float32),
            # LIDAR_TOP -> ego: POP-3D's volume is defined in that sensor frame
            "lidar_to_ego": lidar_to_ego.astype(np.float32),
        }

    def _image(self, sd: dict, K: np.ndarray):
        path = self.root / sd["filename"]
        try:
            with Image.open(path) as im:
                im = im.convert("RGB")
                if self.image_size and im.size != self.image_size:
                    sx, sy = self.image_size[0] / im.width, self.image_size[1] / im.height
                    K = scale_intrinsics(K, sx, sy)
                    im = im.resize(self.image_size, Image.BILINEAR)
                return np.asarray(im, dtype=np.uint8), K
        except OSError as exc:
            raise NuScenesError(f"{path}: cannot read image ({exc})") from exc

    def _points(self, sd: dict) -> np.ndarray:
        path = self.root / sd["filename"]
        try:
            raw = np.fromfile(path, dtype=np.float32)
        except OSError as exc:
            raise NuScenesError(f"{path}: cannot read LiDAR points ({exc})") from exc
        if raw.size % 5:
            raise NuScenesError(f"{path}: size is not a multiple of 5 float32 (x,y,z,i,ring)")
        return raw.reshape(-1, 5)

    def _labels(self, sd: dict, n: int) -> np.ndarray:
        rel = self._lidarseg_file.get(sd["token"])
        if rel is None:
            return np.full(n, IGNORE, dtype=np.uint8)
        path = self.root / rel
        raw = np.fromfile(path, dtype=np.uint8)
        if raw.size != n:
            raise NuScenesError(f"{path}: {raw.size} labels for {n} points")
        return self.label_lut[raw]
