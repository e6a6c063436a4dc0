"""In-process sliding-window counters for login throttling and rate limits.

Per process: with several API workers each keeps its own counts, so limits are per worker (the
per-account lockout itself lives in the database and holds across workers).
"""

from __future__ import annotations

import threading
import time
from collections import deque
from collections.abc import Callable


class SlidingWindow:
    """At most ``limit`` events per ``window_s`` per key; bounded in keys."""

    def __init__(
        self,
        *,
        limit: int,
        window_s: float,
        max_keys: int = 100_000,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.limit = limit
        self.window_s = window_s
        self._events: dict[str, deque[float]] = {}
        self._max_keys = max_keys
        self._clock = clock
        self._lock = threading.Lock()

    def _trim(self, key: str, now: float) -> deque[float]:
        events = self._events.get(key)
        if events is None:
            if len(self._events) >= self._max_keys:
                self._events.pop(next(iter(self._events)))
            events = self._events[key] = deque()
        while events and events[0] <= now - self.window_s:
            events.popleft()
        return events

    def retry_after(self, key: str) -> float:
        """Seconds until ``key`` may act again; 0 when it may now (does not count an event)."""
        with self._lock:
            now = self._clock()
            events = self._trim(key, now)
            if len(events) < self.limit:
                return 0.0
            return max(0.001, events[0] + self.window_s - now)

    def hit(self, key: str) -> float:
        """Count an event; return 0 if allowed, else the seconds to wait (event not counted)."""
        with self._lock:
            now = self._clock()
            events = self._trim(key, now)
            if len(events) >= self.limit:
                return max(0.001, events[0] + self.window_s - now)
            events.append(now)
            return 0.0

    def tracked(self) -> list[str]:
        with self._lock:
            return list(self._events)

    def reset(self, key: str) -> None:
        with self._lock:
            self._events.pop(key, None)
