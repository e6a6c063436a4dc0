"""The live feed: coalescing, slow clients, panel status, and the WebSocket endpoint."""

from __future__ import annotations

import asyncio
import time

import pytest
from fastapi.testclient import TestClient

from pelbiot.ingest.recorder import newest_per_series
from pelbiot.live.hub import OFFLINE, ONLINE, STALE, LiveHub, StatusPolicy
from pelbiot.models import Committed, Reading
from tests.support.readings import store


class FakeClock:
    def __init__(self, start: float = 1_795_000_000.0) -> None:
        self.now = start

    def __call__(self) -> float:
        return self.now


def drain(client_frames: asyncio.Queue[dict[str, object]]) -> list[dict[str, object]]:
    frames = []
    while not client_frames.empty():
        frames.append(client_frames.get_nowait())
    return frames


def reading(panel: str, clock: FakeClock, value: float, metric: str = "voltage") -> Reading:
    return Reading(panel, metric, int(clock.now * 1000), value)


def batch(readings: list[Reading]) -> Committed:
    """What the writer hands the hub after committing ``readings``."""
    return Committed(readings, newest_per_series(readings))


def test_readings_are_coalesced_to_the_maximum_rate() -> None:
    async def scenario() -> None:
        clock = FakeClock()
        hub = LiveHub(max_rate_hz=2.0, clock=clock)
        hub._loop = asyncio.get_running_loop()
        client = hub.connect()
        assert drain(client.frames)[0]["type"] == "snapshot"
        sent = []
        # 100 readings over 5 s (20 per second) for one panel
        for i in range(100):
            hub.on_batch(batch([reading("trafo1", clock, 220 + i)]))
            hub._drain_and_send()
            sent += [f for f in drain(client.frames) if f["type"] == "reading"]
            clock.now += 0.05
        assert 9 <= len(sent) <= 11  # 2 per second over 5 s
        hub._flush_due()
        clock.now += 1
        hub._drain_and_send()
        sent += [f for f in drain(client.frames) if f["type"] == "reading"]
        # nothing is lost from the screen: the newest value is always delivered
        assert sent[-1]["values"] == {"voltage": 319.0}
        stamps = [f["ts"] for f in sent]
        assert stamps == sorted(stamps)

    asyncio.run(scenario())


def test_values_of_different_metrics_merge_into_one_frame() -> None:
    async def scenario() -> None:
        clock = FakeClock()
        hub = LiveHub(max_rate_hz=1.0, clock=clock)
        hub._loop = asyncio.get_running_loop()
        client = hub.connect()
        drain(client.frames)
        hub.on_batch(batch([reading("p", clock, 230.0)]))
        hub._drain_and_send()
        clock.now += 0.2
        hub.on_batch(batch([reading("p", clock, 12.0, "current")]))
        hub.on_batch(batch([reading("p", clock, 231.0)]))
        hub._drain_and_send()
        clock.now += 1.0
        hub._drain_and_send()
        frames = [f for f in drain(client.frames) if f["type"] == "reading"]
        assert frames[0]["values"] == {"voltage": 230.0}
        assert frames[1]["values"] == {"current": 12.0, "voltage": 231.0}

    asyncio.run(scenario())


def test_a_slow_client_loses_old_frames_is_told_and_gets_a_snapshot() -> None:
    async def scenario() -> None:
        clock = FakeClock()
        hub = LiveHub(max_rate_hz=1000.0, client_queue_size=10, clock=clock)
        hub._loop = asyncio.get_running_loop()
        slow = hub.connect()
        fast = hub.connect(["p0"])
        for i in range(30):
            hub.on_batch(batch([reading(f"p{i % 3}", clock, 200.0 + i)]))
            hub._drain_and_send()
            clock.now += 0.01
            drain(fast.frames)  # the fast client keeps up
        frames = drain(slow.frames)
        kinds = [f["type"] for f in frames]
        assert "dropped" in kinds
        assert slow.dropped > 0 and fast.dropped == 0
        drop_at = len(kinds) - 1 - kinds[::-1].index("dropped")
        resync = frames[drop_at + 1]
        assert resync["type"] == "snapshot"
        panels = resync["panels"]
        assert set(panels) == {"p0", "p1", "p2"}
        assert len(frames) <= 10

    asyncio.run(scenario())


def test_status_goes_online_stale_offline_and_back() -> None:
    async def scenario() -> None:
        clock = FakeClock()
        policy = StatusPolicy(
            stale_factor=3, offline_factor=10, stale_floor_s=5, offline_floor_s=20
        )
        hub = LiveHub(clock=clock, policy=policy)
        hub._loop = asyncio.get_running_loop()
        client = hub.connect()
        drain(client.frames)
        statuses = []
        for _ in range(5):  # reports every 2 s
            hub.on_batch(batch([reading("trafo1", clock, 230.0)]))
            hub._drain_and_send()
            clock.now += 2.0
        statuses += [f["status"] for f in drain(client.frames) if f["type"] == "status"]
        assert statuses == [ONLINE]
        assert hub.panel_status("trafo1")["interval_s"] == pytest.approx(2.0)
        for _ in range(25):  # silent for 25 s
            clock.now += 1.0
            hub._check_status(clock.now)
        statuses += [f["status"] for f in drain(client.frames) if f["type"] == "status"]
        assert statuses == [ONLINE, STALE, OFFLINE]
        hub.on_batch(batch([reading("trafo1", clock, 230.0)]))
        hub._drain_and_send()
        statuses += [f["status"] for f in drain(client.frames) if f["type"] == "status"]
        assert statuses == [ONLINE, STALE, OFFLINE, ONLINE]

    asyncio.run(scenario())


