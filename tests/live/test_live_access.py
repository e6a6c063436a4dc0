"""The live feed's credentials: rights kept current on an open socket, secrets kept out of URLs,
and frames the protocol does not speak refused cleanly."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager

import pytest
from fastapi.testclient import TestClient
from starlette.websockets import WebSocketDisconnect

from pelbiot.models import Reading
from pelbiot.security.permissions import Role
from tests.support.accounts import TEST_PASSWORD, login_as
from tests.support.live import (
    close_code,
    frames_until,
    panels_in,
    reading_of,
    readings_of_all,
)
from tests.support.readings import store

pytestmark = pytest.mark.timeout(60)  # a close that never comes must not hang the run

# Long enough that only an event (not the periodic re-check) can explain a prompt reaction.
NEVER_S = 3600.0


@pytest.fixture
def site(
    make_client: Callable[..., AbstractContextManager[TestClient]],
) -> Iterator[tuple[TestClient, dict[str, str]]]:
    """The app (rights re-checked on events only) with n1 (north), s1 (south); root's headers."""
    with make_client(live_session_recheck_s=NEVER_S) as client:
        admin = dict(client.headers)
        for panel_id, region in (("n1", "north"), ("s1", "south")):
            created = client.post(
                "/api/v1/panels", json={"id": panel_id, "region": region}, headers=admin
            )
            assert created.status_code == 201, created.text
        yield client, admin


def user_id(client: TestClient, username: str) -> int:
    users = client.app.state.runtime.users  # type: ignore[attr-defined]
    return int(users.by_name(username)["id"])


def both(client: TestClient, value: float) -> int:
    ts = int(time.time() * 1000) + int(value)
    store(client, [Reading("s1", "voltage", ts, value), Reading("n1", "voltage", ts, value)])
    return ts


# -- rights reach an open socket ---------------------------------------------------------------


def test_disabling_a_user_closes_their_socket(site: tuple[TestClient, dict[str, str]]) -> None:
    client, admin = site
    viewer = login_as(client, "leaving", Role.VIEWER)
    with client.websocket_connect("/api/v1/live", headers=viewer) as ws:
        assert ws.receive_json()["type"] == "snapshot"
        changed = client.patch(
            f"/api/v1/users/{user_id(client, 'leaving')}", json={"disabled": True}, headers=admin
        )
        assert changed.status_code == 200, changed.text
        assert close_code(ws) == (1008, "account disabled")


def test_narrowing_a_viewers_regions_stops_the_removed_regions_frames(
    site: tuple[TestClient, dict[str, str]],
) -> None:
    client, admin = site
    viewer = login_as(client, "roamer", Role.VIEWER, regions=["north", "south"])
    with client.websocket_connect("/api/v1/live", headers=viewer) as ws:
        assert ws.receive_json()["type"] == "snapshot"
        both(client, 1.0)
        readings_of_all(ws, {"n1", "s1"})
        changed = client.patch(
            f"/api/v1/users/{user_id(client, 'roamer')}", json={"regions": ["north"]}, headers=admin
        )
        assert changed.status_code == 200, changed.text
        frames = frames_until(ws, lambda f: f["type"] == "snapshot")
        assert {"type": "access", "reason": "your role or regions changed"} in frames
        assert {"type": "removed", "panel": "s1", "reason": "access"} in frames
        assert set(frames[-1]["panels"]) == {"n1"}
        for value in (2.0, 3.0):
            ts = both(client, value)
            frames = frames_until(ws, lambda f, ts=ts: reading_of("n1")(f) and f["ts"] == ts)
            assert "s1" not in panels_in(frames)


def test_promoting_a_viewer_to_admin_widens_the_feed(
    site: tuple[TestClient, dict[str, str]],
) -> None:
    client, admin = site
    viewer = login_as(client, "rising", Role.VIEWER, regions=["north"])
    with client.websocket_connect("/api/v1/live", headers=viewer) as ws:
        assert ws.receive_json()["type"] == "snapshot"
        changed = client.patch(
            f"/api/v1/users/{user_id(client, 'rising')}", json={"role": "admin"}, headers=admin
        )
        assert changed.status_code == 200, changed.text
        frames = frames_until(ws, lambda f: f["type"] == "snapshot")
        assert {"type": "access", "reason": "your role or regions changed"} in frames
        both(client, 1.0)
        readings_of_all(ws, {"n1", "s1"})


