"""Region scoping on the live feed never touches the database from the event loop.

A scoped client's visible panels are computed when it connects and refreshed off-loop on panel
changes and periodically; a hub tick only tests membership. The directory loader is watched (and
then broken, an injected fault) to show it.
"""

from __future__ import annotations

import asyncio
import logging
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager
from typing import Any

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import insert

from pelbiot.models import Reading
from pelbiot.security.permissions import Role
from pelbiot.security.regions import PanelDirectory
from pelbiot.storage import schema
from tests.support.accounts import login_as
from tests.support.live import close_code, frames_until, panels_in, reading_of
from tests.support.readings import store
from tests.support.waiting import wait_for

pytestmark = pytest.mark.timeout(60)  # a frame that never comes must not hang the run


class WatchedLoader:
    """Wraps the directory's loader: records loads made on an event loop, can be broken."""

    def __init__(self, load: Callable[[], dict[str, str | None]]) -> None:
        self._load = load
        self.on_loop: list[str] = []
        self.loads = 0
        self.broken = False

    def __call__(self) -> dict[str, str | None]:
        try:
            asyncio.get_running_loop()
            self.on_loop.append(threading.current_thread().name)
        except RuntimeError:
            pass  # a worker thread: where a blocking load belongs
        self.loads += 1
        if self.broken:
            raise RuntimeError("injected fault: the store is unreachable")
        return self._load()


@pytest.fixture
def scoped(
    make_client: Callable[..., AbstractContextManager[TestClient]],
) -> Iterator[tuple[TestClient, dict[str, str], dict[str, str], WatchedLoader]]:
    """The app with panels n1 (north) and s1 (south), root's and a north viewer's headers."""
    with make_client(live_session_recheck_s=0.2) as client:
        admin = dict(client.headers)
        for panel_id, region in (("n1", "north"), ("s1", "south")):
            created = client.post(
                "/api/v1/panels", json={"id": panel_id, "region": region}, headers=admin
            )
            assert created.status_code == 201, created.text
        directory = client.app.state.runtime.directory  # type: ignore[attr-defined]
        loader = WatchedLoader(directory._load)
        directory._load = loader
        directory.invalidate()
        viewer = login_as(client, "north-viewer", Role.VIEWER, regions=["north"])
        yield client, admin, viewer, loader


def now_ms() -> int:
    return int(time.time() * 1000)


def test_hub_ticks_deliver_scoped_frames_without_the_store_and_while_it_fails(
    scoped: tuple[TestClient, dict[str, str], dict[str, str], WatchedLoader],
) -> None:
    client, _admin, viewer, loader = scoped
    with client.websocket_connect("/api/v1/live", headers=viewer) as ws:
        assert ws.receive_json()["type"] == "snapshot"
        t = now_ms()
        store(client, [Reading("s1", "voltage", t, 1.0), Reading("n1", "voltage", t, 2.0)])
        frames = frames_until(ws, reading_of("n1"))
        assert "s1" not in panels_in(frames)
        loader.broken = True  # the fault: every load from now on fails
        loads = loader.loads
        client.app.state.runtime.directory.invalidate()  # type: ignore[attr-defined]
        # The periodic refresh tries (off the loop), fails, and the feed keeps its rights.
        wait_for(lambda: loader.loads > loads, 10, "a failed refresh")
        for i in range(1, 4):
            store(
                client,
                [
                    Reading("s1", "voltage", t + i, 10.0 + i),
                    Reading("n1", "voltage", t + i, 20.0 + i),
                ],
            )
            frames = frames_until(ws, lambda f, i=i: reading_of("n1")(f) and f["ts"] == t + i)
            assert "s1" not in panels_in(frames)
        assert frames[-1]["values"] == {"voltage": 23.0}
    assert loader.on_loop == []


def test_new_panels_in_the_region_become_visible_after_a_refresh(
    scoped: tuple[TestClient, dict[str, str], dict[str, str], WatchedLoader],
) -> None:
    client, admin, viewer, loader = scoped
    with client.websocket_connect("/api/v1/live", headers=viewer) as ws:
        assert ws.receive_json()["type"] == "snapshot"
        # Created through the API: the panel change wakes the feed, which re-scopes it.
        created = client.post("/api/v1/panels", json={"id": "n2", "region": "north"}, headers=admin)
        assert created.status_code == 201
        frames_until(ws, lambda f: f["type"] == "snapshot")
        t = now_ms()
        store(client, [Reading("n2", "voltage", t, 3.0)])
        frames_until(ws, reading_of("n2"))
        # Created by another process (no event here): the periodic refresh finds it.
        runtime = client.app.state.runtime  # type: ignore[attr-defined]
        with runtime.engine.begin() as conn:
            conn.execute(insert(schema.panels).values(_panel_row("n3", "north")))
        frames_until(ws, lambda f: f["type"] == "snapshot")
        store(client, [Reading("n3", "voltage", t, 4.0), Reading("s1", "voltage", t, 5.0)])
        frames = frames_until(ws, reading_of("n3"))
        assert "s1" not in panels_in(frames)
        # A panel moved out of the region leaves the screen.
        moved = client.patch("/api/v1/panels/n2", json={"region": "south"}, headers=admin)
        assert moved.status_code == 200, moved.text
        frames = frames_until(ws, lambda f: f["type"] == "removed")
        assert frames[-1] == {"type": "removed", "panel": "n2", "reason": "access"}
    assert loader.on_loop == []