def test_subscription_filters_panels_and_access_rules_hide_others() -> None:
    async def scenario() -> None:
        clock = FakeClock()
        hub = LiveHub(clock=clock, max_rate_hz=1000)
        hub._loop = asyncio.get_running_loop()
        only_a = hub.connect(["a"])
        scoped = hub.connect(visible=frozenset({"a"}))
        drain(only_a.frames), drain(scoped.frames)
        hub.on_batch(batch([reading("a", clock, 1.0), reading("b", clock, 2.0)]))
        hub._drain_and_send()
        assert {f.get("panel") for f in drain(only_a.frames)} == {"a"}
        assert {f.get("panel") for f in drain(scoped.frames)} == {"a"}
        hub.subscribe(only_a, ["*"])
        snapshot = drain(only_a.frames)[-1]
        assert set(snapshot["panels"]) == {"a", "b"}

    asyncio.run(scenario())


def test_websocket_sends_snapshot_then_live_readings(client: TestClient) -> None:
    now = int(time.time() * 1000)
    store(client, [Reading("trafo1", "voltage", now - 1000, 229.0)])
    with client.websocket_connect("/api/v1/live") as ws:
        snapshot = ws.receive_json()
        assert snapshot["type"] == "snapshot"
        ws.send_json({"type": "subscribe", "panels": ["trafo1"]})
        snapshot = ws.receive_json()
        assert snapshot["type"] == "snapshot"
        assert snapshot["panels"]["trafo1"]["values"] == {"voltage": 229.0}
        store(
            client,
            [Reading("trafo1", "voltage", now, 231.5), Reading("trafo2", "voltage", now, 100.0)],
        )
        frame = ws.receive_json()
        while frame["type"] != "reading":
            frame = ws.receive_json()
        assert frame == {
            "type": "reading",
            "panel": "trafo1",
            "ts": now,
            "values": {"voltage": 231.5},
        }
        ws.send_json({"type": "ping"})
        kinds = set()
        while "pong" not in kinds:
            kinds.add(ws.receive_json()["type"])
        ws.send_text("not json")
        while (frame := ws.receive_json())["type"] != "error":
            pass
        assert "JSON" in frame["message"]


def test_websocket_sends_ingest_status(make_client) -> None:  # type: ignore[no-untyped-def]
    with (
        make_client(live_status_interval_s=0.1) as client,
        client.websocket_connect("/api/v1/live") as ws,
    ):
        kinds = set()
        while "ingest" not in kinds:
            frame = ws.receive_json()
            kinds.add(frame["type"])
        assert frame["db_ok"] is True
        assert "queue_depth" in frame


def test_live_feed_closes_when_the_session_ends(make_client) -> None:  # type: ignore[no-untyped-def]
    from starlette.websockets import WebSocketDisconnect

    from pelbiot.security.permissions import Role
    from tests.support.accounts import login_as

    with make_client(login=False, live_session_recheck_s=0.2) as client:
        headers = login_as(client, "watcher", Role.VIEWER)
        with client.websocket_connect("/api/v1/live", headers=headers) as ws:
            assert ws.receive_json()["type"] == "snapshot"
            assert client.post("/api/v1/auth/logout").status_code == 204
            with pytest.raises(WebSocketDisconnect) as closed:
                while True:
                    ws.receive_json()
            assert closed.value.code == 1008


def test_change_signal_numbers_changes_and_says_what_changed() -> None:
    from pelbiot.live.changes import ChangeSignal

    async def scenario() -> None:
        signal = ChangeSignal()
        assert await signal.wait(0, 0.0) is False  # binds the loop; nothing changed
        signal.notify(("user", 7))
        signal.notify(("panel", "a"))
        assert await signal.wait(0, 60.0) is True  # already past: returns at once
        assert signal.changes_since(0) == {("user", 7), ("panel", "a")}
        assert signal.changes_since(1) == {("panel", "a")}
        assert signal.changes_since(2) == set()
        for i in range(2000):  # more than it remembers
            signal.notify(("panel", str(i)))
        await asyncio.sleep(0)  # one loop turn runs the queued notifications
        assert signal.generation == 2002
        assert signal.changes_since(2) is None  # too far behind: re-check everything
        assert signal.changes_since(2001) == {("panel", "1999")}

    asyncio.run(scenario())


def test_a_change_before_any_feed_waited_is_numbered_not_dropped() -> None:
    """A feed reads the change number before computing its rights; a change made then, before
    any feed of the process has waited once, must still move the number."""
    from pelbiot.live.changes import ChangeSignal

    async def scenario() -> None:
        signal = ChangeSignal()
        seen = signal.generation
        signal.notify(("panel", "a"))  # nobody has waited on this signal yet
        assert await signal.wait(seen, 0.0) is True
        assert signal.changes_since(seen) == {("panel", "a")}

    asyncio.run(scenario())