def test_rights_changed_elsewhere_reach_the_socket_at_the_next_periodic_check(
    make_client: Callable[..., AbstractContextManager[TestClient]],
) -> None:
    """Another process (a CLI, another API worker) changes the account: no event here."""
    with make_client(live_session_recheck_s=0.2) as client:
        admin = dict(client.headers)
        for panel_id, region in (("n1", "north"), ("s1", "south")):
            client.post("/api/v1/panels", json={"id": panel_id, "region": region}, headers=admin)
        viewer = login_as(client, "remote", Role.VIEWER, regions=["north", "south"])
        runtime = client.app.state.runtime  # type: ignore[attr-defined]
        with client.websocket_connect("/api/v1/live", headers=viewer) as ws:
            assert ws.receive_json()["type"] == "snapshot"
            both(client, 1.0)
            readings_of_all(ws, {"n1", "s1"})
            with runtime.engine.begin() as conn:
                conn.exec_driver_sql(
                    "UPDATE users SET regions = '[\"north\"]' WHERE username = 'remote'"
                )
            frames = frames_until(ws, lambda f: f["type"] == "snapshot")
            assert {"type": "removed", "panel": "s1", "reason": "access"} in frames
            assert set(frames[-1]["panels"]) == {"n1"}
            with runtime.engine.begin() as conn:
                conn.exec_driver_sql("UPDATE users SET disabled = TRUE WHERE username = 'remote'")
            assert close_code(ws) == (1008, "account disabled")


def test_a_revoked_key_loses_its_socket(site: tuple[TestClient, dict[str, str]]) -> None:
    """The revocation itself wakes the key's feeds (no periodic re-check in this app)."""
    client, admin = site
    created = client.post(
        "/api/v1/api-keys", json={"name": "wallboard", "scopes": ["read"]}, headers=admin
    )
    assert created.status_code == 201, created.text
    key = created.json()
    client.headers.pop("Authorization")
    with client.websocket_connect(
        "/api/v1/live", subprotocols=["pelbiot.v1", f"bearer.{key['key']}"]
    ) as ws:
        assert ws.receive_json()["type"] == "snapshot"
        revoked = client.delete(f"/api/v1/api-keys/{key['id']}", headers=admin)
        assert revoked.status_code in (200, 204), revoked.text
        code, _reason = close_code(ws)
        assert code == 1008


def test_logging_out_closes_that_sessions_socket(site: tuple[TestClient, dict[str, str]]) -> None:
    """A logout wakes the user's feeds: the ended session's socket closes, another stays."""
    client, _admin = site
    first = login_as(client, "twice", Role.VIEWER)
    second = login_as(client, "twice", Role.VIEWER)
    with (
        client.websocket_connect("/api/v1/live", headers=first) as ended,
        client.websocket_connect("/api/v1/live", headers=second) as kept,
    ):
        assert ended.receive_json()["type"] == "snapshot"
        assert kept.receive_json()["type"] == "snapshot"
        assert client.post("/api/v1/auth/logout", headers=first).status_code == 204
        code, _reason = close_code(ended)
        assert code == 1008
        both(client, 7.0)
        frame = frames_until(kept, reading_of("n1"))[-1]
        assert frame["values"]["voltage"] == 7.0


def test_a_keys_feed_follows_its_creators_rights(site: tuple[TestClient, dict[str, str]]) -> None:
    """A key acts with at most its creator's current rights: demoting the creator re-scopes
    the key's open feed, disabling the creator closes it (both at once, by event)."""
    client, admin = site
    maker = login_as(client, "keymaker", Role.ADMIN)
    created = client.post(
        "/api/v1/api-keys", json={"name": "wall", "scopes": ["read"]}, headers=maker
    )
    assert created.status_code == 201, created.text
    client.headers.pop("Authorization")
    maker_id = user_id(client, "keymaker")
    with client.websocket_connect(
        "/api/v1/live", headers={"X-API-Key": created.json()["key"]}
    ) as ws:
        assert ws.receive_json()["type"] == "snapshot"
        both(client, 1.0)
        readings_of_all(ws, {"n1", "s1"})
        demoted = client.patch(
            f"/api/v1/users/{maker_id}",
            json={"role": "operator", "regions": ["north"]},
            headers=admin,
        )
        assert demoted.status_code == 200, demoted.text
        frames = frames_until(ws, lambda f: f["type"] == "snapshot")
        assert {"type": "removed", "panel": "s1", "reason": "access"} in frames
        disabled = client.patch(f"/api/v1/users/{maker_id}", json={"disabled": True}, headers=admin)
        assert disabled.status_code == 200, disabled.text
        code, reason = close_code(ws)
        assert code == 1008
        assert "suspended" in reason


# -- frames the feed does not speak ------------------------------------------------------------


