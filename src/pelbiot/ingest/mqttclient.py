"""A paho-mqtt client that reads the socket in large chunks and hands over PUBLISH packets in bulk.

paho's ``loop_read`` parses one packet per call with three or more ``recv`` calls per packet,
builds an ``MQTTMessage`` and runs ``on_message`` for each, and sends one PUBACK per ``send``.
At tens of thousands of messages a second that is most of a core. ``BulkClient`` keeps paho for
everything but the hot path (connect, subscribe, keepalive, TLS, reconnect):

- ``loop_read`` reads up to ``read_size`` bytes at once and parses every complete packet in the
  buffer; QoS 0/1 PUBLISH packets are collected and given to ``on_messages`` as one list, in
  arrival order; any other packet goes through paho's own handler, after the messages before it;
- ``queue_pubacks`` queues the PUBACKs of many messages as one write.

The caller still decides when to acknowledge (ack after commit): nothing here acks by itself.

``BulkClient`` relies on paho internals (``PAHO_INTERNALS``), which is why pyproject.toml pins
paho-mqtt to the tested minor version and ``paho_internals_problems`` checks them at start-up.
``PlainClient`` offers the same interface on paho's public API only (``on_message``,
``manual_ack`` and ``ack``): slower, the fallback when the internals changed
(``PELBIOT_MQTT_CLIENT=paho``). QoS 2 never arrives: the subscription QoS is 0 or 1, and the
broker delivers at most the subscription's QoS.
"""

from __future__ import annotations

import inspect
import logging
import struct
import threading
import time
from collections.abc import Callable, Iterable
from typing import Any, NamedTuple

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion, MQTTErrorCode
from paho.mqtt.exception import MalformedPacket

from pelbiot.settings import Settings

logger = logging.getLogger(__name__)

_PUBLISH = 0x30  # fixed-header types (high nibble)
_PUBACK = 0x40
_PINGREQ = 0xC0
_PUBACK_PACKET = struct.Struct("!BBH")
_MAX_VARINT_BYTES = 4


class Inbound(NamedTuple):
    """One received PUBLISH. ``mid`` is 0 for QoS 0."""

    topic: str
    payload: bytes
    qos: int
    mid: int
    retain: bool


MessagesCallback = Callable[[list[Inbound]], None]
_new = tuple.__new__  # builds an Inbound without NamedTuple's Python-level __new__


class _MalformedError(Exception):
    pass


def _varint(buf: bytes, pos: int, end: int) -> tuple[int, int] | None:
    """(value, position after it) of an MQTT variable byte integer, None if incomplete."""
    value = 0
    mult = 1
    for i in range(pos, min(end, pos + _MAX_VARINT_BYTES)):
        byte = buf[i]
        value += (byte & 0x7F) * mult
        if byte < 0x80:
            return value, i + 1
        mult *= 128
    if end - pos >= _MAX_VARINT_BYTES:
        raise _MalformedError("variable byte integer longer than 4 bytes")
    return None


# What BulkClient uses of paho's private side, and the kind each must have: a method with
# these parameter names, or an attribute holding this type on a client not yet connected.
# Checked by paho_internals_problems (and the test suite) so that a paho release that renames
# or reshapes one fails loudly at start-up instead of corrupting the MQTT stream.
PAHO_INTERNALS: dict[str, tuple[str, ...] | type | tuple[type, ...]] = {
    "_sock_recv": ("bufsize",),
    "_loop_rc_handle": ("rc",),
    "_easy_log": ("level", "fmt", "args"),
    "_packet_handle": (),
    "_packet_queue": ("command", "packet", "mid", "qos", "info"),
    "_sock": type(None),
    "_msgtime_mutex": type(threading.Lock()),
    "_last_bytes_received": float,
    "_protocol": int,
    "_in_packet": dict,
}
# The keys of _in_packet that _handle_other fills in for paho's _packet_handle.
_IN_PACKET_KEYS = frozenset(
    {
        "command",
        "have_remaining",
        "remaining_count",
        "remaining_mult",
        "remaining_length",
        "packet",
        "to_process",
        "pos",
    }
)


