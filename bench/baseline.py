"""The baseline: a bare MQTT-to-database loop, as a script written in an afternoon would be.

paho-mqtt with automatic acknowledgement (the PUBACK goes out when the callback returns, before
the row is committed), no validation, rows appended to a list and written with one
``executemany`` + commit per batch of ``--batch`` rows, all in one thread. It writes the same
``readings (series_id, ts_ms, value)`` table PELBIOT uses, so ``bench.verify`` counts both alike.
It is what PELBIOT's figures are divided by: same messages, same broker, same machine, same run.
"""

from __future__ import annotations

import argparse
import json
import resource
import sqlite3
import sys
import time
from typing import Any

import orjson
import paho.mqtt.client as mqtt
import psycopg
from paho.mqtt.enums import CallbackAPIVersion

from bench.verify import verify

_DDL_SQLITE = (
    "CREATE TABLE IF NOT EXISTS readings (series_id INTEGER NOT NULL, ts_ms INTEGER NOT NULL, "
    "value REAL NOT NULL, PRIMARY KEY (series_id, ts_ms)) WITHOUT ROWID"
)
_DDL_PG = (
    "CREATE TABLE IF NOT EXISTS readings (series_id integer NOT NULL, ts_ms bigint NOT NULL, "
    "value double precision NOT NULL, PRIMARY KEY (series_id, ts_ms))"
)


class Sink:
    def __init__(self, url: str) -> None:
        self.sqlite = url.startswith("sqlite")
        if self.sqlite:
            self.conn: Any = sqlite3.connect(url.split("///", 1)[1], isolation_level=None)
            self.conn.execute("PRAGMA journal_mode=WAL")
            self.conn.execute("PRAGMA synchronous=NORMAL")
            self.conn.execute(_DDL_SQLITE)
            self.sql = "INSERT INTO readings VALUES (?, ?, ?)"
        else:
            self.conn = psycopg.connect(url)
            self.conn.execute(_DDL_PG)
            self.conn.commit()
            self.sql = "INSERT INTO readings VALUES (%s, %s, %s)"

    def write(self, rows: list[tuple[int, int, float]]) -> None:
        if self.sqlite:
            self.conn.execute("BEGIN")
            self.conn.executemany(self.sql, rows)
            self.conn.execute("COMMIT")
        else:
            with self.conn.cursor() as cur:
                cur.executemany(self.sql, rows)
            self.conn.commit()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--database-url", required=True)
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--client-id", required=True)
    parser.add_argument("--prefix", required=True)
    parser.add_argument("--expected", type=int, required=True)
    parser.add_argument("--series", type=int, required=True)
    parser.add_argument("--batch", type=int, default=5000)
    parser.add_argument("--timeout", type=float, default=300)
    args = parser.parse_args()

    sink = Sink(args.database_url)
    ids: dict[tuple[str, str], int] = {}
    rows: list[tuple[int, int, float]] = []
    state = {"committed": 0, "first_at": 0.0, "first_batch": 0, "last_at": 0.0}

    def sid(panel: str, metric: str) -> int:
        key = (panel, metric)
        found = ids.get(key)
        if found is None:
            found = ids[key] = len(ids) + 1
        return found

    def on_message(_c: object, _u: object, msg: mqtt.MQTTMessage) -> None:
        _prefix, panel, metric = msg.topic.split("/")
        doc = orjson.loads(msg.payload)
        if metric == "telemetry":
            ts = doc.pop("ts")
            rows.extend((sid(panel, k), ts, v) for k, v in doc.items())
        else:
            rows.append((sid(panel, metric), doc["ts"], doc["value"]))

    def flush() -> None:
        if not rows:
            return
        sink.write(rows)
        now = time.time()
        if not state["first_at"]:
            state["first_at"], state["first_batch"] = now, len(rows)
        state["last_at"] = now
        state["committed"] += len(rows)
        rows.clear()

    client = mqtt.Client(
        callback_api_version=CallbackAPIVersion.VERSION2,
        client_id=args.client_id,
        protocol=mqtt.MQTTv311,
        clean_session=False,
    )
    client.on_message = on_message
    client.max_inflight_messages_set(0)
    client.connect("127.0.0.1", args.port, keepalive=60)
    client.subscribe(f"{args.prefix}/#", qos=1)
    cpu0 = resource.getrusage(resource.RUSAGE_SELF)
    deadline = time.monotonic() + args.timeout
    last_flush = time.monotonic()
    print("READY", flush=True)
    while state["committed"] < args.expected and time.monotonic() < deadline:
        client.loop(timeout=0.05)
        if len(rows) >= args.batch or (rows and time.monotonic() - last_flush > 0.05):
            flush()
            last_flush = time.monotonic()
    cpu1 = resource.getrusage(resource.RUSAGE_SELF)
    client.disconnect()
    span = state["last_at"] - state["first_at"]
    result = {
        "finished": state["committed"] >= args.expected,
        "committed": state["committed"],
        "expected": args.expected,
        "seconds": round(span, 3),
        "readings_per_s": round((state["committed"] - state["first_batch"]) / span)
        if span > 0
        else None,
        "peak_rss_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1),
        "cpu_s": round((cpu1.ru_utime - cpu0.ru_utime) + (cpu1.ru_stime - cpu0.ru_stime), 2),
        "verify": verify(args.database_url, args.expected, args.series),
    }
    print(json.dumps(result), flush=True)
    sys.exit(0 if result["finished"] else 1)


if __name__ == "__main__":
    main()
