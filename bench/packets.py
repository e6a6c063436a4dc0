"""MQTT 3.1.1 packets written and read by hand, for the benchmarks' raw-socket clients.

A Python MQTT client library would spend more CPU than what these clients stand in for: the load
generator (``load.py``), the ceiling consumer (``rawsub.py``) and the bare fan-out of the live
benchmark (``live/fanout.py``). They speak the few packets they need with these.
"""

from __future__ import annotations

import struct

DISCONNECT = b"\xe0\x00"
PUBLISH = 0x30  # packet type: the high nibble of the first byte
SUBACK = 0x90


def remaining_length(n: int) -> bytes:
    out = bytearray()
    while True:
        byte, n = n % 128, n // 128
        out.append(byte | (0x80 if n else 0))
        if not n:
            return bytes(out)


def string(s: bytes) -> bytes:
    return struct.pack("!H", len(s)) + s


def connect(client_id: str, *, clean: bool) -> bytes:
    """CONNECT, keep-alive 60 s; ``clean=False`` resumes (or creates) a persistent session."""
    flags = b"\x02" if clean else b"\x00"
    body = string(b"MQTT") + b"\x04" + flags + struct.pack("!H", 60) + string(client_id.encode())
    return b"\x10" + remaining_length(len(body)) + body


def subscribe(topic: bytes, *, mid: int = 1) -> bytes:
    """SUBSCRIBE to one topic filter at QoS 1."""
    body = struct.pack("!H", mid) + string(topic) + b"\x01"
    return b"\x82" + remaining_length(len(body)) + body


def publish(topic: bytes, payload: bytes, mid: int) -> bytes:
    """PUBLISH at QoS 1."""
    body = string(topic) + struct.pack("!H", mid) + payload
    return b"\x32" + remaining_length(len(body)) + body


def split(buf: bytes | bytearray) -> tuple[list[tuple[int, int, int]], int]:
    """The complete packets at the start of ``buf`` as [(first byte, body start, body end)], and
    how many bytes they take (the rest is the start of a packet still to come)."""
    out, pos = [], 0
    while len(buf) - pos >= 2:
        mult, length, i = 1, 0, pos + 1
        while i < len(buf):
            byte = buf[i]
            length += (byte & 127) * mult
            mult *= 128
            i += 1
            if not byte & 128:
                break
        else:
            break
        if i + length > len(buf):
            break
        out.append((buf[pos], i, i + length))
        pos = i + length
    return out, pos
