"""Load generator: QoS 1 PUBLISH packets written straight to a socket, with its own window.

A Python MQTT client library would spend more CPU publishing than the ingest under test spends
consuming, so this writes MQTT 3.1.1 packets itself (``packets.py``): CONNECT, then PUBLISH
packets in chunks, never more than ``window`` unacknowledged (paho silently loses messages past
65,535 in flight), counting PUBACKs until every message is acknowledged by the broker. A PUBACK
means the broker has queued the message for every subscribed session, so a later shortfall is
loss downstream.

``python -m bench.load --port P --prefix X --kind single --count N [--rate R]`` runs it as its
own process (the benchmark does that so the publisher never shares a GIL with the consumer).
With ``--rate`` it publishes at a steady rate and stamps each message with the time of sending.
"""

from __future__ import annotations

import argparse
import json
import socket
import time

from bench import packets
from bench.messages import Workload


class RawPublisher:
    def __init__(self, port: int, client_id: str, *, window: int = 2000) -> None:
        if not 0 < window < 65535:
            raise ValueError("window must be 1..65534")
        self.window = window
        self.sock = socket.create_connection(("127.0.0.1", port), timeout=30)
        self.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.sock.sendall(packets.connect(client_id, clean=True))
        connack = self._recv_exact(4)
        if connack[0] != 0x20 or connack[3] != 0:
            raise RuntimeError(f"broker refused the publisher: {connack!r}")
        self._buf = b""
        self.sent = 0
        self.acked = 0
        self._mid = 0

    def _recv_exact(self, n: int) -> bytes:
        data = b""
        while len(data) < n:
            chunk = self.sock.recv(n - len(data))
            if not chunk:
                raise ConnectionError("broker closed the connection")
            data += chunk
        return data

    def _read_acks(self, *, block: bool) -> None:
        self.sock.setblocking(block)
        try:
            chunk = self.sock.recv(65536)
        except BlockingIOError:
            return
        finally:
            self.sock.setblocking(True)
        if not chunk:
            raise ConnectionError("broker closed the connection")
        buf = self._buf + chunk
        pos = 0
        # The broker sends us only PUBACKs (0x40 0x02 mid mid) and, rarely, a PINGRESP.
        while len(buf) - pos >= 2:
            size = 2 + buf[pos + 1]
            if len(buf) - pos < size:
                break
            if buf[pos] & 0xF0 == 0x40:
                self.acked += 1
            pos += size
        self._buf = buf[pos:]

    def _next_mid(self) -> int:
        self._mid = self._mid % 65535 + 1
        return self._mid

    def send(self, messages: list[tuple[bytes, bytes]]) -> None:
        """Send messages, waiting for the window to open as needed."""
        i = 0
        while i < len(messages):
            room = self.window - (self.sent - self.acked)
            if room <= 0:
                self._read_acks(block=True)
                continue
            chunk = messages[i : i + min(room, 500)]
            self.sock.sendall(b"".join(packets.publish(t, p, self._next_mid()) for t, p in chunk))
            self.sent += len(chunk)
            i += len(chunk)
            self._read_acks(block=False)

    def drain(self, timeout: float = 60) -> None:
        deadline = time.monotonic() + timeout
        while self.acked < self.sent:
            if time.monotonic() > deadline:
                raise TimeoutError(f"{self.sent - self.acked} publishes never acknowledged")
            self._read_acks(block=True)

    def close(self) -> None:
        try:
            self.sock.sendall(packets.DISCONNECT)
        finally:
            self.sock.close()


def publish_backlog(port: int, workload: Workload, *, window: int = 2000) -> float:
    """Publish every message of ``workload`` as fast as the broker takes it; returns seconds."""
    pub = RawPublisher(port, f"bench-pub-{workload.prefix}", window=window)
    started = time.perf_counter()
    batch: list[tuple[bytes, bytes]] = []
    for message in workload.messages():
        batch.append(message)
        if len(batch) >= 5000:
            pub.send(batch)
            batch = []
    pub.send(batch)
    pub.drain()
    elapsed = time.perf_counter() - started
    pub.close()
    return elapsed


def publish_paced(port: int, workload: Workload, rate: float, *, window: int = 2000) -> float:
    """Publish ``workload.count`` messages at ``rate`` per second, each stamped when sent."""
    pub = RawPublisher(port, f"bench-pub-{workload.prefix}", window=window)
    started = time.perf_counter()
    tick = 0.01  # send in 10 ms slices: 10 messages per slice at 1,000/s
    i = 0
    while i < workload.count:
        due = min(workload.count, int((time.perf_counter() - started) * rate) + 1)
        if due > i:
            now_ms = int(time.time() * 1000)
            pub.send([workload.timed_message(j, now_ms) for j in range(i, due)])
            i = due
        time.sleep(max(0.0, started + i / rate - time.perf_counter()) or tick / 10)
    pub.drain()
    elapsed = time.perf_counter() - started
    pub.close()
    return elapsed


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--prefix", required=True)
    parser.add_argument("--kind", choices=["single", "telemetry"], default="single")
    parser.add_argument("--count", type=int, required=True)
    parser.add_argument("--panels", type=int, default=100)
    parser.add_argument("--metrics", type=int, default=6)
    parser.add_argument("--rate", type=float, default=None, help="messages/s; default: flat out")
    parser.add_argument("--window", type=int, default=2000)
    args = parser.parse_args()
    workload = Workload(args.kind, args.count, args.prefix, args.panels, args.metrics)
    if args.rate:
        elapsed = publish_paced(args.port, workload, args.rate, window=args.window)
    else:
        elapsed = publish_backlog(args.port, workload, window=args.window)
    print(json.dumps({"messages": workload.count, "seconds": elapsed}), flush=True)


if __name__ == "__main__":
    main()