def paho_internals_problems() -> list[str]:
    """One line per paho internal that BulkClient relies on and that is missing or changed in
    kind in the installed paho-mqtt; empty when BulkClient is safe to use."""
    client = mqtt.Client(CallbackAPIVersion.VERSION2)
    problems = []
    for name, kind in PAHO_INTERNALS.items():
        if not hasattr(client, name):
            problems.append(f"mqtt.Client.{name} is missing")
            continue
        value = getattr(client, name)
        if isinstance(kind, tuple) and all(isinstance(k, str) for k in kind):
            if not callable(value):
                problems.append(f"mqtt.Client.{name} is no longer a method")
                continue
            params = tuple(inspect.signature(value).parameters)
            if params != kind:
                problems.append(
                    f"mqtt.Client.{name} takes {params}, BulkClient calls it with {kind}"
                )
        elif not isinstance(value, kind):  # type: ignore[arg-type]
            problems.append(
                f"mqtt.Client.{name} is a {type(value).__name__}, BulkClient expects {kind}"
            )
    in_packet = getattr(client, "_in_packet", None)
    if isinstance(in_packet, dict) and set(in_packet) != _IN_PACKET_KEYS:
        problems.append(
            f"mqtt.Client._in_packet has keys {sorted(in_packet)}, BulkClient fills in "
            f"{sorted(_IN_PACKET_KEYS)}"
        )
    return problems


def reader_class(settings: Settings) -> type[BulkClient | PlainClient]:
    """The MQTT reader ``PELBIOT_MQTT_CLIENT`` asks for; paho's public API if the bulk reader's
    paho internals changed."""
    if settings.mqtt_client == "paho":
        return PlainClient
    if problems := paho_internals_problems():
        logger.error(
            "paho-mqtt changed under the bulk MQTT reader (%s); using paho's slower public API "
            "instead (PELBIOT_MQTT_CLIENT=paho silences this)",
            "; ".join(problems),
        )
        return PlainClient
    return BulkClient


