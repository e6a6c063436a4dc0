"""A minimal MQTT 3.1.1 QoS 1 consumer on a raw socket: the ceiling of broker + loopback.

Reads in 256 KiB chunks, parses PUBLISH packets, and answers each chunk with one ``send`` of
all its PUBACKs. No decoding of payloads, no database: what is left is the broker's cost.
"""

from __future__ import annotations

import socket
import struct
import time

from bench.load import _remaining_length, _string


def consume(port: int, client_id: str, count: int, *, timeout: float = 120) -> float:
    """Receive ``count`` QoS 1 messages of a persistent session; returns seconds."""
    sock = socket.create_connection(("127.0.0.1", port), timeout=timeout)
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    body = _string(b"MQTT") + b"\x04\x00" + struct.pack("!H", 60) + _string(client_id.encode())
    sock.sendall(b"\x10" + _remaining_length(len(body)) + body)
    buf = b""
    got = 0
    started = 0.0
    deadline = time.monotonic() + timeout
    while got < count and time.monotonic() < deadline:
        chunk = sock.recv(262144)
        if not chunk:
            raise ConnectionError("broker closed the connection")
        if not started:
            started = time.perf_counter()
        buf += chunk
        pos, acks = 0, []
        while len(buf) - pos >= 2:
            mult, length, i = 1, 0, pos + 1
            while True:
                if i >= len(buf):
                    break
                byte = buf[i]
                length += (byte & 127) * mult
                mult *= 128
                i += 1
                if not byte & 128:
                    break
            else:
                break
            if byte & 128 or i + length > len(buf):
                break
            if buf[pos] & 0xF0 == 0x30:
                topic_len = struct.unpack_from("!H", buf, i)[0]
                if (buf[pos] >> 1) & 3:
                    mid = buf[i + 2 + topic_len : i + 4 + topic_len]
                    acks.append(b"\x40\x02" + mid)
                got += 1
            pos = i + length
        buf = buf[pos:]
        if acks:
            sock.sendall(b"".join(acks))
    elapsed = time.perf_counter() - started
    sock.sendall(b"\xe0\x00")
    sock.close()
    return elapsed
