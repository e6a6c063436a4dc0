"""The embedded MQTT broker (amqtt) for the demo and for `serve` with no PELBIOT_MQTT_URL.

It is a convenience for trying PELBIOT and for small single-machine sites. Production with many
meters should use Mosquitto, EMQX or HiveMQ (docs/deployment.md says which limits to raise).
With a ``BrokerGate`` it enforces device credentials (``ingest/broker_auth.py``); without one
every client may do everything.
"""

from __future__ import annotations

import logging
import socket
from typing import Any

from pelbiot.ingest.broker_auth import BrokerGate

logger = logging.getLogger(__name__)


def free_port(host: str = "127.0.0.1") -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((host, 0))
        port: int = sock.getsockname()[1]
        return port


class EmbeddedBroker:
    """``async with EmbeddedBroker(host, port) as broker:`` runs amqtt on the current loop."""

    def __init__(
        self, host: str = "127.0.0.1", port: int = 1883, *, gate: BrokerGate | None = None
    ) -> None:
        self.host = host
        self.port = port
        self.gate = gate
        self._broker: Any = None

    @property
    def url(self) -> str:
        return f"mqtt://{self.host}:{self.port}"

    def _plugins(self) -> dict[str, Any]:
        if self.gate is None:
            return {"amqtt.plugins.authentication.AnonymousAuthPlugin": {"allow_anonymous": True}}
        return {
            "pelbiot.ingest.broker_auth.DeviceAuthPlugin": {"gate": self.gate},
            "pelbiot.ingest.broker_auth.DeviceTopicPlugin": {"gate": self.gate},
        }

    async def __aenter__(self) -> EmbeddedBroker:
        from amqtt.broker import Broker

        config = {
            "listeners": {"default": {"type": "tcp", "bind": f"{self.host}:{self.port}"}},
            "plugins": self._plugins(),
        }
        # amqtt is chatty at INFO; keep its logs to warnings.
        logging.getLogger("amqtt").setLevel(logging.WARNING)
        logging.getLogger("transitions").setLevel(logging.WARNING)
        self._broker = Broker(config)
        await self._broker.start()
        logger.info("embedded MQTT broker listening on %s", self.url)
        return self

    async def __aexit__(self, *_exc: object) -> None:
        if self._broker is not None:
            await self._broker.shutdown()
            self._broker = None
