"""The record of refused input: counts per reason, a bounded ring, throttled logging."""

from __future__ import annotations

import logging
import threading
import time
from collections import Counter, deque
from collections.abc import Iterable

from pelbiot.models import Rejection

logger = logging.getLogger(__name__)


class RejectLog:
    """Thread-safe. Logs each reason at most once per ``log_interval_s`` (no log floods)."""

    def __init__(self, *, ring_size: int, log_interval_s: float = 60.0) -> None:
        self._ring: deque[Rejection] = deque(maxlen=ring_size)
        self._counts: Counter[str] = Counter()
        self._last_logged: dict[str, float] = {}
        self._suppressed: Counter[str] = Counter()
        self._log_interval_s = log_interval_s
        self._lock = threading.Lock()

    def add(self, rejections: Iterable[Rejection]) -> None:
        now = time.monotonic()
        for rej in rejections:
            with self._lock:
                self._ring.append(rej)
                self._counts[rej.reason] += 1
                last = self._last_logged.get(rej.reason)
                if last is not None and now - last < self._log_interval_s:
                    self._suppressed[rej.reason] += 1
                    continue
                self._last_logged[rej.reason] = now
                suppressed = self._suppressed.pop(rej.reason, 0)
            logger.warning(
                "rejected %s on %r: %s (payload %r; %d similar not logged)",
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
