"""BulkClient's parser: whatever way the stream is cut into reads, every message comes out once,
intact and in order; other packets still reach paho; PUBACKs for many messages go in one write."""

from __future__ import annotations

import random
import struct

import paho.mqtt.client as mqtt
import pytest
from bench.packets import remaining_length
from paho.mqtt.enums import CallbackAPIVersion

from pelbiot.ingest.mqttclient import BulkClient, Inbound


def publish(
    topic: str, payload: bytes, qos: int, mid: int, *, v5: bool, props: bytes = b""
) -> bytes:
    body = struct.pack("!H", len(topic.encode())) + topic.encode()
    if qos:
        body += struct.pack("!H", mid)
    if v5:
        body += remaining_length(len(props)) + props
    body += payload
    return bytes([0x30 | (qos << 1)]) + remaining_length(len(body)) + body


class FakeSocket:
    def __init__(self, chunks: list[bytes]) -> None:
        self.chunks = chunks

    def recv(self, _size: int) -> bytes:
        if not self.chunks:
            raise BlockingIOError
        return self.chunks.pop(0)

    def close(self) -> None:
        self.chunks = []


def make_client(v5: bool, got: list[list[Inbound]]) -> BulkClient:
    return BulkClient(
        on_messages=lambda batch: got.append(list(batch)),
        callback_api_version=CallbackAPIVersion.VERSION2,
        protocol=mqtt.MQTTv5 if v5 else mqtt.MQTTv311,
        manual_ack=True,
    )


def feed(client: BulkClient, stream: bytes, cuts: list[int]) -> None:
    chunks = [stream[a:b] for a, b in zip([0, *cuts], [*cuts, len(stream)], strict=True)]
    client._sock = FakeSocket([c for c in chunks if c])  # type: ignore[assignment]
    while client._sock.chunks:  # type: ignore[union-attr]
        assert client.loop_read() == mqtt.MQTT_ERR_SUCCESS


def messages(rng: random.Random, n: int) -> list[Inbound]:
    out = []
    for i in range(n):
        size = rng.choice([0, 1, 7, 60, 120, 127, 128, 300, 5000, 16_380, 16_400, 70_000])
        payload = bytes(rng.getrandbits(8) for _ in range(size))
        qos = rng.choice([0, 1, 1])
        out.append(
            Inbound(f"panel/p{i % 7}/voltage", payload, qos, (i % 65535) + 1 if qos else 0, False)
        )
    out.append(Inbound("panel/big/telemetry", b"x" * 300_000, 1, 4242, False))  # 3-byte length
    return out


@pytest.mark.parametrize("v5", [True, False])
@pytest.mark.parametrize("seed", [1, 2, 3])
def test_every_message_once_in_order_however_the_stream_is_cut(v5: bool, seed: int) -> None:
    rng = random.Random(seed)
    sent = messages(rng, 400)
    props = b"\x01\x01" if v5 else b""  # payload format indicator: must be skipped
    stream = b"".join(publish(m.topic, m.payload, m.qos, m.mid, v5=v5, props=props) for m in sent)
    cuts = sorted(rng.sample(range(1, len(stream)), 300))
    got: list[list[Inbound]] = []
    feed(make_client(v5, got), stream, cuts)
    assert [m for batch in got for m in batch] == sent


def test_byte_by_byte() -> None:
    sent = [Inbound("panel/a/volt", b"230.5", 1, 1, False), Inbound("panel/a/amp", b"", 0, 0, True)]
    retained = publish("panel/a/amp", b"", 0, 0, v5=True)
    stream = publish("panel/a/volt", b"230.5", 1, 1, v5=True) + b"\x31" + retained[1:]
    got: list[list[Inbound]] = []
    feed(make_client(True, got), stream, list(range(1, len(stream))))
    assert [m for batch in got for m in batch] == sent


def test_other_packets_go_to_paho_after_the_messages_before_them() -> None:
    got: list[list[Inbound]] = []
    client = make_client(False, got)
    acks: list[int] = []
    client.on_unsubscribe = lambda _c, _u, mid, *_a: acks.append((mid, len(got)))  # type: ignore[assignment,misc]
    unsuback = b"\xb0\x02\x00\x07"
    stream = (
        publish("panel/a/volt", b"1", 1, 1, v5=False)
        + unsuback
        + publish("panel/a/volt", b"2", 1, 2, v5=False)
    )
    feed(client, stream, [])
    assert [[m.payload for m in batch] for batch in got] == [[b"1"], [b"2"]]
    assert acks == [(7, 1)]  # handled by paho, after the first message was delivered


def test_malformed_publish_is_a_protocol_error() -> None:
    got: list[list[Inbound]] = []
    client = make_client(False, got)
    bad = b"\x32\x03\x00\x09a"  # topic length 9 in a 3-byte packet
    client._sock = FakeSocket([bad])  # type: ignore[assignment]
    assert client.loop_read() == mqtt.MQTT_ERR_PROTOCOL
    assert got == []


def test_pubacks_of_many_messages_are_one_write() -> None:
    client = make_client(True, [])
    client.on_socket_register_write = lambda *_a: None  # external loop: no write from here
    client.queue_pubacks([1, 2, 65535])
    assert len(client._out_packet) == 1
    assert client._out_packet[0]["packet"] == b"\x40\x02\x00\x01\x40\x02\x00\x02\x40\x02\xff\xff"