def test_a_binary_frame_closes_with_1003_and_logs_no_error(
    client: TestClient, caplog: pytest.LogCaptureFixture
) -> None:
    with (
        caplog.at_level(logging.WARNING),
        client.websocket_connect("/api/v1/live") as ws,
    ):
        assert ws.receive_json()["type"] == "snapshot"
        ws.send_bytes(b"\x00\x01 not text")
        code, reason = close_code(ws)
    assert code == 1003
    assert "binary" in reason
    assert [r for r in caplog.records if r.levelno >= logging.ERROR] == []
    # the app is fine afterwards
    with client.websocket_connect("/api/v1/live") as ws:
        assert ws.receive_json()["type"] == "snapshot"


# -- secrets stay out of URLs ------------------------------------------------------------------


def test_a_token_offered_as_subprotocol_authenticates_without_the_url(
    site: tuple[TestClient, dict[str, str]],
) -> None:
    client, _admin = site
    viewer = login_as(client, "headless", Role.VIEWER, regions=["north"])
    token = viewer["Authorization"].removeprefix("Bearer ")
    client.headers.pop("Authorization")
    with client.websocket_connect(
        "/api/v1/live", subprotocols=["pelbiot.v1", f"bearer.{token}"]
    ) as ws:
        assert ws.accepted_subprotocol == "pelbiot.v1"  # never the one carrying the token
        assert ws.receive_json()["type"] == "snapshot"
        both(client, 1.0)
        frames = frames_until(ws, reading_of("n1"))
        assert "s1" not in panels_in(frames)  # the token's rights, scoped as any other way
    with (
        pytest.raises(WebSocketDisconnect) as refused,
        client.websocket_connect("/api/v1/live", subprotocols=["pelbiot.v1", "bearer.forged"]),
    ):
        pass
    assert refused.value.code == 1008


def test_the_session_cookie_alone_opens_the_feed(
    make_client: Callable[..., AbstractContextManager[TestClient]],
) -> None:
    with make_client(login=False) as client:
        client.app.state.runtime.users.create(  # type: ignore[attr-defined]
            "browser", TEST_PASSWORD, Role.VIEWER
        )
        logged_in = client.post(
            "/api/v1/auth/login", json={"username": "browser", "password": TEST_PASSWORD}
        )
        assert logged_in.status_code == 200
        assert "Authorization" not in client.headers
        with client.websocket_connect("/api/v1/live", subprotocols=["pelbiot.v1"]) as ws:
            assert ws.accepted_subprotocol == "pelbiot.v1"
            assert ws.receive_json()["type"] == "snapshot"
        client.cookies.clear()
        with (
            pytest.raises(WebSocketDisconnect) as refused,
            client.websocket_connect("/api/v1/live"),
        ):
            pass
        assert refused.value.code == 1008


def test_the_session_cookie_opens_the_feed_only_from_the_apps_own_origin(
    make_client: Callable[..., AbstractContextManager[TestClient]],
) -> None:
    """The cookie is ambient: a page on another origin (even a sibling subdomain, which
    SameSite does not stop) must not open a socket with it (cross-site WebSocket hijacking)."""
    with make_client(login=False, cors_origins=["https://ops.example"]) as client:
        client.app.state.runtime.users.create(  # type: ignore[attr-defined]
            "browser", TEST_PASSWORD, Role.VIEWER
        )
        client.post("/api/v1/auth/login", json={"username": "browser", "password": TEST_PASSWORD})
        for origin in ("http://testserver", "https://ops.example"):
            with client.websocket_connect("/api/v1/live", headers={"Origin": origin}) as ws:
                assert ws.receive_json()["type"] == "snapshot"
        with (
            pytest.raises(WebSocketDisconnect) as refused,
            client.websocket_connect("/api/v1/live", headers={"Origin": "https://evil.example"}),
        ):
            pass
        assert refused.value.code == 1008
        # A token the page had to hold itself is not ambient: no origin rule for it.
        token = client.cookies["pelbiot_access"]
        client.cookies.clear()
        with client.websocket_connect(
            "/api/v1/live",
            headers={"Origin": "https://evil.example"},
            subprotocols=["pelbiot.v1", f"bearer.{token}"],
        ) as ws:
            assert ws.receive_json()["type"] == "snapshot"


def test_the_query_token_still_works_for_other_clients(
    site: tuple[TestClient, dict[str, str]],
) -> None:
    client, _admin = site
    viewer = login_as(client, "scripted", Role.VIEWER)
    token = viewer["Authorization"].removeprefix("Bearer ")
    client.headers.pop("Authorization")
    with client.websocket_connect(f"/api/v1/live?token={token}") as ws:
        assert ws.accepted_subprotocol is None
        assert ws.receive_json()["type"] == "snapshot"
