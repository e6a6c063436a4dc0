"""Login throttling and lockout per (account, address): whoever guesses locks out only itself."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import AbstractContextManager, contextmanager
from typing import Any

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import update

from pelbiot.errors import UnauthorizedError
from pelbiot.security.lockout import Backoff, address_key
from pelbiot.security.permissions import Role
from pelbiot.security.sessions import LOGIN_FAILED
from pelbiot.storage import schema
from tests.support.accounts import PASSWORD, audit, login, login_as, runtime_of

ClientFactory = Callable[..., AbstractContextManager[TestClient]]
OWNER_ADDRESS = "198.51.100.7"


@contextmanager
def from_address(client: TestClient, address: str) -> Iterator[TestClient]:
    """The same running app, reached from another client address (not entered as a context:
    that would run the app's lifespan a second time)."""
    other = TestClient(client.app, client=(address, 40000))  # type: ignore[arg-type]
    try:
        yield other
    finally:
        other.close()


def test_a_guessing_address_locks_itself_out_not_the_owner(
    make_client: ClientFactory, caplog: pytest.LogCaptureFixture
) -> None:
    with make_client(login_attempts_per_account=100, login_backoff_s=0) as client:
        user_id = runtime_of(client).users.create("adam", PASSWORD, Role.ADMIN)["id"]
        with caplog.at_level(logging.WARNING, logger="pelbiot.security.lockout"):
            for attempt in range(10):  # anonymous, from "testclient"
                failed = login(client, "adam", f"Wrong-password-{attempt}")
                assert failed.status_code == 401
                assert failed.json()["error"]["message"] == LOGIN_FAILED
        assert any("adam" in r.getMessage() and "locked" in r.getMessage() for r in caplog.records)
        # The guessing address is locked out, even with the right password...
        locked = login(client, "adam", PASSWORD)
        assert locked.status_code == 401
        assert locked.json()["error"]["message"] == LOGIN_FAILED
        # ...while the owner, from elsewhere, logs in.
        with from_address(client, OWNER_ADDRESS) as owner:
            assert login(owner, "adam", PASSWORD).status_code == 200
            assert login(owner, "ADAM", PASSWORD).status_code == 200
        assert login(client, "adam", PASSWORD).status_code == 401  # still locked out here

        # Admins see it: the account is marked locked, the audit log says from where.
        assert client.get(f"/api/v1/users/{user_id}").json()["locked"] is True
        lockouts = audit(client, action="user.lockout")
        assert len(lockouts) == 1
        assert (lockouts[0]["target"], lockouts[0]["address"]) == ("adam", "testclient")
        assert lockouts[0]["success"] is False
        assert lockouts[0]["details"] == {"failures": 10, "minutes": 15, "scope": "address"}
        reasons = [e["details"]["reason"] for e in audit(client, action="login.failed")]
        assert reasons.count("wrong password") == 10
        assert reasons.count("locked") == 2

        # An admin's unlock lifts the lock for every address.
        login_as(client, "alan", Role.ADMIN)
        assert client.post(f"/api/v1/users/{user_id}/unlock").status_code == 204
        assert client.get(f"/api/v1/users/{user_id}").json()["locked"] is False
        assert login(client, "adam", PASSWORD).status_code == 200
        login_as(client, "root", Role.SUPER_ADMIN)
        unlock = audit(client, action="user.unlock")[0]
        assert (unlock["actor"], unlock["target"]) == ("alan", "adam")


def test_back_off_holds_the_guessing_address_only_and_unknown_names_alike(
    make_client: ClientFactory,
) -> None:
    with make_client(login_backoff_after=2, login_backoff_s=120) as client:
        runtime_of(client).users.create("bo", PASSWORD, Role.VIEWER)
        for name in ("bo", "no-such-user"):  # the same answers: no hint which name exists
            for _ in range(2):
                assert login(client, name, "Wrong-password-x").status_code == 401
            held = login(client, name, PASSWORD)
            assert held.status_code == 429
            assert held.json()["error"]["code"] == "rate_limited"
            assert 60 < int(held.headers["retry-after"]) <= 120
        with from_address(client, OWNER_ADDRESS) as owner:
            assert login(owner, "bo", PASSWORD).status_code == 200
        throttled = audit(client, action="login.throttled")
        assert {e["details"]["scope"] for e in throttled} == {"account"}


def test_back_off_doubles_with_each_failure_up_to_a_cap() -> None:
    now = [1000.0]
    backoff = Backoff(after=3, base_s=1.0, cap_s=30.0, clock=lambda: now[0])
    key = ("bo", "10.0.0.1")
    waits = []
    for _ in range(9):
        backoff.failed(key)
        waits.append(backoff.wait(key))
    assert waits == [0, 0, 1, 2, 4, 8, 16, 30, 30]
    now[0] += 30
    assert backoff.wait(key) == 0
    assert backoff.wait(("bo", "10.0.0.2")) == 0
    backoff.reset(key)
    backoff.failed(key)
    assert backoff.wait(key) == 0


def test_ipv6_addresses_count_per_64_block() -> None:
    assert address_key("2001:db8:1:2:aaaa::1") == address_key("2001:db8:1:2:bbbb::9")
    assert address_key("2001:db8:1:2::1") != address_key("2001:db8:1:3::1")
    assert address_key("::ffff:192.0.2.1") == "192.0.2.1"
    assert address_key("192.0.2.1") == "192.0.2.1"
    assert address_key("testclient") == "testclient"


def test_a_lock_that_ran_out_starts_counting_afresh(make_client: ClientFactory) -> None:
    with make_client(login_attempts_per_account=100, lockout_threshold=3, login_backoff_s=0) as c:
        runtime_of(c).users.create("lars", PASSWORD, Role.VIEWER)
        for _ in range(3):
            assert login(c, "lars", "Wrong-password-x").status_code == 401
        assert login(c, "lars", PASSWORD).status_code == 401
        with runtime_of(c).engine.begin() as conn:  # let the lock run out
            conn.execute(
                update(schema.login_failures).values(locked_until_ms=int(time.time() * 1000) - 1)
            )
        # One more mistake after the lock ran out is one failure, not a new lockout.
        assert login(c, "lars", "Wrong-password-y").status_code == 401
        assert login(c, "lars", PASSWORD).status_code == 200
        assert len(audit(c, action="user.lockout")) == 1


def test_per_account_throttle_is_per_address(make_client: ClientFactory) -> None:
    with make_client(login_attempts_per_account=3, login_backoff_s=0) as client:
        runtime_of(client).users.create("tim", PASSWORD, Role.VIEWER)
        for _ in range(3):
            assert login(client, "tim", "Wrong-password-x").status_code == 401
        throttled = login(client, "tim", PASSWORD)
        assert throttled.status_code == 429
        assert int(throttled.headers["retry-after"]) >= 1
        with from_address(client, OWNER_ADDRESS) as owner:
            assert login(owner, "tim", PASSWORD).status_code == 200
        # An unknown name is throttled the same way (no hint that "tim" exists).
        for _ in range(3):
            assert login(client, "nobody-here", "Wrong-password-x").status_code == 401
        assert login(client, "nobody-here", "Wrong-password-x").status_code == 429


def test_per_address_throttle(make_client: ClientFactory) -> None:
    with make_client(login_attempts_per_address=4) as client:
        runtime_of(client).users.create("ada", PASSWORD, Role.VIEWER)
        for name in ("a1", "a2", "a3", "a4"):
            assert login(client, name, "Wrong-password-x").status_code == 401
        throttled = login(client, "ada", PASSWORD)
        assert throttled.status_code == 429
        assert "address" in throttled.json()["error"]["message"]
        assert audit(client, action="login.throttled")


def test_parallel_guesses_from_one_address_all_count(make_client: ClientFactory) -> None:
    """The count lives in the database so it holds across workers; parallel guesses must not
    overwrite each other's count, and exactly one of them locks."""
    with make_client(
        login_attempts_per_account=1000, login_attempts_per_address=1000, login_backoff_s=0
    ) as client:
        user_id = runtime_of(client).users.create("cleo", PASSWORD, Role.VIEWER)["id"]
        sessions, users = runtime_of(client).sessions, runtime_of(client).users

        def guess(i: int, address: str) -> int:
            try:
                sessions.login("cleo", f"Wrong-password-{i}", address=address)
            except UnauthorizedError:
                return 401
            return 200

        with ThreadPoolExecutor(max_workers=8) as pool:
            answers = list(pool.map(lambda i: guess(i, "10.0.0.1"), range(16)))
        assert answers == [401] * 16
        assert users.get(user_id)["failed_logins"] == 16
        assert len(audit(client, action="user.lockout")) == 1
        # Guesses spread over many addresses lock none of them (each stays under the limit),
        # but admins hear of them: 50 failures (5 x the threshold) since the last good login.
        with ThreadPoolExecutor(max_workers=8) as pool:
            spread = list(pool.map(lambda i: guess(i, f"10.0.1.{i}"), range(34)))
        assert spread == [401] * 34
        assert len(audit(client, action="user.lockout")) == 1
        alerts = audit(client, action="user.guessing")
        assert [a["details"] for a in alerts] == [{"failures_since_last_login": 50}]
        assert sessions.login("cleo", PASSWORD, address="10.0.2.1").access_token


def test_housekeeping_forgets_quiet_failure_counts_and_expired_sessions(
    make_client: ClientFactory,
) -> None:
    """One row per guessing address would otherwise stay for ever; a lock in force stays."""
    with make_client(login_attempts_per_account=100, lockout_threshold=3, login_backoff_s=0) as c:
        runtime = runtime_of(c)
        runtime.users.create("hana", PASSWORD, Role.VIEWER)
        with from_address(c, "192.0.2.1") as once:
            assert login(once, "hana", "Wrong-password-1").status_code == 401
        with from_address(c, "192.0.2.2") as guesser:
            for i in range(3):
                assert login(guesser, "hana", f"Wrong-password-{i}").status_code == 401
        assert login(c, "hana", PASSWORD).status_code == 200
        day_ago = int(time.time() * 1000) - 86_400_000 - 1000
        with runtime.engine.begin() as conn:  # the clock: a day passes for failures and sessions
            conn.execute(update(schema.login_failures).values(last_failure_ms=day_ago))
            conn.execute(update(schema.sessions).values(expires_ms=day_ago))
        assert runtime.sessions.purge_expired() == (2, 1)  # root's session and hana's
        with runtime.engine.connect() as conn:
            left = conn.execute(schema.login_failures.select()).all()
        assert [row.address for row in left] == [address_key("192.0.2.2")]  # still locked
        assert runtime.sessions.purge_expired() == (0, 0)


def test_guessing_the_current_password_in_a_password_change_is_locked_out_like_login(
    make_client: ClientFactory,
) -> None:
    """A stolen session must not become an unlimited password-guessing oracle."""
    with make_client(login_attempts_per_account=100, lockout_threshold=3, login_backoff_s=0) as c:
        runtime_of(c).users.create("gita", PASSWORD, Role.VIEWER)
        token = login(c, "gita").json()["access_token"]
        headers = {"Authorization": f"Bearer {token}"}

        def change(current: str) -> Any:
            body = {"current_password": current, "new_password": "Brand-new-secret-77"}
            return c.post("/api/v1/auth/password", json=body, headers=headers)

        for i in range(3):
            assert change(f"Guess-number-{i}").status_code == 422
        locked = change(PASSWORD)  # even the right one, from this address, once locked
        assert locked.status_code == 429, locked.text
        failed = audit(c, action="user.password", success="false")
        assert len(failed) == 3
        assert len(audit(c, action="user.lockout")) == 1
        runtime_of(c).users.unlock(runtime_of(c).users.by_name("gita")["id"], actor=None)
        assert change(PASSWORD).status_code == 204
