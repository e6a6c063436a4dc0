"""The publisher process: paced QoS 1 messages whose values carry their publish time.

``python -m bench.live.publisher --port P --prefix X --kind telemetry|single --rate R
--seconds S --panels N --metrics M``, started by ``scenario.py``: prints ``START <time>``, then
publishes, then prints a JSON line with what it sent and the last value of every series.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import sys
import time
import uuid
from dataclasses import dataclass

from bench.live.latency import encode_time
from bench.load import RawPublisher

# Metrics whose plausible range holds 200..300 (the encoded publish time).
SINGLE_METRICS = ("voltage_l1", "voltage_l2", "voltage_l3", "voltage")
TELEMETRY_METRICS = (
    "voltage_l1",
    "voltage_l2",
    "voltage_l3",
    "voltage_l12",
    "voltage_l23",
    "voltage_l31",
    "current_l1",
    "current_l2",
    "current_l3",
    "power",
)


@dataclass(frozen=True)
class Workload:
    kind: str  # "telemetry" | "single"
    metrics: int

    @property
    def per_message(self) -> int:
        return self.metrics if self.kind == "telemetry" else 1


def run_publisher(args: argparse.Namespace) -> None:
    """Paced QoS 1 publishing. Message i goes to panel i % P; a single-value message to metric
    (i // P) % M, a telemetry message carries all M metrics."""
    single = args.kind == "single"
    metrics = (SINGLE_METRICS if single else TELEMETRY_METRICS)[: args.metrics]
    if single:
        topics = [
            [f"{args.prefix}/p{p:03d}/{m}".encode() for m in metrics] for p in range(args.panels)
        ]
    else:
        topics = [[f"{args.prefix}/p{p:03d}/telemetry".encode()] for p in range(args.panels)]
    msg_rate = args.rate / (1 if single else len(metrics))
    count = int(msg_rate * args.seconds)
    pub = RawPublisher(args.port, f"bench-live-pub-{uuid.uuid4().hex[:8]}", window=2000)
    last: dict[str, float] = {}
    cpu0 = time.process_time()
    started = time.perf_counter()
    print(f"START {time.time():.6f}", flush=True)
    i = 0
    while i < count:
        due = min(count, int((time.perf_counter() - started) * msg_rate) + 1)
        if due > i:
            now = time.time()
            value, ts_ms = encode_time(now), int(now * 1000)
            batch = []
            for j in range(i, due):
                p = j % args.panels
                if single:
                    m = (j // args.panels) % len(metrics)
                    batch.append((topics[p][m], b'{"value":%r,"ts":%d}' % (value, ts_ms)))
                    last[f"p{p:03d}/{metrics[m]}"] = value
                else:
                    body = ",".join(f'"{m}":{value!r}' for m in metrics)
                    batch.append((topics[p][0], b'{"ts":%d,%s}' % (ts_ms, body.encode())))
                    last.update((f"p{p:03d}/{m}", value) for m in metrics)
            pub.send(batch)
            i = due
        time.sleep(max(0.0005, started + i / msg_rate - time.perf_counter()))
    elapsed = time.perf_counter() - started
    pub.drain()
    pub.close()
    result = {
        "messages": count,
        "readings": count * (1 if single else len(metrics)),
        "seconds": round(elapsed, 3),
        "cpu_s": round(time.process_time() - cpu0, 2),
        "last": last,
    }
    print(json.dumps(result), flush=True)


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m bench.live.publisher")
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--prefix", required=True)
    parser.add_argument("--kind", choices=["telemetry", "single"], required=True)
    parser.add_argument("--rate", type=float, required=True, help="readings per second")
    parser.add_argument("--seconds", type=float, required=True)
    parser.add_argument("--panels", type=int, required=True)
    parser.add_argument("--metrics", type=int, required=True)
    return parser.parse_args(argv)


if __name__ == "__main__":
    with contextlib.suppress(KeyboardInterrupt):
        run_publisher(parse_args())
    sys.exit(0)
