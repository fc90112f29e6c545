"""Rates, latency statistics and the node's DiagnosticArray (ROS types only at the edge)."""

from __future__ import annotations

import threading
import time
from collections import Counter, deque

from diagnostic_msgs.msg import DiagnosticArray, DiagnosticStatus, KeyValue

OK, WARN, ERROR = DiagnosticStatus.OK, DiagnosticStatus.WARN, DiagnosticStatus.ERROR


class RateMeter:
    """Events per second over a sliding window (monotonic time)."""

    def __init__(self, window_s: float = 5.0):
        self.window_s = float(window_s)
        self._times: deque[float] = deque()
        self.total = 0
        self._lock = threading.Lock()

    def tick(self, now: float | None = None) -> None:
        now = time.monotonic() if now is None else now
        with self._lock:
            self._times.append(now)
            self.total += 1
            self._trim(now)

    def rate(self, now: float | None = None) -> float:
        now = time.monotonic() if now is None else now
        with self._lock:
            self._trim(now)
            if len(self._times) < 2:
                return 0.0
            span = max(now - self._times[0], 1e-3)
            return len(self._times) / max(span, self.window_s * 0.2)

    def _trim(self, now: float) -> None:
        while self._times and now - self._times[0] > self.window_s:
            self._times.popleft()


class StageTimes:
    """Last and running-mean latency per stage (ms)."""

    def __init__(self, alpha: float = 0.1):
        self.alpha = alpha
        self.last: dict[str, float] = {}
        self.mean: dict[str, float] = {}
        self._lock = threading.Lock()

    def record(self, stage: str, ms: float) -> None:
        with self._lock:
            self.last[stage] = ms
            prev = self.mean.get(stage)
            self.mean[stage] = ms if prev is None else prev + self.alpha * (ms - prev)

    def snapshot(self) -> tuple[dict, dict]:
        with self._lock:
            return dict(self.last), dict(self.mean)


class InvalidCounter(Counter):
    """Invalid input messages by reason (thread-safe increments)."""

    def __init__(self):
        super().__init__()
        self._lock = threading.Lock()

    def add(self, reason: str) -> None:
        with self._lock:
            self[reason] += 1


def status(name: str, level: int, message: str, values: dict, hardware_id: str) -> DiagnosticStatus:
    return DiagnosticStatus(
        level=level,
        name=name,
        message=message,
        hardware_id=hardware_id,
        values=[KeyValue(key=str(k), value=_fmt(v)) for k, v in values.items()],
    )


def _fmt(v) -> str:
    if isinstance(v, float):
        return f"{v:.3f}"
    return str(v)


def array(header, statuses: list[DiagnosticStatus]) -> DiagnosticArray:
    return DiagnosticArray(header=header, status=statuses)
