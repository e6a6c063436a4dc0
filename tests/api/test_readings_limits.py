"""/readings within bounds: metrics per request, points per answer (all metrics together), and
a large answer streamed in pieces rather than built in memory. SQLite and PostgreSQL."""

from __future__ import annotations

import json
import tracemalloc
from collections.abc import Callable
from contextlib import AbstractContextManager

import pytest
from fastapi.testclient import TestClient

from pelbiot.api.readings_stream import ReadingsQuery, readings_body
from pelbiot.errors import ConfigError
from pelbiot.models import Reading
from pelbiot.settings import Settings
from tests.support.readings import T0, store

ClientFactory = Callable[..., AbstractContextManager[TestClient]]
HOUR = 3_600_000


def _fill(client: TestClient, metrics: list[str], points: int) -> None:
    store(
        client, [Reading("p1", m, T0 + i * 1000, float(i)) for m in metrics for i in range(points)]
    )


def test_too_many_metrics_get_a_422_naming_the_cap(make_client: ClientFactory) -> None:
    with make_client(readings_max_metrics=2) as client:
        _fill(client, ["voltage", "current", "power"], 3)
        asked = client.get(
            "/api/v1/panels/p1/readings",
            params={"metric": ["voltage", "current", "power"], "start": T0},
        )
        assert asked.status_code == 422
        error = asked.json()["error"]
        assert "PELBIOT_READINGS_MAX_METRICS" in error["message"]
        assert error["details"]["max"] == 2
        # all metrics of a panel that has more than the cap: the same, asking to name them
        every = client.get("/api/v1/panels/p1/readings", params={"start": T0})
        assert every.status_code == 422
        assert "name them with metric=" in every.json()["error"]["message"]
        # within the cap
        two = client.get(
            "/api/v1/panels/p1/readings", params={"metric": "voltage,current", "start": T0}
        )
        assert two.status_code == 200
        assert [s["metric"] for s in two.json()["series"]] == ["current", "voltage"]


def test_points_are_capped_for_all_metrics_together_and_paging_gets_everything(
    make_client: ClientFactory,
) -> None:
    with make_client(readings_max_points=1_000) as client:
        _fill(client, ["voltage", "current"], 1_200)
        params: dict[str, object] = {
            "metric": ["voltage", "current"],
            "start": T0,
            "end": T0 + HOUR,
            "limit": 5_000,
        }
        seen: dict[str, list[float]] = {"voltage": [], "current": []}
        pages = 0
        while True:
            page = client.get("/api/v1/panels/p1/readings", params=params).json()
            pages += 1
            assert page["capped"] is (page["next_after"] is not None)
            assert sum(len(s["points"]) for s in page["series"]) <= 1_000
            for s in page["series"]:
                seen[s["metric"]] += [p["value"] for p in s["points"]]
            if page["next_after"] is None:
                break
            params["after"] = page["next_after"]
        assert pages == 3
        del params["after"]
        assert seen == {m: [float(i) for i in range(1_200)] for m in seen}
        # downsampled: wider buckets instead, still keeping every reading in some bucket
        buckets = client.get(
            "/api/v1/panels/p1/readings",
            params={**params, "max_points": 10_000},
        ).json()
        assert buckets["capped"] is True and buckets["downsampled"] is True
        assert all(len(s["points"]) <= 500 for s in buckets["series"])
        assert all(sum(p["count"] for p in s["points"]) == 1_200 for s in buckets["series"])
        # a request within the cap is not capped
        small = client.get("/api/v1/panels/p1/readings", params={**params, "limit": 100}).json()
        assert small["capped"] is False and small["next_after"] is not None


