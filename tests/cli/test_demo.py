"""`pelbiot demo` as a new user runs it: no broker, no database, nothing configured."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx

from pelbiot.ingest.broker import free_port

LOGIN_RE = re.compile(r"Demo login: user '(?P<user>[^']+)', password '(?P<password>[^']+)'")


def wait_for(check: Callable[[], Any], timeout: float, what: str, log: Path) -> Any:
    deadline = time.monotonic() + timeout
    while True:
        try:
            result = check()
        except httpx.HTTPError:
            result = None
        if result:
            return result
        if time.monotonic() > deadline:
            raise AssertionError(f"{what} not within {timeout}s:\n{log.read_text()[-4000:]}")
        time.sleep(0.1)


def test_demo_serves_changing_simulated_values_and_stops_cleanly(tmp_path: Path) -> None:
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    env = {k: v for k, v in os.environ.items() if not k.startswith("PELBIOT_")}
    env["PELBIOT_DATA_DIR"] = str(tmp_path / "data")
    log = tmp_path / "demo.log"
    with log.open("wb") as out:
        proc = subprocess.Popen(
            [sys.executable, "-m", "pelbiot", "demo", "--port", str(port), "--interval", "0.5"],
            cwd=tmp_path,
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
        )
    try:
        wait_for(lambda: httpx.get(f"{base}/health", timeout=1).is_success, 30, "health", log)
        # Log in the way the demo tells the user to.
        login = wait_for(lambda: LOGIN_RE.search(log.read_text()), 10, "the demo login", log)
        answer = httpx.post(
            f"{base}/api/v1/auth/login",
            json={"username": login["user"], "password": login["password"]},
            timeout=10,
        )
        assert answer.status_code == 200, answer.text
        auth = {"Authorization": f"Bearer {answer.json()['access_token']}"}

        def latest() -> dict[str, dict[str, Any]]:
            body = httpx.get(f"{base}/api/v1/latest", headers=auth, timeout=2).json()
            panels = {p["panel_id"]: p["values"] for p in body}
            return panels if len(panels) == 6 else {}

        def newer() -> dict[str, dict[str, Any]]:
            now = latest()
            fresh = now and now["trafo1"]["power"]["ts"] != first["trafo1"]["power"]["ts"]
            return now if fresh else {}

        first = wait_for(latest, 15, "six panels with readings", log)
        assert set(first) == {f"trafo{n}" for n in range(1, 7)}
        assert {"voltage_l1", "current_l1", "power", "energy", "frequency"} <= set(first["trafo1"])
        second = wait_for(newer, 5, "a newer reading", log)
        assert second["trafo1"]["power"]["value"] != first["trafo1"]["power"]["value"]
        assert second["trafo1"]["energy"]["value"] > first["trafo1"]["energy"]["value"]
        status = httpx.get(f"{base}/api/v1/ingest/status", headers=auth, timeout=2).json()
        assert status["counters"]["messages_rejected"] == 0

        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=10) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(timeout=5)
    text = log.read_text()
    assert f"http://127.0.0.1:{port}/docs" in text
    assert f"http://127.0.0.1:{port}/api/v1/latest" in text
    assert "Traceback" not in text, text[-4000:]
    assert (tmp_path / "data" / "pelbiot.db").exists()
