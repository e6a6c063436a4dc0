"""The WebSocket clients' process: N clients of /api/v1/live, and what they saw.

``python -m bench.live.clients --url ws://... --clients N --window-start T0 --window-end T1``,
started by ``scenario.py``: prints ``READY`` once every client has its snapshot, waits for a
line on stdin (the publisher has finished), lets the frames still on their way arrive, then
prints a JSON line of histograms, counters and every client's last values ("screens").
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import contextlib
import json
import os
import struct
import sys
import time
import zlib
from collections import Counter
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit

import orjson

from bench.live.latency import decode_time
from bench.live.processes import run_loop


@dataclass
class Recorder:
    """What the clients of one process saw; histograms keep only the measured window."""

    start: float
    end: float
    value_hist: Counter[int] = field(default_factory=Counter)
    frame_hist: Counter[int] = field(default_factory=Counter)
    values_all: int = 0
    frames_all: int = 0
    frames_window: int = 0
    dropped_frames: int = 0
    dropped_events: int = 0  # each is followed by a fresh snapshot (a resync)
    closed: int = 0
    other: Counter[str] = field(default_factory=Counter)
    worst_by_second: dict[int, float] = field(default_factory=dict)
    commit_lag_max_ms: float = 0.0  # PELBIOT's ingest frames: arrival -> commit of a batch
    queue_depth_max: int = 0

    def message(self, text: bytes | str, now: float, screen: dict[str, float]) -> bool:
        """Handle one JSON frame received at ``now``; True for a snapshot."""
        frame = orjson.loads(text)
        kind = frame.get("type")
        if kind == "reading":
            self.frames_all += 1
            panel = frame["panel"]
            ts = frame["ts"] / 1000
            if self.start <= ts < self.end:
                self.frames_window += 1
                self.frame_hist[int((now - ts) * 10_000)] += 1
            for metric, value in frame["values"].items():
                self.values_all += 1
                screen[f"{panel}/{metric}"] = value
                sent = decode_time(value, now)
                if self.start <= sent < self.end:
                    self.value_hist[int((now - sent) * 10_000)] += 1
                    second = int(sent - self.start)
                    if now - sent > self.worst_by_second.get(second, 0.0):
                        self.worst_by_second[second] = now - sent
        elif kind == "snapshot":
            for panel, state in frame["panels"].items():
                for metric, value in state["values"].items():
                    screen[f"{panel}/{metric}"] = value
            return True
        elif kind == "ingest":
            self.commit_lag_max_ms = max(self.commit_lag_max_ms, frame.get("lag_s", 0) * 1000)
            self.queue_depth_max = max(self.queue_depth_max, frame.get("queue_depth", 0))
        elif kind == "dropped":
            self.dropped_events += 1
            self.dropped_frames += int(frame.get("frames", 0))
        else:
            self.other[str(kind)] += 1
        return False


class RawClient(asyncio.Protocol):
    """A receive-only WebSocket client: handshake offering permessage-deflate, frames parsed by
    hand, pings answered. All frames of one socket read share one receive time."""

    def __init__(
        self, url: str, rec: Recorder, screen: dict[str, float], *, deflate: bool = True
    ) -> None:
        self.url = urlsplit(url)
        self.deflate = deflate
        self.rec = rec
        self.screen = screen
        self.ready: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self.transport: asyncio.Transport | None = None
        self.buf = bytearray()
        self.upgraded = False
        self.inflate: Any = None
        self.reset_inflate = False
        self.parts: list[bytes] = []
        self.compressed = False

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]  # uvloop's is no subclass
        key = base64.b64encode(os.urandom(16)).decode()
        request = (
            f"GET {self.url.path}?{self.url.query} HTTP/1.1\r\n"
            f"Host: {self.url.netloc}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
            f"Sec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\n"
        )
        if self.deflate:
            request += "Sec-WebSocket-Extensions: permessage-deflate; client_max_window_bits\r\n"
        request += "\r\n"
        transport.write(request.encode())

    def connection_lost(self, exc: Exception | None) -> None:
        self.rec.closed += 1
        if not self.ready.done():
            self.ready.set_exception(ConnectionError(f"connection lost: {exc}"))

    def _handshake(self) -> bool:
        head_end = self.buf.find(b"\r\n\r\n")
        if head_end < 0:
            return False
        head = bytes(self.buf[:head_end]).decode("latin-1").split("\r\n")
        del self.buf[: head_end + 4]
        if " 101 " not in head[0] + " ":
            self.ready.set_exception(ConnectionError(f"handshake refused: {head[0]}"))
            assert self.transport is not None
            self.transport.close()
            return False
        for line in head[1:]:
            name, _, value = line.partition(":")
            if name.strip().lower() == "sec-websocket-extensions" and "deflate" in value:
                self.inflate = zlib.decompressobj(-15)
                self.reset_inflate = "server_no_context_takeover" in value
        self.upgraded = True
        return True

    def _send(self, opcode: int, payload: bytes) -> None:
        mask = os.urandom(4)
        masked = bytes(b ^ mask[i % 4] for i, b in enumerate(payload))
        assert self.transport is not None and len(payload) < 126
        self.transport.write(bytes([0x80 | opcode, 0x80 | len(payload)]) + mask + masked)

    def data_received(self, data: bytes) -> None:
        now = time.time()
        self.buf += data
        if not self.upgraded and not self._handshake():
            return
        buf, pos = self.buf, 0
        while len(buf) - pos >= 2:
            b0, size = buf[pos], buf[pos + 1] & 0x7F
            head = 2
            if size == 126:
                if len(buf) - pos < 4:
                    break
                size, head = struct.unpack_from("!H", buf, pos + 2)[0], 4
            elif size == 127:
                if len(buf) - pos < 10:
                    break
                size, head = struct.unpack_from("!Q", buf, pos + 2)[0], 10
            if len(buf) - pos < head + size:
                break
            payload = bytes(buf[pos + head : pos + head + size])
            pos += head + size
            opcode = b0 & 0x0F
            if opcode in (1, 2, 0):  # text, binary, continuation
                if opcode:
                    self.compressed = bool(b0 & 0x40)
                self.parts.append(payload)
                if b0 & 0x80:  # FIN
                    message = b"".join(self.parts)
                    self.parts = []
                    if self.compressed:
                        message = self.inflate.decompress(message + b"\x00\x00\xff\xff")
                        if self.reset_inflate:
                            self.inflate = zlib.decompressobj(-15)
                    if self.rec.message(message, now, self.screen) and not self.ready.done():
                        self.ready.set_result(None)
            elif opcode == 9:  # ping
                self._send(0xA, payload)
            elif opcode == 8:  # close
                self._send(0x8, payload[:2])
                assert self.transport is not None
                self.transport.close()
        del buf[:pos]

    def close(self) -> None:
        if self.transport is not None and not self.transport.is_closing():
            self._send(0x8, struct.pack("!H", 1000))
            self.transport.close()


async def _raw_client(
    url: str, rec: Recorder, screen: dict[str, float], *, deflate: bool
) -> RawClient:
    parts = urlsplit(url)
    loop = asyncio.get_running_loop()
    _transport, client = await loop.create_connection(
        lambda: RawClient(url, rec, screen, deflate=deflate), parts.hostname, parts.port
    )
    await asyncio.wait_for(client.ready, timeout=30)
    return client


async def _websockets_client(
    url: str, rec: Recorder, screen: dict[str, float], ready: asyncio.Event, *, deflate: bool
) -> None:
    from websockets.asyncio.client import connect

    async with connect(
        url,
        max_size=2**24,
        open_timeout=30,
        ping_interval=None,
        compression="deflate" if deflate else None,
    ) as ws:
        async for message in ws:
            if rec.message(message, time.time(), screen):
                ready.set()
    rec.closed += 1


async def _clients_main(args: argparse.Namespace) -> None:
    rec = Recorder(start=args.window_start, end=args.window_end)
    screens: list[dict[str, float]] = []
    raw: list[RawClient] = []
    tasks: list[asyncio.Task[None]] = []
    for _ in range(args.clients):
        screen: dict[str, float] = {}
        screens.append(screen)
        if args.ws_client == "raw":
            raw.append(await _raw_client(args.url, rec, screen, deflate=not args.no_deflate))
        else:
            ready = asyncio.Event()
            client = _websockets_client(args.url, rec, screen, ready, deflate=not args.no_deflate)
            tasks.append(asyncio.create_task(client))
            await asyncio.wait_for(ready.wait(), timeout=30)
    cpu0 = time.process_time()
    print("READY", flush=True)
    loop = asyncio.get_running_loop()
    await loop.run_in_executor(None, sys.stdin.readline)  # the publisher has finished
    # Settle: wait until no reading frame came for a second (at most 30 s), so what is still
    # queued in the server or the sockets is received before the screens are compared.
    deadline = time.monotonic() + 30
    seen = -1
    while rec.frames_all != seen and time.monotonic() < deadline:
        seen = rec.frames_all
        await asyncio.sleep(1.0)
    closed = rec.closed
    for client in raw:
        client.close()
    for task in tasks:
        task.cancel()
    await asyncio.gather(*tasks, return_exceptions=True)
    result = {
        "clients": args.clients,
        "broken_connections": closed,
        "cpu_s": round(time.process_time() - cpu0, 2),
        "value_hist": {str(k): v for k, v in rec.value_hist.items()},
        "frame_hist": {str(k): v for k, v in rec.frame_hist.items()},
        "values_all": rec.values_all,
        "frames_all": rec.frames_all,
        "frames_window": rec.frames_window,
        "dropped_frames": rec.dropped_frames,
        "dropped_events": rec.dropped_events,
        "resyncs": rec.dropped_events,
        "other_frames": dict(rec.other),
        "worst_ms_by_second": {
            str(k): round(v * 1000, 1) for k, v in sorted(rec.worst_by_second.items())
        },
        "commit_lag_max_ms": round(rec.commit_lag_max_ms, 1),
        "queue_depth_max": rec.queue_depth_max,
        "screens": screens,
    }
    sys.stdout.write(json.dumps(result) + "\n")
    sys.stdout.flush()


def run_clients(args: argparse.Namespace) -> None:
    run_loop(_clients_main(args))


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m bench.live.clients")
    parser.add_argument("--url", required=True)
    parser.add_argument("--clients", type=int, required=True)
    parser.add_argument("--ws-client", choices=["raw", "websockets"], default="raw")
    parser.add_argument("--no-deflate", action="store_true")
    parser.add_argument("--window-start", type=float, required=True)
    parser.add_argument("--window-end", type=float, required=True)
    return parser.parse_args(argv)


if __name__ == "__main__":
    with contextlib.suppress(KeyboardInterrupt):
        run_clients(parse_args())
    sys.exit(0)