def test_a_large_answer_is_streamed_in_pieces(client: TestClient) -> None:
    runtime = client.app.state.runtime  # type: ignore[attr-defined]
    points = 45_000  # per metric; the default cap (100,000) gives each 50,000
    _fill(client, ["voltage", "current"], points)
    query = ReadingsQuery(
        "p1", ["voltage", "current"], T0, T0 + 10 * 86_400_000, None, 100_000, None
    )
    tracemalloc.start()
    try:
        pieces = []
        largest, total = 0, 0
        for piece in readings_body(runtime.store.engine, runtime.settings, query):
            largest, total = max(largest, len(piece)), total + len(piece)
            pieces.append(len(piece))
            if len(pieces) == 1:
                tracemalloc.reset_peak()  # what counts is what streaming holds
            body_tail = piece
        _current, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert body_tail == b"]}"
    assert len(pieces) > 40 and largest < 256 * 1024  # pieces of a few thousand points
    # never the whole answer (~5 MB) in memory at once: a bound, not a timing
    assert total > 4_000_000 and peak < total / 2, (total, peak)
    answer = client.get(
        "/api/v1/panels/p1/readings",
        params={"metric": ["voltage", "current"], "start": T0, "limit": 100_000},
    )
    assert answer.headers["content-type"] == "application/json"
    page = answer.json()
    assert page["capped"] is False and page["next_after"] is None
    assert [len(s["points"]) for s in page["series"]] == [points, points]
    assert json.loads(answer.content)["series"][1]["points"][-1]["value"] == points - 1
    # buckets read window by window: none lost or split at a window's edge
    buckets = client.get(
        "/api/v1/panels/p1/readings",
        params={"metric": "voltage", "start": T0, "end": T0 + 50_000_000, "max_points": 10_000},
    ).json()
    assert (buckets["bucket_ms"], buckets["capped"]) == (5_000, False)
    series = buckets["series"][0]["points"]
    assert len(series) == 9_000 and {p["count"] for p in series} == {5}
    assert [p["min"] for p in series[:2]] == [0.0, 5.0]


def test_a_raw_page_holds_every_point_up_to_its_cut_even_if_late_readings_land(
    client: TestClient,
) -> None:
    """The cut (next_after) is planned before the points are read: readings stored before the
    cut in between must be in this page, or the next page (after the cut) would skip them."""
    runtime = client.app.state.runtime  # type: ignore[attr-defined]
    store(client, [Reading("p1", "voltage", T0 + i * 1000, float(i)) for i in range(0, 40, 2)])
    query = ReadingsQuery("p1", ["voltage"], T0, T0 + HOUR, None, 10, None)
    body = readings_body(runtime.store.engine, runtime.settings, query)  # planned: cut known
    # late readings land before the cut, after it was planned and before the points are read
    store(client, [Reading("p1", "voltage", T0 + i * 1000, float(i)) for i in range(1, 19, 2)])
    page = json.loads(b"".join(body))
    assert page["next_after"] == T0 + 18_000
    first = [p["value"] for p in page["series"][0]["points"]]
    assert first == [float(i) for i in range(19)]
    rest = client.get(
        "/api/v1/panels/p1/readings",
        params={"metric": "voltage", "start": T0, "after": page["next_after"], "limit": 100},
    ).json()
    assert first + [p["value"] for p in rest["series"][0]["points"]] == [
        float(i) for i in range(0, 19)
    ] + [float(i) for i in range(20, 40, 2)]


def test_the_points_cap_must_hold_two_points_for_each_metric(
    make_settings: Callable[..., Settings],
) -> None:
    """A downsampled answer gives each metric at least 2 buckets: 1,000 metrics under a cap of
    1,000 points would get 2,000. Such settings are refused at start, naming both."""
    with pytest.raises(ConfigError) as refused:
        make_settings(readings_max_points=1_000, readings_max_metrics=1_000)
    message = str(refused.value)
    assert "PELBIOT_READINGS_MAX_POINTS" in message and "PELBIOT_READINGS_MAX_METRICS" in message
    assert "2000" in message or "2,000" in message
    settings = make_settings(readings_max_points=2_000, readings_max_metrics=1_000)
    assert settings.readings_max_points == 2 * settings.readings_max_metrics
