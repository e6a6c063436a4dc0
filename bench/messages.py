"""The benchmark's messages: deterministic, with explicit timestamps, unique per series.

Message ``i`` of a run goes to series ``i % series`` with a timestamp one second after the
previous message of that series, so arrival order differs from key order (as with real meters)
and every (panel, metric, ts) is written exactly once. ``expected_readings`` is what a lossless,
duplicate-free ingest commits.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

SINGLE_METRICS = ("voltage", "current", "power", "frequency")
TELEMETRY_METRICS = (
    "voltage_l1",
    "voltage_l2",
    "voltage_l3",
    "current_l1",
    "current_l2",
    "current_l3",
    "power_l1",
    "power_l2",
    "power_l3",
    "power",
    "frequency",
    "power_factor",
)
# 2026-01-01T00:00:00Z: in the past (not rejected as future) and after 2000 (not "old").
BASE_TS_MS = 1_767_225_600_000


def _value(metric: str, i: int) -> float:
    jitter = (i * 7919) % 1000 / 100.0  # 0.00 .. 9.99
    if metric.startswith("voltage"):
        return round(225.0 + jitter, 2)
    if metric.startswith("current"):
        return round(40.0 + jitter * 3, 2)
    if metric.startswith("power_factor"):
        return round(0.9 + jitter / 100, 3)
    if metric.startswith("power"):
        return round(9000.0 + jitter * 100, 1)
    return round(49.95 + jitter / 100, 3)  # frequency


@dataclass(frozen=True)
class Workload:
    kind: str  # "single" | "telemetry"
    count: int  # messages
    prefix: str
    panels: int = 100
    metrics: int = 6  # telemetry metrics per message

    @property
    def metric_names(self) -> tuple[str, ...]:
        if self.kind == "single":
            return SINGLE_METRICS
        return TELEMETRY_METRICS[: self.metrics]

    @property
    def readings_per_message(self) -> int:
        return 1 if self.kind == "single" else self.metrics

    @property
    def expected_readings(self) -> int:
        return self.count * self.readings_per_message

    @property
    def series(self) -> int:
        return self.panels * len(self.metric_names)

    def messages(self, start: int = 0, stop: int | None = None) -> Iterator[tuple[bytes, bytes]]:
        """(topic, payload) of messages ``start`` .. ``stop`` (default: all)."""
        end = self.count if stop is None else stop
        if self.kind == "single":
            names = self.metric_names
            topics = [
                f"{self.prefix}/p{p:03d}/{m}".encode() for p in range(self.panels) for m in names
            ]
            width = len(topics)
            for i in range(start, end):
                s = i % width
                ts = BASE_TS_MS + (i // width) * 1000
                value = _value(names[s % len(names)], i)
                yield topics[s], b'{"value":%r,"ts":%d}' % (value, ts)
            return
        names = self.metric_names
        topics = [f"{self.prefix}/p{p:03d}/telemetry".encode() for p in range(self.panels)]
        for i in range(start, end):
            ts = BASE_TS_MS + (i // self.panels) * 1000
            body = ",".join(f'"{m}":{_value(m, i + k)!r}' for k, m in enumerate(names))
            yield topics[i % self.panels], b'{"ts":%d,%s}' % (ts, body.encode())

    def timed_message(self, i: int, ts_ms: int) -> tuple[bytes, bytes]:
        """Message ``i`` stamped ``ts_ms`` (the latency run stamps the time of publishing)."""
        if self.kind == "single":
            names = self.metric_names
            s = i % (self.panels * len(names))
            topic = f"{self.prefix}/p{s // len(names):03d}/{names[s % len(names)]}"
            value = _value(names[s % len(names)], i)
            return topic.encode(), b'{"value":%r,"ts":%d}' % (value, ts_ms)
        names = self.metric_names
        body = ",".join(f'"{m}":{_value(m, i + k)!r}' for k, m in enumerate(names))
        topic = f"{self.prefix}/p{i % self.panels:03d}/telemetry"
        return topic.encode(), b'{"ts":%d,%s}' % (ts_ms, body.encode())
