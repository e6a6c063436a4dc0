"""Bad input end to end: the malformed corpus through a real broker into the running app.

Every bad message must be refused with its reason, counted and listed by the API, every good
message around it stored, and the consumer must still be connected and ingesting afterwards.
"""

from __future__ import annotations

import time
from collections import Counter
from collections.abc import Callable
from contextlib import AbstractContextManager
from datetime import UTC, datetime
from typing import Any

import orjson
from fastapi.testclient import TestClient

from pelbiot.decode.payload_errors import REASONS
from tests.support.malformed import MALFORMED
from tests.support.mosquitto import Mosquitto, mosquitto_pub
from tests.support.publisher import WindowedPublisher
from tests.support.waiting import wait_for

ClientFactory = Callable[..., AbstractContextManager[TestClient]]
WIRE = [bad for bad in MALFORMED if bad.wire]


def with_prefix(topic: str, prefix: str) -> str:
    assert topic.startswith("panel")
    return prefix + topic[len("panel") :]


def good_messages(
    prefix: str, base_ms: int, count: int
) -> tuple[list[tuple[str, bytes]], dict[tuple[str, str], list[tuple[int | None, float]]]]:
    """``count`` good messages in four forms, and the (ts, value) each series must hold.

    Explicit timestamps are distinct per series; arrival-time readings go to a panel of their
    own, so no two good readings can share a (panel, metric, ts) key.
    """
    messages: list[tuple[str, bytes]] = []
    expected: dict[tuple[str, str], list[tuple[int | None, float]]] = {}

    def expect(panel: str, metric: str, ts: int | None, value: float) -> None:
        expected.setdefault((panel, metric), []).append((ts, value))

    for i in range(count):
        ts = base_ms + i * 1000
        volts = round(225 + i * 0.1, 2)
        form = i % 4
        if form == 0:
            doc = {"value": volts, "ts": ts}
            messages.append((f"{prefix}/good-a/volt", orjson.dumps(doc)))
            expect("good-a", "voltage", ts, volts)
        elif form == 1:
            iso = datetime.fromtimestamp(ts / 1000, UTC).isoformat(timespec="milliseconds")
            doc2 = {"ts": iso, "voltage_l1": volts, "current_l1": 10.0 + i, "device": "gw"}
            messages.append((f"{prefix}/good-b/telemetry", orjson.dumps(doc2)))
            expect("good-b", "voltage_l1", ts, volts)
            expect("good-b", "current_l1", ts, 10.0 + i)
        elif form == 2:
            messages.append((f"{prefix}/good-c{i}/ampere", f"{12.5 + i}".encode()))
            expect(f"good-c{i}", "current", None, 12.5 + i)
        else:
            doc3 = {"value": 1000.0 + i, "timestamp": ts / 1000}
            messages.append((f"{prefix}/good-a/power", orjson.dumps(doc3)))
            expect("good-a", "power", ts, 1000.0 + i)
    return messages, expected


def points(client: TestClient, panel: str, metric: str, start: int) -> list[tuple[int, float]]:
    answer = client.get(
        f"/api/v1/panels/{panel}/readings",
        params={"metric": metric, "start": str(start), "end": str(int(time.time() * 1000) + 1)},
    )
    assert answer.status_code == 200, answer.text
    [series] = answer.json()["series"]
    parsed = [
        (int(datetime.fromisoformat(p["ts"]).timestamp() * 1000 + 0.5), p["value"])
        for p in series["points"]
    ]
    return sorted(parsed)


def test_malformed_corpus_between_good_readings(
    make_client: ClientFactory, mosquitto: Mosquitto, prefix: str
) -> None:
    base_ms = int(time.time() * 1000) - 600_000
    good, expected = good_messages(prefix, base_ms, len(WIRE) + 8)
    bad = [(with_prefix(b.topic, prefix), b.payload) for b in WIRE]
    interleaved: list[tuple[str, bytes]] = []
    for i, message in enumerate(good):
        interleaved.append(message)
        if i < len(bad):
            interleaved.append(bad[i])
    assert len(interleaved) == len(good) + len(bad)
    expected_readings = sum(len(v) for v in expected.values())

    with make_client(mqtt_url=mosquitto.url) as client:

        def status() -> Any:
            return client.get("/api/v1/ingest/status").json()

        wait_for(lambda: status()["broker"]["connected"], 10)
        with WindowedPublisher(
            "127.0.0.1", mosquitto.port, client_id=f"pub-{prefix}", window=50
        ) as publisher:
            publisher.publish_all(interleaved, timeout=60)

        def all_in() -> Any:
            counters = status()["counters"]
            return (
                counters["messages_received"] >= len(interleaved)
                and counters["readings_written"] >= expected_readings
                and counters
            )

        counters = wait_for(all_in, 20, interval=0.1)

        # every good reading is stored, with its value and (where sent) its timestamp
        assert counters["messages_received"] == len(interleaved)
        assert counters["readings_received"] == expected_readings
        assert counters["readings_written"] == expected_readings
        assert counters["duplicates"] == 0
        for (panel, metric), want in expected.items():
            got = points(client, panel, metric, base_ms - 1)
            assert [v for _ts, v in got] == [v for _ts, v in want], (panel, metric)
            stamped = [ts for ts, _v in want if ts is not None]
            if stamped:
                assert [ts for ts, _v in got] == stamped, (panel, metric)

        # every bad message is counted under its reason ...
        assert counters["messages_rejected"] == len(WIRE)
        assert counters["rejected_by_reason"] == dict(Counter(b.reason for b in WIRE))

        # ... and listed, newest first, with its topic, reason and a short payload preview
        listed = client.get("/api/v1/ingest/rejected", params={"limit": 1000}).json()
        assert len(listed) == len(WIRE)
        assert Counter((r["topic"], r["reason"]) for r in listed) == Counter(
            (with_prefix(b.topic, prefix)[:200], b.reason) for b in WIRE
        )
        assert [r["topic"] for r in reversed(listed)] == [t[:200] for t, _p in bad]
        for entry in listed:
            assert entry["reason_text"] == REASONS[entry["reason"]]
            assert entry["detail"]
            assert len(entry["payload"]) <= 203
        by_reason = client.get(
            "/api/v1/ingest/rejected", params={"reason": "not_utf8", "limit": 1000}
        ).json()
        assert len(by_reason) == sum(b.reason == "not_utf8" for b in WIRE)
        assert any("\ufffd" in r["payload"] for r in by_reason)

        # the consumer is still connected and still ingesting
        after = status()
        assert after["broker"]["connected"] is True
        assert after["broker"]["connects"] == 1  # never dropped by the bad input
        mosquitto_pub(mosquitto, f"{prefix}/after-flood/volt", "231.5")

        def latest() -> Any:
            answer = client.get("/api/v1/panels/after-flood/latest")
            return answer.status_code == 200 and answer.json()["values"].get("voltage")

        assert wait_for(latest, 5)["value"] == 231.5
