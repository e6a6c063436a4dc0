"""A minimal MQTT 3.1.1 QoS 1 consumer on a raw socket: the ceiling of broker + loopback.

Reads in 256 KiB chunks, parses PUBLISH packets, and answers each chunk with one ``send`` of
all its PUBACKs. No decoding of payloads, no database: what is left is the broker's cost.
"""

from __future__ import annotations

import socket
import struct
import time

from bench import packets


def consume(port: int, client_id: str, count: int, *, timeout: float = 120) -> float:
    """Receive ``count`` QoS 1 messages of a persistent session; returns seconds."""
    sock = socket.create_connection(("127.0.0.1", port), timeout=timeout)
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    sock.sendall(packets.connect(client_id, clean=False))
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
        received, used = packets.split(buf)
        acks = []
        for first, start, _end in received:
            if first & 0xF0 == packets.PUBLISH:
                if (first >> 1) & 3:
                    topic_len = struct.unpack_from("!H", buf, start)[0]
                    acks.append(b"\x40\x02" + buf[start + 2 + topic_len : start + 4 + topic_len])
                got += 1
        buf = buf[used:]
        if acks:
            sock.sendall(b"".join(acks))
    elapsed = time.perf_counter() - started
    sock.sendall(packets.DISCONNECT)
    sock.close()
    return elapsed
