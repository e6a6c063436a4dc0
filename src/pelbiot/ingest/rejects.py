"""The record of refused input: counts per reason, a bounded ring, throttled logging.

A flood of bad messages must neither flood the log nor grow memory: the ring keeps the newest
``ring_size`` rejections, and each reason is logged at most once per ``log_interval_s``; the
next line for that reason says how many were not logged in between. Everything from the wire
(topic, payload, detail) is logged with ``%r`` so it cannot forge log lines.
"""

from __future__ import annotations

import logging
import threading
import time
from collections import Counter, deque
from collections.abc import Callable, Iterable

from pelbiot.models import Rejection

logger = logging.getLogger(__name__)


class RejectLog:
    """Thread-safe: the ingest thread, the writer thread and API threads all use it."""

    def __init__(
        self,
        *,
        ring_size: int,
        log_interval_s: float = 60.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        if ring_size < 1:
            raise ValueError("ring_size must be at least 1")
        if log_interval_s < 0:
            raise ValueError("log_interval_s must not be negative")
        self._ring: deque[Rejection] = deque(maxlen=ring_size)
        self._counts: Counter[str] = Counter()
        self._last_logged: dict[str, float] = {}
        self._suppressed: Counter[str] = Counter()
        self._log_interval_s = log_interval_s
        self._clock = clock
        self._lock = threading.Lock()

    def add(self, rejections: Iterable[Rejection]) -> None:
        items = list(rejections)  # a generator runs outside the lock
        to_log: list[tuple[Rejection, int]] = []
        with self._lock:
            now = self._clock()
            for rej in items:
                self._ring.append(rej)
                self._counts[rej.reason] += 1
                last = self._last_logged.get(rej.reason)
                if last is not None and now - last < self._log_interval_s:
                    self._suppressed[rej.reason] += 1
                    continue
                self._last_logged[rej.reason] = now
                to_log.append((rej, self._suppressed.pop(rej.reason, 0)))
        for rej, suppressed in to_log:  # outside the lock: a slow log handler blocks no one
            logger.warning(
                "rejected %s on %r: %r (payload %r; %d similar not logged)",
                rej.reason,
                rej.topic,
                rej.detail,
                rej.payload[:80],
                suppressed,
            )

    def counts(self) -> dict[str, int]:
        with self._lock:
            return dict(self._counts)

    def total(self) -> int:
        with self._lock:
            return sum(self._counts.values())

    def recent(self, limit: int, reason: str | None = None) -> list[Rejection]:
        """Newest first."""
        with self._lock:
            items = list(self._ring)
        items.reverse()
        if reason is not None:
            items = [r for r in items if r.reason == reason]
        return items[:limit]
