"""Raw readings older than the retention window are deleted; newer ones and latest values stay."""

from __future__ import annotations

import time
from collections.abc import Callable
from contextlib import AbstractContextManager

from fastapi.testclient import TestClient

from pelbiot.models import Reading
from tests.support.readings import store
from tests.support.waiting import wait_for

ClientFactory = Callable[..., AbstractContextManager[TestClient]]


def test_retention_purges_old_raw_rows_only(make_client: ClientFactory) -> None:
    now = int(time.time() * 1000)
    old, recent = now - 3 * 86_400_000, now - 3_600_000
    with make_client() as client:
        store(
            client,
            [
                Reading("trafo1", "voltage", old, 225.0),
                Reading("trafo1", "voltage", recent, 231.0),
                Reading("trafo2", "current", old, 12.0),
            ],
        )
    with make_client(raw_retention_days=2) as client:
        params = {"metric": "voltage", "start": old - 1000, "end": now}

        def purged() -> bool:
            series = client.get("/api/v1/panels/trafo1/readings", params=params).json()["series"]
            return [p["value"] for p in series[0]["points"]] == [231.0]

        wait_for(purged, 5)
        # the panel whose only reading expired keeps its latest value and registry entry
        latest = client.get("/api/v1/panels/trafo2/latest").json()["values"]
        assert latest["current"]["value"] == 12.0


def test_purge_works_through_long_history_in_day_sized_steps(make_client: ClientFactory) -> None:
    # Ten days of history with a gap, purged in one call: every old row goes, the rest stays.
    now = int(time.time() * 1000)
    day = 86_400_000
    stamps = [now - d * day - m * 600_000 for d in (10, 9, 8, 5, 4) for m in range(0, 144, 7)]
    recent = [now - 3_600_000, now - 60_000]
    with make_client() as client:
        store(client, [Reading("trafo1", "voltage", ts, 230.0) for ts in stamps])
        store(client, [Reading("trafo1", "voltage", ts, 231.0 + i) for i, ts in enumerate(recent)])
        runtime = client.app.state.runtime  # type: ignore[attr-defined]
        cutoff = now - 2 * day
        assert runtime.store.purge_before(cutoff) == sum(1 for ts in stamps if ts < cutoff)
        params = {"metric": "voltage", "start": now - 11 * day, "end": now}
        series = client.get("/api/v1/panels/trafo1/readings", params=params).json()["series"]
        assert [p["value"] for p in series[0]["points"]] == [231.0, 232.0]