def _panel_row(panel_id: str, region: str) -> dict[str, Any]:
    now = now_ms()
    return {
        "id": panel_id,
        "name": panel_id,
        "region": region,
        "phases": 3,
        "created_ms": now,
        "updated_ms": now,
    }


def test_a_scoped_feed_opened_while_the_store_fails_is_told_to_try_again(
    scoped: tuple[TestClient, dict[str, str], dict[str, str], WatchedLoader],
    caplog: pytest.LogCaptureFixture,
) -> None:
    client, admin, viewer, loader = scoped
    loader.broken = True
    client.app.state.runtime.directory.invalidate()  # type: ignore[attr-defined]
    with client.websocket_connect("/api/v1/live", headers=viewer) as ws:
        assert close_code(ws) == (1013, "try again later")  # its panels are unknown: fail closed
    assert [r for r in caplog.records if r.levelno >= logging.ERROR] == []
    # An unscoped caller needs no lookup: the admin's feed opens all the same.
    with client.websocket_connect("/api/v1/live", headers=admin) as ws:
        assert ws.receive_json()["type"] == "snapshot"
    loader.broken = False
    with client.websocket_connect("/api/v1/live", headers=viewer) as ws:
        assert ws.receive_json()["type"] == "snapshot"


def test_a_directory_load_overtaken_by_a_change_is_not_kept_as_fresh() -> None:
    """An invalidate arriving while the directory loads: that load may predate the change, so
    it must not be cached as fresh for the TTL (the clock is frozen: only reloads can help)."""
    regions: dict[str, str | None] = {"s1": "south"}
    loads: list[dict[str, str | None]] = []

    def load() -> dict[str, str | None]:
        read = dict(regions)  # what the query saw
        if not loads:  # a panel change commits (and invalidates) while this load runs
            regions["s1"] = "north"
            directory.invalidate("s1")
        loads.append(read)
        return read

    directory = PanelDirectory(load, clock=lambda: 0.0)
    assert directory.region("s1") == "south"  # this caller's load, read before the change
    assert directory.region("s1") == "north"  # not cached as fresh: the next call reloads
    assert directory.region("s1") == "north" and len(loads) == 2  # now fresh


def test_a_change_while_a_feed_computes_its_rights_reaches_it_at_once(
    make_client: Callable[..., AbstractContextManager[TestClient]],
) -> None:
    """A panel moves into a viewer's region while the viewer's feed computes what it may see
    (injected in the directory's load): the feed re-scopes at once, not at the periodic check
    (an hour here; a missed change hangs until the test's timeout)."""
    with make_client(live_session_recheck_s=3600.0) as client:
        admin = dict(client.headers)
        for panel_id, region in (("n1", "north"), ("s1", "south")):
            created = client.post(
                "/api/v1/panels", json={"id": panel_id, "region": region}, headers=admin
            )
            assert created.status_code == 201, created.text
        runtime = client.app.state.runtime  # type: ignore[attr-defined]
        directory = runtime.directory
        load = directory._load
        armed = threading.Event()

        def load_then_move() -> dict[str, str | None]:
            regions: dict[str, str | None] = load()
            if armed.is_set():
                armed.clear()
                runtime.store.update_panel("s1", {"region": "north"})  # invalidates, notifies
            return regions

        directory._load = load_then_move
        viewer = login_as(client, "north-viewer", Role.VIEWER, regions=["north"])
        directory.invalidate()
        armed.set()
        with client.websocket_connect("/api/v1/live", headers=viewer) as ws:
            first = ws.receive_json()
            assert first["type"] == "snapshot"
            assert not armed.is_set()  # the change was made during the feed's own lookup
            frames_until(ws, lambda f: f["type"] == "snapshot")  # re-scoped: s1 is north now
            t = now_ms()
            store(client, [Reading("s1", "voltage", t, 7.0)])
            frames_until(ws, reading_of("s1"))