class PlainClient(mqtt.Client):
    """BulkClient's interface on paho's public API: ``on_message`` collects the messages one
    ``loop_read`` brings, and they go to ``on_messages`` as one list when it returns. Create it
    with ``manual_ack=True``: ``queue_pubacks`` sends paho's own ``ack`` per message."""

    def __init__(self, *args: Any, on_messages: MessagesCallback, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._on_messages_cb = on_messages
        self._inbound: list[Inbound] = []
        self.on_message = self._collect

    def _collect(self, _client: mqtt.Client, _userdata: object, msg: mqtt.MQTTMessage) -> None:
        self._inbound.append(Inbound(msg.topic, bytes(msg.payload), msg.qos, msg.mid, msg.retain))

    def loop_read(self, max_packets: int = 1) -> MQTTErrorCode:
        try:
            return super().loop_read(max_packets)
        finally:
            if self._inbound:
                batch, self._inbound = self._inbound, []
                self._on_messages_cb(batch)

    def queue_pubacks(self, mids: Iterable[int]) -> None:
        for mid in mids:
            self.ack(mid, 1)

    def queue_ping(self) -> None:
        """No public way to send a PINGREQ outside paho's keepalive: nothing. While ingest
        waits on a full writer queue for longer than about 1.5 keepalives, the broker drops
        the connection and redelivers the unacknowledged messages after the reconnect."""


class BulkClient(mqtt.Client):
    """``mqtt.Client`` with buffered reads and bulk delivery; use it with an external loop."""

    def __init__(
        self, *args: Any, on_messages: MessagesCallback, read_size: int = 256 * 1024, **kwargs: Any
    ) -> None:
        super().__init__(*args, **kwargs)
        self._on_messages = on_messages
        self._read_size = read_size
        self._rbuf = bytearray()
        self._need = 2  # bytes the next parse needs in the buffer

    def reconnect(self) -> MQTTErrorCode:
        self._rbuf.clear()
        self._need = 2
        return super().reconnect()

    def queue_pubacks(self, mids: Iterable[int]) -> None:
        """Queue the PUBACKs of ``mids`` as one packet write (from the loop's thread)."""
        data = b"".join([_PUBACK_PACKET.pack(_PUBACK, 2, mid) for mid in mids])
        if data:
            self._packet_queue(_PUBACK, data, 0, 0)

    def queue_ping(self) -> None:
        """Queue a PINGREQ outside paho's keepalive bookkeeping. For a caller that reads nothing
        for a while (ingest waiting for room in the writer queue): the broker hears from us and
        keeps the connection, and paho does not time out waiting for the PINGRESP, which is
        read and handled whenever reading resumes."""
        self._packet_queue(_PINGREQ, bytes([_PINGREQ, 0]), 0, 0)

    def loop_read(self, max_packets: int = 1) -> MQTTErrorCode:
        if self._sock is None:
            return MQTTErrorCode.MQTT_ERR_NO_CONN
        try:
            data = self._sock_recv(self._read_size)
        except BlockingIOError:
            return MQTTErrorCode.MQTT_ERR_SUCCESS
        except OSError:
            return self._loop_rc_handle(MQTTErrorCode.MQTT_ERR_CONN_LOST)
        if not data:
            return self._loop_rc_handle(MQTTErrorCode.MQTT_ERR_CONN_LOST)
        with self._msgtime_mutex:
            self._last_bytes_received = time.monotonic()
        rbuf = self._rbuf
        rbuf += data
        if len(rbuf) < self._need:
            return MQTTErrorCode.MQTT_ERR_SUCCESS  # a large packet still arriving
        try:
            rc = self._parse(bytes(rbuf))
        except _MalformedError as exc:
            self._easy_log(mqtt.MQTT_LOG_ERR, "malformed packet from the broker: %s", exc)
            rc = MQTTErrorCode.MQTT_ERR_PROTOCOL
        if rc != MQTTErrorCode.MQTT_ERR_SUCCESS:
            return self._loop_rc_handle(rc)
        return MQTTErrorCode.MQTT_ERR_SUCCESS

    def _parse(self, buf: bytes) -> MQTTErrorCode:
        """Handle every complete packet in ``buf``; keep the incomplete tail for the next read."""
        v5 = self._protocol == mqtt.MQTTv5
        end_of_data = len(buf)
        pos = 0
        batch: list[Inbound] = []
        need = 2
        rc = MQTTErrorCode.MQTT_ERR_SUCCESS
        while end_of_data - pos >= 2:
            header = buf[pos]
            remaining = buf[pos + 1]
            if remaining < 0x80:  # one length byte: every packet under 128 bytes
                start = pos + 2
            elif end_of_data - pos > 2 and buf[pos + 2] < 0x80:  # two: under 16 KiB
                remaining = (remaining & 0x7F) | (buf[pos + 2] << 7)
                start = pos + 3
            else:
                length = _varint(buf, pos + 1, end_of_data)
                if length is None:
                    need = end_of_data - pos + 1
                    break
                remaining, start = length
            end = start + remaining
            if end > end_of_data:
                need = end - pos
                break
            qos = (header >> 1) & 0x03
            if header & 0xF0 == _PUBLISH and qos < 2:
                batch.append(_decode_publish(buf, header, start, end, qos, v5))
            else:
                if batch:
                    self._on_messages(batch)
                    batch = []
                rc = self._handle_other(header, buf[start:end], remaining)
                if rc != MQTTErrorCode.MQTT_ERR_SUCCESS or self._sock is None:
                    pos = end
                    break
            pos = end
        else:
            need = 2
        del self._rbuf[:pos]
        self._need = max(2, need)
        if batch:
            self._on_messages(batch)
        return rc

    def _handle_other(self, header: int, body: bytes, remaining: int) -> MQTTErrorCode:
        """Let paho handle a packet that is not a QoS 0/1 PUBLISH (CONNACK, SUBACK, ...)."""
        self._in_packet = {
            "command": header,
            "have_remaining": 1,
            "remaining_count": [],
            "remaining_mult": 1,
            "remaining_length": remaining,
            "packet": bytearray(body),
            "to_process": 0,
            "pos": 0,
        }
        try:
            rc = self._packet_handle()
        except MalformedPacket as exc:
            self._easy_log(mqtt.MQTT_LOG_DEBUG, "Received malformed packet: %s", exc)
            rc = MQTTErrorCode.MQTT_ERR_PROTOCOL
        self._in_packet = {
            "command": 0,
            "have_remaining": 0,
            "remaining_count": [],
            "remaining_mult": 1,
            "remaining_length": 0,
            "packet": bytearray(b""),
            "to_process": 0,
            "pos": 0,
        }
        return rc


def _decode_publish(buf: bytes, header: int, start: int, end: int, qos: int, v5: bool) -> Inbound:
    if end - start < 2:
        raise _MalformedError("PUBLISH too short")
    topic_end = start + 2 + ((buf[start] << 8) | buf[start + 1])
    pos = topic_end
    mid = 0
    if qos:
        if pos + 2 > end:
            raise _MalformedError("PUBLISH without a packet id")
        mid = (buf[pos] << 8) | buf[pos + 1]
        pos += 2
    if v5 and pos < end:
        if buf[pos] < 0x80:  # properties shorter than 128 bytes (usually none)
            pos += 1 + buf[pos]
        else:
            props = _varint(buf, pos, end)
            if props is None:
                raise _MalformedError("PUBLISH properties truncated")
            pos = props[1] + props[0]
    if pos > end or (qos and mid == 0):
        raise _MalformedError("PUBLISH header longer than the packet")
    topic = buf[start + 2 : topic_end].decode("utf-8", errors="replace")
    return _new(Inbound, (topic, buf[pos:end], qos, mid, header & 0x01 == 1))
