"""The bulk MQTT reader relies on paho-mqtt internals: a paho that changes them fails here, by
name, and ingest falls back to paho's public API instead of corrupting the stream."""

from __future__ import annotations

import logging
import tomllib
from pathlib import Path

import paho.mqtt
import paho.mqtt.client as mqtt
import pytest
from packaging.specifiers import SpecifierSet

from pelbiot.ingest.mqttclient import (
    PAHO_INTERNALS,
    BulkClient,
    PlainClient,
    paho_internals_problems,
    reader_class,
)
from pelbiot.settings import load_settings

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
