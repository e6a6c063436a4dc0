"""Keys and tokens never reach the logs: a real `pelbiot serve` process and its output."""

from __future__ import annotations

import logging
from collections.abc import Callable

import httpx
import pytest
from uvicorn.logging import AccessFormatter
from websockets.exceptions import InvalidStatus
from websockets.sync.client import connect

from pelbiot.security.redaction import REDACTED, SecretRedactor, redact
from tests.support.mosquitto import Mosquitto
from tests.support.processes import ServerProcess
from tests.support.waiting import wait_for

PASSWORD = "Quiet-lantern-pass-9"


def test_websocket_tokens_and_keys_are_redacted_in_a_real_servers_log(
    make_server: Callable[..., ServerProcess], mosquitto: Mosquitto
) -> None:
    server = make_server(PELBIOT_MQTT_URL=mosquitto.url)
    server.create_user("watcher", PASSWORD, "admin")
    server.start()
    with server.client("watcher", PASSWORD) as api:
        token = api.headers["Authorization"].removeprefix("Bearer ")
        created = api.post("/api/v1/api-keys", json={"name": "wall", "scopes": ["read"]})
        assert created.status_code == 201, created.text
        key = created.json()["key"]
    ws_url = server.base_url.replace("http://", "ws://") + "/api/v1/live"
    for query in (f"token={token}", f"token={key}", f"api_key={key}&x=1"):
        try:
            with connect(f"{ws_url}?{query}", open_timeout=10) as ws:
                ws.recv(timeout=10)  # the snapshot: the handshake was logged by then
        except InvalidStatus:
            pass  # ?api_key= is no credential: refused, and logged all the same
    refused = httpx.get(f"{server.base_url}/api/v1/panels?token={token}", timeout=10)
    assert refused.status_code == 401

    log = wait_for(
        lambda: (text := server.log()).count("WebSocket /api/v1/live") >= 3 and text,
        10,
        "three WebSocket handshakes in the server log",
    )
    assert f"/api/v1/live?token={REDACTED}" in log
    assert f"api_key={REDACTED}&x=1" in log
    secret_part = key.split("_", 2)[2]
    for secret in (token, key, secret_part, token.split(".")[2]):
        assert secret not in log


def test_redact_keeps_ordinary_text_and_catches_every_form() -> None:
    key = "pbk_0123456789ab_S3cr3t-value_x"
    assert redact("GET /api/v1/panels?limit=5&region=North") == (
        "GET /api/v1/panels?limit=5&region=North"
    )
    assert redact("/live?token=abc.def.ghi&panels=p1") == f"/live?token={REDACTED}&panels=p1"
    assert redact("/x?access_token=a&refresh_token=b") == (
        f"/x?access_token={REDACTED}&refresh_token={REDACTED}"
    )
    assert redact(f"/x?apikey={key}") == f"/x?apikey={REDACTED}"
    assert redact(f"key used: {key} now") == f"key used: pbk_{REDACTED} now"
    assert redact("offered bearer.eyJ.abc.def") == f"offered bearer.{REDACTED}"
    assert redact("sort_key=name") == "sort_key=name"


def test_percent_encoded_names_and_values_are_redacted_too() -> None:
    """The server decodes ``tok%65n`` to ``token`` and accepts it: so does the redactor."""
    jwt = "eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiIxIn0.c2lnbmF0dXJl"
    assert redact(f'"WebSocket /api/v1/live?tok%65n={jwt}" [accepted]') == (
        f'"WebSocket /api/v1/live?tok%65n={REDACTED}" [accepted]'
    )
    assert redact("/x?api%5Fkey=s3cret&limit=5") == f"/x?api%5Fkey={REDACTED}&limit=5"
    # a key or a token under any name, itself encoded
    assert redact("/x?q=pbk%5F0123456789ab%5Fs3cret") == f"/x?q={REDACTED}"
    assert redact(f"/x?whatever={jwt}") == f"/x?whatever={REDACTED}"
    assert redact(f"token in a message: {jwt}") == f"token in a message: {REDACTED}"
    assert redact("/x?q=%25&region=Nor%20th") == "/x?q=%25&region=Nor%20th"


def test_the_access_log_keeps_its_format(caplog: pytest.LogCaptureFixture) -> None:
    """uvicorn's access formatter unpacks the record's arguments: redaction keeps them."""
    record = logging.LogRecord(
        "uvicorn.access",
        logging.INFO,
        __file__,
        1,
        '%s - "%s %s HTTP/%s" %d',
        ("10.0.0.1:5000", "GET", "/api/v1/live?token=abc.def", "1.1", 101),
        None,
    )
    assert SecretRedactor().filter(record)
    line = AccessFormatter("%(client_addr)s %(request_line)s %(status_code)s").format(record)
    assert (
        line == f"10.0.0.1:5000 GET /api/v1/live?token={REDACTED} HTTP/1.1 101 Switching Protocols"
    )
