"""The embedded MQTT broker (amqtt) for the demo and for `serve` with no PELBIOT_MQTT_URL.

It is a convenience for trying PELBIOT and for small single-machine sites. Production with many
meters should use Mosquitto, EMQX or HiveMQ (docs/deployment.md says which limits to raise).
With a ``BrokerGate`` it enforces device credentials (``ingest/broker_auth.py``); without one
every client may do everything.

Two amqtt 0.12 habits the gate cannot fix from its plugins, so ``GatedBroker`` wraps them:
- amqtt deletes (clean session) or takes over the session of a CONNECT's client id BEFORE it
  asks the plugins to authenticate it, so a refused CONNECT could cut another client's session
  (PELBIOT's ingest included). ``_LoginFirstHandler`` asks the gate as soon as the CONNECT is
  read and refuses it (CONNACK 5) the way amqtt refuses a bad CONNECT, before any session is
  looked up; the plugin then checks again (wills, and the session amqtt finally uses).
- amqtt sends a client's will message without its topic check (``Broker._handle_disconnect``):
  ``GatedBroker`` asks the gate first and drops a will the client may no longer send.
``check_amqtt_hooks`` refuses to start a gated broker if those amqtt internals changed.
"""

from __future__ import annotations

import inspect
import logging
import socket
import weakref
from typing import Any

import amqtt.broker
from amqtt.broker import Broker
from amqtt.errors import MQTTError
from amqtt.mqtt.connack import NOT_AUTHORIZED, ConnackPacket
from amqtt.mqtt.protocol.broker_handler import BrokerProtocolHandler

from pelbiot.ingest.broker_auth import BrokerGate, session_identity

logger = logging.getLogger(__name__)


def free_port(host: str = "127.0.0.1") -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((host, 0))
        port: int = sock.getsockname()[1]
        return port


_WILL_HOOK_PARAMS = ["self", "client_session", "handler", "disconnect_waiter"]
# The gate of each gated broker, by its plugin manager (what amqtt hands the CONNECT reader).
_GATES: weakref.WeakKeyDictionary[Any, BrokerGate] = weakref.WeakKeyDictionary()


class _LoginFirstHandler(BrokerProtocolHandler):  # type: ignore[misc]
    """amqtt's CONNECT reader, plus the gate's verdict before amqtt touches any session."""

    @classmethod
    async def init_from_connect(
        cls, reader: Any, writer: Any, plugins_manager: Any, loop: Any = None
    ) -> tuple[Any, Any]:
        handler, session = await super().init_from_connect(reader, writer, plugins_manager, loop)
        gate = _GATES.get(plugins_manager)
        if gate is not None and (
            await gate.authenticate(session.username, session.password, session.client_id) is None
        ):
            logger.info(
                "embedded broker refused %s (user %r) before its session was looked up",
                session.client_id,
                session.username,
            )
            await ConnackPacket.build(0, NOT_AUTHORIZED).to_stream(writer)
            await writer.close()
            raise MQTTError(f"{session.client_id}: not authorised")
        return handler, session


def check_amqtt_hooks() -> None:
    """Raise if the amqtt internals ``GatedBroker`` relies on changed: a will would go out
    unchecked, or a refused CONNECT could again cut another client's session."""
    method = getattr(Broker, "_handle_disconnect", None)
    params = list(inspect.signature(method).parameters) if callable(method) else None
    source = inspect.getsource(method) if callable(method) else ""
    if params != _WILL_HOOK_PARAMS or "will_flag" not in source:
        raise RuntimeError(
            "amqtt's Broker._handle_disconnect changed: the embedded broker cannot check will "
            f"messages (parameters {params}, expected {_WILL_HOOK_PARAMS})"
        )
    init = inspect.getsource(Broker._initialize_client_session)
    reads = init.find("BrokerProtocolHandler.init_from_connect(")
    if amqtt.broker.BrokerProtocolHandler not in (BrokerProtocolHandler, _LoginFirstHandler) or (
        not 0 <= reads < init.find("_delete_session") or reads > init.find("self._sessions")
    ):
        raise RuntimeError(
            "amqtt's Broker._initialize_client_session changed: the embedded broker cannot "
            "check a login before amqtt looks up the client's session"
        )


class GatedBroker(Broker):  # type: ignore[misc]
    """amqtt with the gate's login check before any session lookup (``_LoginFirstHandler``) and
    its will rules when a will is about to be sent."""

    def __init__(self, config: dict[str, Any], *, gate: BrokerGate) -> None:
        check_amqtt_hooks()
        super().__init__(config)
        self._pelbiot_gate = gate
        _GATES[self.plugins_manager] = gate
        # Module-wide, but a pass-through for brokers without a gate.
        amqtt.broker.BrokerProtocolHandler = _LoginFirstHandler

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
