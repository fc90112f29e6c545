"""Approximate-time matching of the cameras' images, and a bounded queue of one.

Drivers stamp each camera independently, so the images of one instant differ by a few ms;
sets are matched within `max_time_diff` seconds. The matcher always emits the newest complete
set; frames older than an emitted set can no longer be used and are dropped (counted).
"""

from __future__ import annotations

import threading
import time
from collections import deque
from collections.abc import Sequence
from dataclasses import dataclass, field


@dataclass
class Frame:
    """One camera's image with its stamp (seconds) and arrival time (monotonic seconds)."""

    camera: str
    stamp: float
    payload: object
    received: float = 0.0


@dataclass
class CameraSet:
    """A complete set: one frame per camera, in camera order; `stamp` = the newest stamp."""

    stamp: float
    frames: list[Frame]
    spread: float = 0.0  # newest - oldest stamp, seconds


@dataclass
class MatcherStats:
    sets_emitted: int = 0
    frames_dropped: int = 0  # frames never used in a set (superseded, late or overflow)
    late_frames: int = 0  # frames older than the last emitted set on arrival
    last_received: dict = field(default_factory=dict)  # camera -> monotonic arrival time


class CameraSetMatcher:
    """Feed frames with `add`; it returns the newest complete set when one forms."""

    def __init__(self, camera_names: Sequence[str], max_time_diff: float, buffer: int = 6):
        if not camera_names:
            raise ValueError("camera_names must not be empty")
        if not max_time_diff >= 0:
            raise ValueError(f"max_time_diff must be >= 0, got {max_time_diff}")
        self.camera_names = list(camera_names)
        self.max_time_diff = float(max_time_diff)
        self.stats = MatcherStats()
        self._buffers: dict[str, deque[Frame]] = {n: deque() for n in self.camera_names}
        self._buffer = int(buffer)
        self._last_emitted = float("-inf")
        self._lock = threading.Lock()

    def add(self, frame: Frame) -> CameraSet | None:
        if frame.camera not in self._buffers:
            raise ValueError(f"unknown camera {frame.camera!r}")
        if not frame.received:
            frame.received = time.monotonic()
        with self._lock:
            self.stats.last_received[frame.camera] = frame.received
            if frame.stamp <= self._last_emitted:
                self.stats.late_frames += 1
                self.stats.frames_dropped += 1
                return None
            buf = self._buffers[frame.camera]
            # A repeated stamp replaces the earlier frame (re-sent message).
            for i, old in enumerate(buf):
                if old.stamp == frame.stamp:
                    del buf[i]
                    self.stats.frames_dropped += 1
                    break
            buf.append(frame)
            if len(buf) > 1 and buf[-2].stamp > frame.stamp:
                self._buffers[frame.camera] = buf = deque(sorted(buf, key=lambda f: f.stamp))
            while len(buf) > self._buffer:
                buf.popleft()
                self.stats.frames_dropped += 1
            return self._match()

    def _match(self) -> CameraSet | None:
        if any(not b for b in self._buffers.values()):
            return None
        # Try references from newest to oldest: the newest stamp around which every camera
        # has a frame within the tolerance wins.
        refs = sorted({f.stamp for b in self._buffers.values() for f in b}, reverse=True)
        for ref in refs:
            chosen = []
            for name in self.camera_names:
                best = min(self._buffers[name], key=lambda f, r=ref: abs(f.stamp - r))
                chosen.append(best)
            stamps = [f.stamp for f in chosen]
            spread = max(stamps) - min(stamps)
            if spread <= self.max_time_diff:
                return self._emit(chosen, spread)
        return None

    def _emit(self, chosen: list[Frame], spread: float) -> CameraSet:
        for frame in chosen:
            buf = self._buffers[frame.camera]
            keep = deque(f for f in buf if f.stamp > frame.stamp)
            self.stats.frames_dropped += len(buf) - len(keep) - 1
            self._buffers[frame.camera] = keep
        stamp = max(f.stamp for f in chosen)
        self._last_emitted = min(f.stamp for f in chosen)
        self.stats.sets_emitted += 1
        return CameraSet(stamp=stamp, frames=chosen, spread=spread)

    def staleness(self, now: float | None = None) -> dict[str, float]:
        """Seconds since each camera's last frame arrived (inf if it never did)."""
        now = time.monotonic() if now is None else now
        with self._lock:
            last = dict(self.stats.last_received)
        return {n: now - last[n] if n in last else float("inf") for n in self.camera_names}


class LatestSlot:
    """A queue of one: `put` replaces an unconsumed item (counted in `dropped`)."""

    def __init__(self):
        self._item = None
        self._has = False
        self._closed = False
        self.dropped = 0
        self._cond = threading.Condition()

    def put(self, item) -> bool:
        """Store `item`; True if it replaced one that was never taken."""
        with self._cond:
            replaced = self._has
            if replaced:
                self.dropped += 1
            self._item, self._has = item, True
            self._cond.notify()
            return replaced

    def get(self, timeout: float | None = None):
        """The item (removing it), or None on timeout or after `close()`."""
        with self._cond:
            self._cond.wait_for(lambda: self._has or self._closed, timeout)
            if not self._has:
                return None
            item, self._item, self._has = self._item, None, False
            return item

    def close(self) -> None:
        with self._cond:
            self._closed = True
            self._cond.notify_all()
