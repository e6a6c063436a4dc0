"""Last payload per raw MQTT topic, for diagnostics and the seed-compatible /api/mqtt endpoints."""

from __future__ import annotations

import threading
from collections import OrderedDict
from typing import NamedTuple

from pelbiot.decode.payload_errors import preview


class TopicValue(NamedTuple):
    payload: str
    received_at: float
    messages: int


class TopicTracker:
    """Bounded: the least recently updated topic is forgotten past ``max_topics``."""

    def __init__(self, *, max_topics: int = 10_000) -> None:
        self._values: OrderedDict[str, TopicValue] = OrderedDict()
        self._max = max_topics
        self._lock = threading.Lock()

    def record(self, topic: str, payload: bytes, at: float, messages: int = 1) -> None:
        """``payload`` is the newest of ``messages`` messages just received on ``topic``."""
        with self._lock:
            old = self._values.pop(topic, None)
            count = (old.messages if old else 0) + messages
            self._values[topic] = TopicValue(preview(payload), at, count)
            if len(self._values) > self._max:
                self._values.popitem(last=False)

    def get(self, topic: str) -> TopicValue | None:
        with self._lock:
            return self._values.get(topic)

    def snapshot(self) -> dict[str, TopicValue]:
        with self._lock:
            return dict(self._values)
