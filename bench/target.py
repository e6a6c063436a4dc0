"""The system under test, in a process of its own: PELBIOT's real Runtime (writer + MQTT ingest).

``python -m bench.target --database-url ... --mqtt-url ... --client-id ... --prefix ...
--expected N`` builds ``Runtime.build(settings)``, runs it until N readings are committed (or the
timeout passes), shuts it down the way SIGTERM does (drain, commit, ack), verifies the rows in
the database and prints one JSON object. A writer listener (called after each commit) records
commit times; with ``--latency`` it also records, per reading, commit time minus the reading's
timestamp (the publisher stamps each message with its send time).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import resource
import sys
import threading
import time
from pathlib import Path
from typing import Any

from bench.verify import verify
from pelbiot.models import Committed
from pelbiot.runtime import Runtime
from pelbiot.settings import load_settings


class Progress:
    """Writer listener: runs in the writer thread after every commit."""

    def __init__(self, expected: int, *, latency: bool) -> None:
        self.expected = expected
        self.latency = latency
        self.committed = 0
        self.first_at: float | None = None
        self.first_batch = 0
        self.last_at: float | None = None
        self.batches = 0
        self.latencies_ms: list[float] = []
        self.done = threading.Event()

    def __call__(self, committed: Committed) -> None:
        readings = committed.readings
        now = time.time()
        if self.first_at is None:
            self.first_at = now
            self.first_batch = len(readings)
        self.last_at = now
        self.batches += 1
        self.committed += len(readings)
        if self.latency:
            now_ms = now * 1000
            self.latencies_ms.extend(now_ms - r.ts_ms for r in readings)
        if self.committed >= self.expected:
            self.done.set()


def _percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


async def run(args: argparse.Namespace) -> dict[str, Any]:
    overrides: dict[str, Any] = json.loads(args.settings or "{}")
    settings = load_settings(
        database_url=args.database_url,
        mqtt_url=args.mqtt_url,
        mqtt_client_id=args.client_id,
        topic_prefix=args.prefix,
        data_dir=Path(args.workdir),
        **overrides,
    )
    runtime = Runtime.build(settings)
    progress = Progress(args.expected, latency=args.latency)
    runtime.writer.add_listener(progress)
    ready, stop = asyncio.Event(), asyncio.Event()
    task = asyncio.create_task(runtime.run(ready, stop), name="runtime")
    await ready.wait()
    assert runtime.ingest is not None
    if not await asyncio.to_thread(runtime.ingest.wait_connected, 30):
        raise SystemExit("PELBIOT did not connect to the broker")
    cpu0 = resource.getrusage(resource.RUSAGE_SELF)  # startup (imports, migrations) excluded
    print("READY", flush=True)
    finished = await asyncio.to_thread(progress.done.wait, args.timeout)
    cpu1 = resource.getrusage(resource.RUSAGE_SELF)
    stop.set()
    await task
    peak_rss_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    stats = runtime.stats
    result: dict[str, Any] = {
        "finished": finished,
        "committed": progress.committed,
        "expected": args.expected,
        "batches": progress.batches,
        "max_batch": stats.max_batch_size,
        "max_commit_ms": round(stats.max_commit_s * 1000, 1),
        "duplicates": stats.duplicates,
        "rejected": stats.messages_rejected,
        "peak_rss_mb": round(peak_rss_mb, 1),
        "cpu_s": round((cpu1.ru_utime - cpu0.ru_utime) + (cpu1.ru_stime - cpu0.ru_stime), 2),
    }
    if progress.first_at is not None and progress.last_at is not None:
        span = progress.last_at - progress.first_at
        result["seconds"] = round(span, 3)
        counted = progress.committed - progress.first_batch
        result["readings_per_s"] = round(counted / span) if span > 0 else None
    if args.latency and progress.latencies_ms:
        lat = progress.latencies_ms
        result["latency_ms"] = {
            "p50": round(_percentile(lat, 0.50), 1),
            "p99": round(_percentile(lat, 0.99), 1),
            "max": round(max(lat), 1),
        }
    result["verify"] = verify(args.database_url, args.expected, args.series)
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--database-url", required=True)
    parser.add_argument("--mqtt-url", required=True)
    parser.add_argument("--client-id", required=True)
    parser.add_argument("--prefix", required=True)
    parser.add_argument("--workdir", required=True)
    parser.add_argument("--expected", type=int, required=True, help="readings to wait for")
    parser.add_argument("--series", type=int, required=True, help="distinct series expected")
    parser.add_argument("--timeout", type=float, default=300)
    parser.add_argument("--latency", action="store_true")
    parser.add_argument("--settings", default=None, help="JSON object of Settings overrides")
    args = parser.parse_args()
    result = asyncio.run(run(args))
    print(json.dumps(result), flush=True)
    sys.exit(0 if result["finished"] else 1)


if __name__ == "__main__":
    main()
