"""The bulk MQTT reader relies on paho-mqtt internals: a paho that changes them fails here, by
name, and ingest falls back to paho's public API instead of corrupting the stream."""

from __future__ import annotations

import logging
import tomllib
from collections.abc import Callable
from contextlib import AbstractContextManager
from pathlib import Path

import paho.mqtt
import paho.mqtt.client as mqtt
import pytest
from fastapi.testclient import TestClient
from packaging.specifiers import SpecifierSet

from pelbiot.ingest.mqttclient import (
    PAHO_INTERNALS,
    BulkClient,
    PlainClient,
    paho_internals_problems,
    reader_class,
)
from pelbiot.settings import load_settings
from tests.support.mosquitto import Mosquitto, mosquitto_pub
from tests.support.tcpproxy import TcpProxy
from tests.support.waiting import wait_for

ROOT = Path(__file__).resolve().parents[2]


def test_every_paho_internal_the_bulk_reader_uses_is_there_and_of_its_kind() -> None:
    problems = paho_internals_problems()
    assert problems == [], (
        "BulkClient (src/pelbiot/ingest/mqttclient.py) relies on these paho-mqtt internals, "
        "changed in the installed paho-mqtt " + paho.mqtt.__version__ + ":\n" + "\n".join(problems)
    )


def test_the_installed_paho_is_in_the_pinned_range() -> None:
    deps = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["dependencies"]
    (pin,) = [d for d in deps if d.startswith("paho-mqtt")]
    spec = SpecifierSet(pin.removeprefix("paho-mqtt"))
    assert spec.contains(paho.mqtt.__version__), (
        f"paho-mqtt {paho.mqtt.__version__} is outside {pin}"
    )
    assert "<" in str(spec), "pin paho-mqtt to the tested minor version: BulkClient uses internals"


@pytest.mark.parametrize(
    ("name", "replacement", "says"),
    [
        ("_sock_recv", None, "_sock_recv is no longer a method"),
        ("_packet_queue", lambda self, command, packet: None, "_packet_queue takes"),
        ("_last_bytes_received", "later", "_last_bytes_received is a str"),
    ],
)
def test_a_changed_internal_is_named(
    monkeypatch: pytest.MonkeyPatch, name: str, replacement: object, says: str
) -> None:
    monkeypatch.setattr(mqtt.Client, name, replacement, raising=False)
    if name == "_last_bytes_received":  # an instance attribute: set by __init__
        init = mqtt.Client.__init__

        def patched(self: mqtt.Client, *args: object, **kwargs: object) -> None:
            init(self, *args, **kwargs)  # type: ignore[arg-type]
            self._last_bytes_received = "later"  # type: ignore[assignment]

        monkeypatch.setattr(mqtt.Client, "__init__", patched)
    problems = paho_internals_problems()
    assert any(says in p for p in problems), problems


def test_a_missing_internal_is_named(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(PAHO_INTERNALS, "_gone_in_paho_3", ())
    assert any("_gone_in_paho_3 is missing" in p for p in paho_internals_problems())


def test_the_setting_selects_the_reader() -> None:
    assert reader_class(load_settings()) is BulkClient
    assert reader_class(load_settings(mqtt_client="paho")) is PlainClient


def test_changed_internals_fall_back_to_the_public_api_with_an_error(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    monkeypatch.setitem(PAHO_INTERNALS, "_gone_in_paho_3", ())
    with caplog.at_level(logging.ERROR, logger="pelbiot.ingest.mqttclient"):
        assert reader_class(load_settings()) is PlainClient
    assert "_gone_in_paho_3" in caplog.text


def test_the_reader_is_chosen_once_so_the_fallback_error_is_logged_once_across_reconnects(
    make_client: Callable[..., AbstractContextManager[TestClient]],
    mosquitto: Mosquitto,
    prefix: str,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
) -> None:
    """The broker goes away and comes back three times (a proxy cut in front of Mosquitto): the
    reader chosen at start (paho's public API, the internals check failing) stays; its error is
    logged once, not at every reconnect, and ingest still works on the last connection."""
    monkeypatch.setitem(PAHO_INTERNALS, "_gone_in_paho_3", ())
    caplog.set_level(logging.ERROR, logger="pelbiot.ingest.mqttclient")
    with TcpProxy(("127.0.0.1", mosquitto.port)) as proxy:
        url = f"mqtt://127.0.0.1:{proxy.port}"
        with make_client(mqtt_url=url, mqtt_client="bulk") as client:
            runtime = client.app.state.runtime  # type: ignore[attr-defined]
            for connects in (1, 2, 3):
                wait_for(lambda n=connects: runtime.stats.connects >= n, 20, f"connect {connects}")
                proxy.cut()
                wait_for(lambda: not runtime.ingest.connected, 20, "the cut seen")
                proxy.restore()
            wait_for(lambda: runtime.ingest.connected, 20, "the last reconnect")
            assert runtime.stats.connects >= 4
            mosquitto_pub(mosquitto, f"{prefix}/p1/volt", "231.5")
            wait_for(lambda: client.get("/api/v1/panels/p1/latest").status_code == 200, 10)
    fallbacks = [r for r in caplog.records if "paho-mqtt changed" in r.getMessage()]
    assert len(fallbacks) == 1, [r.getMessage() for r in fallbacks]
    assert "_gone_in_paho_3" in fallbacks[0].getMessage()
