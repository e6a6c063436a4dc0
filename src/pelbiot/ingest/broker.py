"""The embedded MQTT broker (amqtt) for the demo and for `serve` with no PELBIOT_MQTT_URL.

It is a convenience for trying PELBIOT and for small single-machine sites. Production with many
meters should use Mosquitto, EMQX or HiveMQ (docs/deployment.md says which limits to raise).
With a ``BrokerGate`` it enforces device credentials (``ingest/broker_auth.py``); without one
every client may do everything.

amqtt sends a client's will message without its topic check (amqtt 0.12, ``Broker.
_handle_disconnect``): ``GatedBroker`` asks the gate first and drops a will the client may no
longer send. ``check_amqtt_will_hook`` refuses to start a gated broker if that method changed.
"""

from __future__ import annotations

import inspect
import logging
import socket
from typing import Any

from amqtt.broker import Broker

from pelbiot.ingest.broker_auth import BrokerGate, session_identity

logger = logging.getLogger(__name__)


def free_port(host: str = "127.0.0.1") -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((host, 0))
        port: int = sock.getsockname()[1]
        return port


_WILL_HOOK_PARAMS = ["self", "client_session", "handler", "disconnect_waiter"]


def check_amqtt_will_hook() -> None:
    """Raise if amqtt's ``Broker._handle_disconnect`` (which sends the will) is not the one
    ``GatedBroker`` wraps: a will would then go out unchecked."""
    method = getattr(Broker, "_handle_disconnect", None)
    params = list(inspect.signature(method).parameters) if callable(method) else None
    source = inspect.getsource(method) if callable(method) else ""
    if params != _WILL_HOOK_PARAMS or "will_flag" not in source:
        raise RuntimeError(
            "amqtt's Broker._handle_disconnect changed: the embedded broker cannot check will "
            f"messages (parameters {params}, expected {_WILL_HOOK_PARAMS})"
        )


class GatedBroker(Broker):  # type: ignore[misc]
    """amqtt, with will messages checked by the gate when they are about to be sent."""

    def __init__(self, config: dict[str, Any], *, gate: BrokerGate) -> None:
        check_amqtt_will_hook()
        super().__init__(config)
        self._pelbiot_gate = gate

    async def _handle_disconnect(
        self, client_session: Any, handler: Any, disconnect_waiter: Any
    ) -> None:
        if client_session.will_flag and not await self._pelbiot_gate.may_send_will(
            session_identity(client_session), client_session.will_topic or ""
        ):
            logger.info(
                "embedded broker dropped the will of %s to %r: not allowed (any more)",
                client_session.client_id,
                client_session.will_topic,
            )
            client_session.will_flag = False  # the next CONNECT sets it again
        await super()._handle_disconnect(client_session, handler, disconnect_waiter)


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

    @property
    def amqtt(self) -> Any:
        """The running amqtt ``Broker`` (for tests: its ``sessions`` and ``retained_messages``)."""
        return self._broker

    async def __aenter__(self) -> EmbeddedBroker:
        config = {
            "listeners": {"default": {"type": "tcp", "bind": f"{self.host}:{self.port}"}},
            "plugins": self._plugins(),
        }
        # amqtt is chatty at INFO; keep its logs to warnings.
        logging.getLogger("amqtt").setLevel(logging.WARNING)
        logging.getLogger("transitions").setLevel(logging.WARNING)
        self._broker = Broker(config) if self.gate is None else GatedBroker(config, gate=self.gate)
        await self._broker.start()
        logger.info("embedded MQTT broker listening on %s", self.url)
        return self

    async def __aexit__(self, *_exc: object) -> None:
        if self._broker is not None:
            await self._broker.shutdown()
            self._broker = None
