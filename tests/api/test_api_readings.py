"""History over REST: ranges in every time form, paging, server-side downsampling."""

from __future__ import annotations

from fastapi.testclient import TestClient

from pelbiot.models import Reading
from tests.support.readings import store

T0 = 1_795_000_000_000  # 2026-11-18T18:06:40+07:00


def seed_day(client: TestClient) -> None:
    """One reading a minute for a day on two metrics, with one spike and one dip."""
    readings = []
    for i in range(1440):
        ts = T0 + i * 60_000
        volts = 230.0 + (i % 10) * 0.1
        if i == 700:
            volts = 260.0
        if i == 900:
            volts = 180.0
        readings.append(Reading("trafo1", "voltage", ts, volts))
        readings.append(Reading("trafo1", "current", ts, 10.0 + i / 1000))
    store(client, readings)


def test_raw_range_accepts_iso_epoch_seconds_and_millis(client: TestClient) -> None:
    seed_day(client)
    forms = [
        {"start": "2026-11-18T18:06:40+07:00", "end": "2026-11-18T18:16:40+07:00"},
        {"start": "2026-11-18T18:06:40", "end": "2026-11-18T18:16:40"},  # naive = WIB
        {"start": str(T0 // 1000), "end": str(T0 // 1000 + 600)},
        {"start": str(T0), "end": str(T0 + 600_000)},
    ]
    for params in forms:
        body = client.get(
            "/api/v1/panels/trafo1/readings", params={"metric": "voltage", **params}
        ).json()
        points = body["series"][0]["points"]
        assert len(points) == 10, params  # end is exclusive
        assert points[0]["ts"] == "2026-11-18T18:06:40.000+07:00"
        assert body["downsampled"] is False


def test_several_metrics_and_aliases(client: TestClient) -> None:
    seed_day(client)
    body = client.get(
        "/api/v1/panels/trafo1/readings",
        params=[("metric", "volt"), ("metric", "ampere"), ("start", T0), ("end", T0 + 120_000)],
    ).json()
    assert sorted(s["metric"] for s in body["series"]) == ["current", "voltage"]
    units = {s["metric"]: s["unit"] for s in body["series"]}
    assert units == {"current": "A", "voltage": "V"}


def test_raw_paging_returns_everything_once(client: TestClient) -> None:
    seed_day(client)
    seen: list[str] = []
    params: dict[str, object] = {
        "metric": "voltage",
        "start": T0,
        "end": T0 + 86_400_000,
        "limit": 500,
    }
    pages = 0
    while True:
        body = client.get("/api/v1/panels/trafo1/readings", params=params).json()
        pages += 1
        seen.extend(p["ts"] for p in body["series"][0]["points"])
        if body["next_after"] is None:
            break
        params["after"] = body["next_after"]
    assert pages == 3
    assert len(seen) == 1440
    assert len(set(seen)) == 1440


def test_downsampling_keeps_minimum_and_maximum(client: TestClient) -> None:
    seed_day(client)
    body = client.get(
        "/api/v1/panels/trafo1/readings",
        params={"metric": "voltage", "start": T0, "end": T0 + 86_400_000, "max_points": 50},
    ).json()
    assert body["downsampled"] is True
    points = body["series"][0]["points"]
    assert 1 < len(points) <= 50
    assert sum(p["count"] for p in points) == 1440
    assert max(p["max"] for p in points) == 260.0
    assert min(p["min"] for p in points) == 180.0
    for p in points:
        assert p["min"] <= p["value"] <= p["max"]
    stamps = [p["ts"] for p in points]
    assert stamps == sorted(stamps)


def test_bad_queries_get_clear_errors(client: TestClient) -> None:
    seed_day(client)
    url = "/api/v1/panels/trafo1/readings"
    backwards = client.get(url, params={"start": T0 + 1000, "end": T0})
    assert backwards.status_code == 422
    assert "start must be before end" in backwards.json()["error"]["message"]
    garbage = client.get(url, params={"start": "yesterday-ish"})
    assert garbage.status_code == 422
    assert garbage.json()["error"]["message"].startswith("start:")
    assert client.get(url, params={"metric": "bad name!"}).status_code == 422
    assert client.get(url, params={"max_points": 1}).status_code == 422
    assert client.get("/api/v1/panels/nope/readings").status_code == 404
