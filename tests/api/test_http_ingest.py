"""HTTP ingest answers per item after the commit: stored, duplicate, partial or rejected, with
what only the writer knows (unknown panels, caps); a key limited to one panel never gets
another panel's input into the rejected ring. Runs on SQLite and PostgreSQL."""

from __future__ import annotations

import time
from collections.abc import Callable
from contextlib import AbstractContextManager

from fastapi.testclient import TestClient

from tests.support.ingest import make_key, post_readings

ClientFactory = Callable[..., AbstractContextManager[TestClient]]


def _now_s() -> int:
    return int(time.time()) - 60


def test_the_answer_says_per_item_what_the_writer_stored(make_client: ClientFactory) -> None:
    with make_client(auto_create_panels=False) as client:
        assert client.post("/api/v1/panels", json={"id": "known"}).status_code == 201
        key = make_key(client, ["ingest"])["key"]
        ts = _now_s()
        answer = post_readings(
            client,
            key,
            [
                {"panel": "known", "metric": "voltage", "value": 230.0, "ts": ts},
                {"panel": "stranger", "metric": "voltage", "value": 231.0, "ts": ts},
                {"panel": "known", "ts": ts, "values": {"current": 5.0, "frequency": 50.0}},
                {"panel": "known", "metric": "voltage", "value": 999.0, "ts": ts},  # same key
            ],
        )
        assert answer.status_code == 200, answer.text
        body = answer.json()
        assert (body["accepted"], body["duplicates"]) == (3, 1)
        assert body["rejected"] == [
            {
                "index": 1,
                "metric": "voltage",
                "reason": "unknown_panel",
                "detail": "panel is not registered and auto-creation is off",
            }
        ]
        assert [(i["status"], i["stored"], i["duplicates"]) for i in body["items"]] == [
            ("stored", ["voltage"], []),
            ("rejected", [], []),
            ("stored", ["current", "frequency"], []),
            ("duplicate", [], ["voltage"]),
        ]
        # the same request again: everything was stored before, nothing new
        again = post_readings(
            client, key, {"panel": "known", "metric": "voltage", "value": 1.0, "ts": ts}
        ).json()
        assert (again["accepted"], again["duplicates"], again["rejected"]) == (0, 1, [])
        assert again["items"][0]["status"] == "duplicate"
        history = client.get(
            "/api/v1/panels/known/readings", params={"metric": "voltage", "start": ts - 1}
        ).json()
        assert [p["value"] for p in history["series"][0]["points"]] == [230.0]


def test_the_caps_are_told_per_item(make_client: ClientFactory) -> None:
    with make_client(max_panels=1, max_metrics_per_panel=2) as client:
        key = make_key(client, ["ingest"])["key"]
        ts = _now_s()
        body = post_readings(
            client,
            key,
            [
                {
                    "panel": "a",
                    "ts": ts,
                    "values": {"voltage": 230.0, "current": 1.0, "power": 5.0},
                },
                {"panel": "b", "metric": "voltage", "value": 230.0, "ts": ts},
            ],
        ).json()
        assert body["accepted"] == 2
        assert [(r["index"], r["metric"], r["reason"]) for r in body["rejected"]] == [
            (0, "voltage", "too_many_metrics"),  # new metrics are taken in name order
            (1, "voltage", "too_many_panels"),
        ]
        assert [i["status"] for i in body["items"]] == ["partial", "rejected"]
        ring = client.get("/api/v1/ingest/rejected").json()
        assert {r["reason"] for r in ring} == {"too_many_metrics", "too_many_panels"}


def test_a_key_for_one_panel_cannot_write_another_panels_rejections(
    make_client: ClientFactory,
) -> None:
    with make_client() as client:
        for panel in ("pa", "pb"):
            assert client.post("/api/v1/panels", json={"id": panel}).status_code == 201
        key = make_key(client, ["ingest"], panel_id="pa")["key"]
        ts = _now_s()
        answer = post_readings(
            client,
            key,
            [
                {"panel": "pa", "metric": "voltage", "value": 230.0, "ts": ts},
                # nothing of pb's may be decoded, stored or kept in the ring
                {"panel": "pb", "metric": "voltage", "value": "forged", "ts": ts},
                {"panel": "pb", "metric": "voltage", "value": 1e12, "ts": ts},
            ],
        )
        assert answer.status_code == 403, answer.text
        assert answer.json()["error"]["code"] == "forbidden"
        assert "pb" in answer.json()["error"]["message"]
        assert client.get("/api/v1/ingest/rejected").json() == []
        assert client.get("/api/v1/panels/pa/latest").json()["values"] == {}
        # its own panel still works, with its own rejections recorded
        own = post_readings(
            client, key, {"panel": "pa", "metric": "voltage", "value": "x", "ts": ts}
        )
        assert own.status_code == 200
        assert [r["topic"].split("/")[1] for r in client.get("/api/v1/ingest/rejected").json()] == [
            "pa"
        ]


def test_a_fast_device_clock_does_not_freeze_latest(client: TestClient) -> None:
    key = make_key(client, ["ingest"])["key"]
    now = int(time.time())
    ahead = {"panel": "p1", "metric": "voltage", "value": 250.0, "ts": now + 60}
    assert post_readings(client, key, ahead).json()["accepted"] == 1  # within the tolerance
    real = {"panel": "p1", "metric": "voltage", "value": 231.0, "ts": now}
    assert post_readings(client, key, real).json()["accepted"] == 1
    latest = client.get("/api/v1/panels/p1/latest").json()["values"]["voltage"]
    assert latest["value"] == 231.0
    assert client.get("/api/v1/latest").json()[0]["values"]["voltage"]["value"] == 231.0
    history = client.get(
        "/api/v1/panels/p1/readings",
        params={"metric": "voltage", "start": now - 1, "end": now + 120},
    ).json()
    assert [p["value"] for p in history["series"][0]["points"]] == [231.0, 250.0]
