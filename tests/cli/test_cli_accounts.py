"""``pelbiot user ...`` and ``pelbiot apikey ...`` end to end: the shell creates, a server logs in.

``user create`` runs as a real subprocess (``python -m pelbiot``); the other commands run
in-process through click's runner against the same database, which is quicker and the same code.
"""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
import pytest
from click.testing import CliRunner, Result

from pelbiot.cli.accounts import apikey, user
from tests.support.mosquitto import Mosquitto
from tests.support.processes import ServerProcess

ALICE_PASSWORD = "Wonderland-42x"


def pelbiot(tmp_path: Path, database_url: str, *args: str, stdin: str = "") -> Any:
    return subprocess.run(
        [sys.executable, "-m", "pelbiot", *args],
        cwd=tmp_path,
        env={**os.environ, "PELBIOT_DATABASE_URL": database_url},
        input=stdin,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


@pytest.fixture
def cli(database_url: str, tmp_path: Path) -> Callable[..., Result]:
    runner = CliRunner()

    def run(group: Any, *args: str, stdin: str | None = None) -> Result:
        cwd = os.getcwd()
        os.chdir(tmp_path)  # no stray .env
        try:
            return runner.invoke(
                group, list(args), input=stdin, env={"PELBIOT_DATABASE_URL": database_url}
            )
        finally:
            os.chdir(cwd)

    return run


def login(server: ServerProcess, username: str, password: str) -> httpx.Response:
    return httpx.post(
        f"{server.base_url}/api/v1/auth/login",
        json={"username": username, "password": password},
        timeout=10,
    )


def test_user_create_in_a_shell_then_log_in_over_http(
    tmp_path: Path,
    database_url: str,
    mosquitto: Mosquitto,
    make_server: Callable[..., ServerProcess],
    cli: Callable[..., Result],
) -> None:
    created = pelbiot(
        tmp_path,
        database_url,
        "user",
        "create",
        "alice",
        "--role",
        "admin",
        "--password-stdin",
        stdin=ALICE_PASSWORD + "\n",
    )
    assert created.returncode == 0, created.stderr
    assert "created admin 'alice'" in created.stdout
    assert ALICE_PASSWORD not in created.stdout + created.stderr

    again = pelbiot(
        tmp_path, database_url, "user", "create", "alice", "--role", "viewer", "--password-stdin",
        stdin=ALICE_PASSWORD + "\n",
    )  # fmt: skip
    assert again.returncode == 1
    assert "already exists" in again.stderr
    assert "Traceback" not in again.stderr

    server = make_server(
        PELBIOT_MQTT_URL=mosquitto.url,
        PELBIOT_LOCKOUT_THRESHOLD="3",
        PELBIOT_LOGIN_ATTEMPTS_PER_ACCOUNT="50",  # the in-process window; see docs/security.md
    )
    server.start()
    response = login(server, "alice", ALICE_PASSWORD)
    assert response.status_code == 200, response.text
    token = response.json()["access_token"]
    me = httpx.get(
        f"{server.base_url}/api/v1/auth/me",
        headers={"Authorization": f"Bearer {token}"},
        timeout=10,
    )
    assert me.json()["role"] == "admin"

    # passwd ends the sessions; the new password works, the old one not.
    changed = cli(user, "passwd", "alice", "--password-stdin", stdin="Through-the-glass-7\n")
    assert changed.exit_code == 0, changed.output
    stale = httpx.get(
        f"{server.base_url}/api/v1/auth/me",
        headers={"Authorization": f"Bearer {token}"},
        timeout=10,
    )
    assert stale.status_code == 401
    assert login(server, "alice", ALICE_PASSWORD).status_code == 401
    assert login(server, "alice", "Through-the-glass-7").status_code == 200

    # disable / enable
    assert cli(user, "disable", "alice").exit_code == 0
    assert login(server, "alice", "Through-the-glass-7").status_code == 401
    assert "[disabled]" in cli(user, "list").output
    assert cli(user, "enable", "alice").exit_code == 0
    assert login(server, "alice", "Through-the-glass-7").status_code == 200

    # lockout (threshold 3 here) and unlock from the shell
    for _ in range(3):
        assert login(server, "alice", "Wrong-password-1").status_code == 401
    assert login(server, "alice", "Through-the-glass-7").status_code == 401
    assert "[locked]" in cli(user, "list").output
    unlocked = cli(user, "unlock", "alice")
    assert unlocked.exit_code == 0
    assert "'alice' unlocked" in unlocked.output
    response = login(server, "alice", "Through-the-glass-7")
    assert response.status_code == 200

    # The audit log names the shell as the actor.
    entries = httpx.get(
        f"{server.base_url}/api/v1/audit",
        params={"actor": "cli"},
        headers={"Authorization": f"Bearer {response.json()['access_token']}"},
        timeout=10,
    ).json()
    actions = {e["action"] for e in entries}
    assert {"user.create", "user.password_reset", "user.update", "user.unlock"} <= actions


def test_user_list_regions_and_errors(cli: Callable[..., Result]) -> None:
    assert cli(user, "list").output.strip() == "no users yet"
    made = cli(
        user, "create", "viola", "--role", "viewer", "--region", "North", "--region", "South",
        "--password-stdin", stdin="Violet-secret-9\n",
    )  # fmt: skip
    assert made.exit_code == 0, made.output
    cli(user, "create", "omar", "--role", "operator", "--password", "Operator-pw-5512")
    listed = cli(user, "list").output.splitlines()
    assert len(listed) == 2
    assert "omar" in listed[0]
    assert "all regions" in listed[0]
    assert "viola" in listed[1]
    assert "North,South" in listed[1]

    weak = cli(user, "create", "bob", "--role", "viewer", "--password-stdin", stdin="short\n")
    assert weak.exit_code == 1
    assert "policy" in weak.output
    both = cli(
        user, "create", "x1", "--role", "viewer", "--password", "A-b-c-d-e-f-1", "--password-stdin"
    )
    assert both.exit_code == 2
    missing = cli(user, "passwd", "nobody", "--password-stdin", stdin="Whatever-pass-1\n")
    assert missing.exit_code == 1
    assert "not found" in missing.output
    bad_role = cli(user, "create", "y1", "--role", "god", "--password", "A-b-c-d-e-f-1")
    assert bad_role.exit_code == 2


def test_apikey_create_and_list(
    cli: Callable[..., Result],
    mosquitto: Mosquitto,
    make_server: Callable[..., ServerProcess],
) -> None:
    made = cli(apikey, "create", "meter-7", "--scope", "ingest", "--panel", "m7")
    assert made.exit_code == 0, made.output
    key = made.stdout.strip()
    assert key.startswith("pbk_")
    assert "shown" in made.stderr or "not shown again" in made.output
    listed = cli(apikey, "list").output
    assert "meter-7" in listed
    assert "ingest" in listed
    assert "active" in listed
    assert key not in listed
    assert cli(apikey, "create", "x", "--scope", "everything").exit_code == 2

    server = make_server(PELBIOT_MQTT_URL=mosquitto.url)
    server.start()
    stored = httpx.post(
        f"{server.base_url}/api/v1/ingest",
        json={"panel": "m7", "metric": "voltage", "value": 230.1},
        headers={"X-API-Key": key},
        timeout=10,
    )
    assert stored.status_code == 200, stored.text
    assert stored.json()["accepted"] == 1
    other = httpx.post(
        f"{server.base_url}/api/v1/ingest",
        json={"panel": "m8", "metric": "voltage", "value": 230.1},
        headers={"X-API-Key": key},
        timeout=10,
    )
    assert other.status_code == 403
