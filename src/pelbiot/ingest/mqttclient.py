"""A paho-mqtt client that reads the socket in large chunks and hands over PUBLISH packets in bulk.

paho's ``loop_read`` parses one packet per call with three or more ``recv`` calls per packet,
builds an ``MQTTMessage`` and runs ``on_message`` for each, and sends one PUBACK per ``send``.
At tens of thousands of messages a second that is most of a core. ``BulkClient`` keeps paho for
everything but the hot path (connect, subscribe, keepalive, TLS, reconnect, QoS 2):

- ``loop_read`` reads up to ``read_size`` bytes at once and parses every complete packet in the
  buffer; QoS 0/1 PUBLISH packets are collected and given to ``on_messages`` as one list, in
  arrival order; any other packet goes through paho's own handler, after the messages before it;
- ``queue_pubacks`` queues the PUBACKs of many messages as one write.

The caller still decides when to acknowledge (ack after commit): nothing here acks by itself.
"""

from __future__ import annotations

import struct
import time
from collections.abc import Callable, Iterable
from typing import Any, NamedTuple

import paho.mqtt.client as mqtt
from paho.mqtt.enums import MQTTErrorCode
from paho.mqtt.exception import MalformedPacket

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
