"""Source views of the depth calibration: the same camera in neighbouring frames (the paper)
and, optionally, the rig's adjacent cameras at the target's own time.

Two cameras of one rig at one instant see the same 3D point from a baseline the extrinsics
give in metres; unlike the ego motion between frames, that baseline is there for every
camera, also for the side cameras whose view along a parked row of vehicles and close
facades gives the temporal error no clear minimum (docs/experiments/vfm.md, "Stage 1 with
rig views").
A view is (sample, camera shift k): for target camera c the source image is camera
`neighbour(c, k)` of that sample; k = 0 is the same camera.
"""

from __future__ import annotations

import numpy as np
import torch


def ring_order(cam_to_ego) -> np.ndarray:
    """(N,) camera indices sorted by the yaw of their optical axis in the ego frame
    (counter-clockwise from +x), so neighbours in this order have adjacent fields of view."""
    axes = np.asarray(cam_to_ego, np.float64)[:, :3, 2]  # optical z axis in the ego frame
    return np.argsort(np.arctan2(axes[:, 1], axes[:, 0]), kind="stable")


def neighbour_permutation(cam_to_ego, shift: int) -> np.ndarray:
    """perm (N,): perm[c] = the camera `shift` steps from c around the rig (ring_order)."""
    order = ring_order(cam_to_ego)
    pos = np.empty_like(order)
    pos[order] = np.arange(len(order))
    return order[(pos + shift) % len(order)]


def view_transform(target: dict, source: dict, perm=None) -> torch.Tensor:
    """(N, 4, 4): target camera c's optical frame -> the optical frame of camera perm[c]
    (default: c) of `source` (another frame, or the target's own frame for rig views)."""
    n = len(target["cam_to_ego"])
    perm = np.arange(n) if perm is None else np.asarray(perm)
    t_c2e = np.asarray(target["cam_to_ego"], np.float64)
    s_c2e = np.asarray(source["cam_to_ego"], np.float64)[perm]
    e2w_t = np.asarray(target["ego_to_world"], np.float64)
    e2w_s = np.asarray(source["ego_to_world"], np.float64)
    T = np.linalg.inv(s_c2e) @ np.linalg.inv(e2w_s)[None] @ e2w_t[None] @ t_c2e
    return torch.tensor(T, dtype=torch.float32)


def source_views(sample: dict, sources: list[dict], rig_shifts=()) -> list[tuple[dict, np.ndarray]]:
    """[(source sample, camera permutation)]: each neighbouring frame's same camera, then the
    target frame's cameras `rig_shifts` steps around the rig (e.g. (-1, 1))."""
    n = len(sample["cam_to_ego"])
    views = [(s, np.arange(n)) for s in sources]
    for k in rig_shifts:
        if k % n:
            views.append((sample, neighbour_permutation(sample["cam_to_ego"], k)))
    return views
