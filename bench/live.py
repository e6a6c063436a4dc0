"""``make bench`` (live feed): publish-to-browser-socket latency and server CPU of /api/v1/live.

One run, one machine, for each workload three scenarios in turn, each a fresh server under the
same load:

- ``baseline``: a bare fan-out server (``websockets`` + a raw MQTT 3.1.1 QoS 1 subscriber, no
  database, no coalescing): each MQTT message becomes one JSON frame broadcast to every client.
  It is the floor of broker + loopback + WebSocket on this machine at this moment;
- ``pelbiot 5 Hz``: ``python -m pelbiot serve`` with its defaults (live frames coalesced to at
  most ``PELBIOT_LIVE_MAX_RATE_HZ=5`` per panel), a fresh SQLite database;
- ``pelbiot 100 Hz``: the same with the highest rate the settings accept, so the time spent in
  the pipeline (decode, commit, hub, WebSocket) shows without the coalescing wait.

Workloads, both 1,000 readings/s by default, over 100 panels:
- ``telemetry``: each panel sends one three-phase telemetry message of 10 readings a second
  (``<prefix>/p007/telemetry`` ``{"ts": ..., "voltage_l1": ..., ...}``), as real meters do;
- ``single``: one reading per message, each panel 10 messages/s rotating over 4 metrics
  (``<prefix>/p007/voltage_l2`` ``{"value": v, "ts": ...}``): faster than the 5 Hz coalescing
  rate, so the default merges values and a value may wait for its panel's next frame.

Every scenario: a private Mosquitto with raised limits (``bench/broker.py``); N WebSocket clients
in processes of their own connect and get their snapshot; a publisher process sends paced QoS 1
messages for a warm-up then a measured window. Every value encodes its publish time (0.1 ms
resolution, wrapping every 100 s: ``200 + (t mod 100 s)``, a plausible voltage/current/power),
so each client computes, for every value it receives, ``receive time - publish time``: the
latency of that reading to the browser socket, coalescing wait included. ``frame latency`` is
``receive time - frame ts`` (the newest value of the frame). Only readings published inside the
window count. CPU is user + system time from ``/proc/<pid>/stat`` over the window, in % of one
core; ratios are PELBIOT / baseline of the same run and workload.

The clients offer permessage-deflate as browsers do. By default they are a minimal WebSocket
client (asyncio protocol, frames parsed by hand, zlib): at 50 clients x 1,000 frames/s the
``websockets`` client costs more CPU than the server under test, and on a small machine the
clients' own queueing would be measured; ``--ws-client websockets`` uses it anyway.

After the publisher stops, each client's last value of every (panel, metric) must equal the last
one published (nothing stale left on screen): a run that fails this check fails the benchmark.

``python -m bench.live [--quick]``; ``--help`` for the knobs.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import contextlib
import json
import os
import shutil
import signal
import struct
import subprocess
import sys
import tempfile
import time
import urllib.request
import uuid
import zlib
from collections import Counter
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import orjson

from bench.broker import PrivateMosquitto
from bench.load import RawPublisher, _remaining_length, _string
from pelbiot.broker import free_port

# Metrics whose plausible range holds 200..300 (the encoded publish time).
SINGLE_METRICS = ("voltage_l1", "voltage_l2", "voltage_l3", "voltage")
TELEMETRY_METRICS = (
    "voltage_l1",
    "voltage_l2",
    "voltage_l3",
    "voltage_l12",
    "voltage_l23",
    "voltage_l31",
    "current_l1",
    "current_l2",
    "current_l3",
    "power",
)
TARGET_P99_MS = 100.0
HIGH_RATE_HZ = 100.0  # the highest PELBIOT_LIVE_MAX_RATE_HZ the settings accept
_WRAP = 1_000_000  # publish time is encoded in units of 0.1 ms, modulo 100 s
_BUCKET_MS = 0.1  # latency histogram resolution


# -- the clock in the value -------------------------------------------------------------------


def encode_time(t: float) -> float:
    """A plausible voltage (200.0000 .. 299.9999) that carries ``t`` (epoch s) modulo 100 s."""
    return 200.0 + (int(t * 10_000) % _WRAP) / 10_000


def decode_time(value: float, now: float) -> float:
    """The publish time (epoch s) of a value received at ``now`` (less than 100 s later)."""
    units = round((value - 200.0) * 10_000)
    now_units = int(now * 10_000)
    return (now_units - (now_units - units) % _WRAP) / 10_000


# -- histograms -------------------------------------------------------------------------------


def percentiles(hist: dict[int, int]) -> dict[str, float | int | None]:
    """p50 / p90 / p99 / max (ms) of a histogram in 0.1 ms buckets."""
    total = sum(hist.values())
    out: dict[str, float | int | None] = {"n": total}
    if not total:
        return out | {"p50": None, "p90": None, "p99": None, "max": None}
    keys = sorted(hist)
    marks = {"p50": 0.50, "p90": 0.90, "p99": 0.99}
    seen, i = 0, 0
    for key in keys:
        seen += hist[key]
        while i < len(marks) and seen >= total * list(marks.values())[i]:
            out[list(marks)[i]] = round((key + 1) * _BUCKET_MS, 1)
            i += 1
    out["max"] = round((keys[-1] + 1) * _BUCKET_MS, 1)
    return out


def merge_hist(hists: list[dict[str, int]]) -> dict[int, int]:
    merged: Counter[int] = Counter()
    for h in hists:
        merged.update({int(k): v for k, v in h.items()})
    return dict(merged)


# -- process helpers --------------------------------------------------------------------------


def cpu_seconds(pid: int) -> float:
    """User + system CPU of a process (all its threads) from /proc."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return 0.0
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def machine_busy() -> tuple[float, float]:
    """(busy, total) jiffies of the whole machine, all CPUs (from /proc/stat)."""
    values = [int(v) for v in Path("/proc/stat").read_text().splitlines()[0].split()[1:]]
    idle = values[3] + values[4]
    total = sum(values[:8])
    return total - idle, total


def _python(*args: str) -> list[str]:
    return [sys.executable, "-m", "bench.live", *args]


def _read_line(proc: subprocess.Popen[str], prefix: str, timeout: float) -> str:
    """Read stdout lines until one starts with ``prefix`` (the child blocks nothing else)."""
    assert proc.stdout is not None
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        line = proc.stdout.readline()
        if not line:
            raise RuntimeError(f"child exited ({proc.poll()}) before {prefix!r}")
        if line.startswith(prefix):
            return line[len(prefix) :].strip()
    raise TimeoutError(f"no {prefix!r} within {timeout:.0f}s")


def _stop(proc: subprocess.Popen[Any] | None, timeout: float = 15) -> None:
    if proc is None or proc.poll() is not None:
        return
    proc.send_signal(signal.SIGTERM)
    try:
        proc.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait(timeout=5)


# -- role: publisher --------------------------------------------------------------------------


def run_publisher(args: argparse.Namespace) -> None:
    """Paced QoS 1 publishing. Message i goes to panel i % P; a single-value message to metric
    (i // P) % M, a telemetry message carries all M metrics."""
    single = args.kind == "single"
    metrics = (SINGLE_METRICS if single else TELEMETRY_METRICS)[: args.metrics]
    if single:
        topics = [
            [f"{args.prefix}/p{p:03d}/{m}".encode() for m in metrics] for p in range(args.panels)
        ]
    else:
        topics = [[f"{args.prefix}/p{p:03d}/telemetry".encode()] for p in range(args.panels)]
    msg_rate = args.rate / (1 if single else len(metrics))
    count = int(msg_rate * args.seconds)
    pub = RawPublisher(args.port, f"bench-live-pub-{uuid.uuid4().hex[:8]}", window=2000)
    last: dict[str, float] = {}
    cpu0 = time.process_time()
    started = time.perf_counter()
    print(f"START {time.time():.6f}", flush=True)
    i = 0
    while i < count:
        due = min(count, int((time.perf_counter() - started) * msg_rate) + 1)
        if due > i:
            now = time.time()
            value, ts_ms = encode_time(now), int(now * 1000)
            batch = []
            for j in range(i, due):
                p = j % args.panels
                if single:
                    m = (j // args.panels) % len(metrics)
                    batch.append((topics[p][m], b'{"value":%r,"ts":%d}' % (value, ts_ms)))
                    last[f"p{p:03d}/{metrics[m]}"] = value
                else:
                    body = ",".join(f'"{m}":{value!r}' for m in metrics)
                    batch.append((topics[p][0], b'{"ts":%d,%s}' % (ts_ms, body.encode())))
                    last.update((f"p{p:03d}/{m}", value) for m in metrics)
            pub.send(batch)
            i = due
        time.sleep(max(0.0005, started + i / msg_rate - time.perf_counter()))
    elapsed = time.perf_counter() - started
    pub.drain()
    pub.close()
    result = {
        "messages": count,
        "readings": count * (1 if single else len(metrics)),
        "seconds": round(elapsed, 3),
        "cpu_s": round(time.process_time() - cpu0, 2),
        "last": last,
    }
    print(json.dumps(result), flush=True)


# -- role: WebSocket clients ------------------------------------------------------------------


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
    _run(_clients_main(args))


def _run(coro: Any) -> None:
    try:
        import uvloop

        uvloop.run(coro)
    except ImportError:
        asyncio.run(coro)


# -- role: bare fan-out server (the baseline) -------------------------------------------------


def _mqtt_packets(buf: bytearray) -> tuple[list[tuple[int, bytes]], int]:
    """Complete MQTT packets at the start of ``buf``: [(first byte, body)], bytes consumed."""
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
        out.append((buf[pos], bytes(buf[i : i + length])))
        pos = i + length
    return out, pos


async def _fanout_main(args: argparse.Namespace) -> None:
    from websockets.asyncio.server import ServerConnection, broadcast, serve

    clients: set[ServerConnection] = set()

    async def handler(ws: ServerConnection) -> None:
        await ws.send(orjson.dumps({"type": "snapshot", "panels": {}}).decode())
        clients.add(ws)
        try:
            await ws.wait_closed()
        finally:
            clients.discard(ws)

    async with serve(handler, "127.0.0.1", args.http_port, max_size=2**20):
        reader, writer = await asyncio.open_connection("127.0.0.1", args.mqtt_port)
        client_id = f"bench-live-fanout-{uuid.uuid4().hex[:8]}".encode()
        body = _string(b"MQTT") + b"\x04\x02" + struct.pack("!H", 60) + _string(client_id)
        writer.write(b"\x10" + _remaining_length(len(body)) + body)
        topic = f"{args.prefix}/#".encode()
        sub = struct.pack("!H", 1) + _string(topic) + b"\x01"
        writer.write(b"\x82" + _remaining_length(len(sub)) + sub)
        await writer.drain()
        buf = bytearray()
        announced = False
        while True:
            chunk = await reader.read(262144)
            if not chunk:
                return  # the broker went away: the run is over
            buf += chunk
            packets, used = _mqtt_packets(buf)
            del buf[:used]
            acks = []
            for first, body in packets:
                kind = first & 0xF0
                if kind == 0x90 and not announced:  # SUBACK
                    announced = True
                    print("READY", flush=True)
                if kind != 0x30:
                    continue
                n = struct.unpack_from("!H", body)[0]
                name = body[2 : 2 + n].decode()
                rest = 2 + n
                if (first >> 1) & 3:
                    acks.append(b"\x40\x02" + body[rest : rest + 2])
                    rest += 2
                doc = orjson.loads(body[rest:])
                _prefix, panel, metric = name.split("/")
                ts = doc.pop("ts")
                values = doc if metric == "telemetry" else {metric: doc["value"]}
                frame = {"type": "reading", "panel": panel, "ts": ts, "values": values}
                broadcast(clients, orjson.dumps(frame).decode())
            if acks:
                writer.write(b"".join(acks))


def run_fanout(args: argparse.Namespace) -> None:
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
    if args.loop == "uvloop":
        _run(_fanout_main(args))
    else:
        asyncio.run(_fanout_main(args))


# -- the orchestrator -------------------------------------------------------------------------


@dataclass
class Options:
    rate: float  # readings per second
    seconds: float  # measured per scenario, over all rounds
    rounds: int
    wait_quiet: float
    quiet_below: float
    warmup: float
    clients: int
    client_procs: int
    ws_client: str
    deflate: bool
    server_loop: str
    panels: int
    high_rate_hz: float
    workdir: Path


@dataclass(frozen=True)
class Workload:
    kind: str  # "telemetry" | "single"
    metrics: int

    @property
    def per_message(self) -> int:
        return self.metrics if self.kind == "telemetry" else 1


# ``pelbiot serve`` runs its own asyncio.run(): uvicorn's loop setting does not apply to it.
_UVLOOP_SERVE = (
    "import asyncio, sys, uvloop; asyncio.set_event_loop_policy(uvloop.EventLoopPolicy()); "
    "from pelbiot.cli import main; sys.argv = ['pelbiot', 'serve']; main()"
)


def _start_pelbiot(
    broker: PrivateMosquitto, port: int, rate_hz: float | None, opts: Options, tag: str
) -> subprocess.Popen[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("PELBIOT_")}
    env |= {
        "PELBIOT_MQTT_URL": broker.url,
        "PELBIOT_DATABASE_URL": f"sqlite:///{opts.workdir / tag}.db",
        "PELBIOT_DATA_DIR": str(opts.workdir),
        "PELBIOT_HTTP_PORT": str(port),
        "PELBIOT_TOPIC_PREFIX": "panel",
        "PELBIOT_MQTT_CLIENT_ID": f"bench-live-{tag}",
        # Wall-display mode: the clients need no account (the cost per socket is the same).
        "PELBIOT_ANONYMOUS_READ": "true",
    }
    if rate_hz is not None:
        env["PELBIOT_LIVE_MAX_RATE_HZ"] = str(rate_hz)
    with (opts.workdir / f"{tag}.log").open("w") as log:
        proc = subprocess.Popen(
            [sys.executable, "-m", "pelbiot", "serve"]
            if opts.server_loop == "asyncio"
            else [sys.executable, "-c", _UVLOOP_SERVE],
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
            text=True,
            cwd=opts.workdir,
        )
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"pelbiot exited {proc.returncode}; see {tag}.log")
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/health", timeout=2) as resp:
                if json.load(resp)["checks"]["broker"]["ok"]:
                    return proc
        except OSError:
            pass
        time.sleep(0.2)
    _stop(proc)
    raise TimeoutError("pelbiot did not become healthy within 60s")


def _start_fanout(broker: PrivateMosquitto, port: int, opts: Options) -> subprocess.Popen[str]:
    with (opts.workdir / "fanout.log").open("a") as log:
        proc = subprocess.Popen(
            _python(
                "_fanout",
                "--http-port",
                str(port),
                "--mqtt-port",
                str(broker.port),
                "--loop",
                opts.server_loop,
            ),
            stdout=subprocess.PIPE,
            stderr=log,
            text=True,
        )
    _read_line(proc, "READY", 30)
    return proc


def wait_quiet(limit_s: float, below_pct: float) -> float:
    """Wait (at most ``limit_s``) until the machine is busy less than ``below_pct`` % of one
    core over a second; returns the busy % last seen. Other people's test runs are not ours to
    stop, but a round need not start in the middle of one."""
    cores = os.cpu_count() or 1
    deadline = time.monotonic() + limit_s
    while True:
        a = machine_busy()
        time.sleep(1.0)
        b = machine_busy()
        busy = (b[0] - a[0]) / max(1, b[1] - a[1]) * 100 * cores
        if busy < below_pct or time.monotonic() >= deadline:
            return round(busy, 1)
        time.sleep(2.0)


def _cpu_now(pids: dict[str, list[int]]) -> dict[str, float]:
    return {name: sum(cpu_seconds(pid) for pid in group) for name, group in pids.items()}


def measure(
    broker: PrivateMosquitto,
    workload: Workload,
    scenario: str,
    opts: Options,
    rate_hz: float | None = None,
) -> dict[str, Any]:
    """One round of one scenario: server, clients, publisher; the figures of the window."""
    seconds = opts.seconds / opts.rounds
    busy_before = wait_quiet(opts.wait_quiet, opts.quiet_below) if opts.wait_quiet else None
    port = free_port()
    tag = f"{workload.kind}-{scenario}-{uuid.uuid4().hex[:6]}"
    server = None
    client_procs: list[subprocess.Popen[str]] = []
    pub = None
    try:
        if scenario == "baseline":
            server = _start_fanout(broker, port, opts)
        else:
            server = _start_pelbiot(broker, port, rate_hz, opts, tag)
        # The window is fixed before anything is published: the clients keep only the
        # readings published inside it.
        setup = 2.0 + 0.05 * opts.clients
        t0 = time.time() + setup
        window = (t0 + opts.warmup, t0 + opts.warmup + seconds)
        per = [opts.clients // opts.client_procs] * opts.client_procs
        for k in range(opts.clients % opts.client_procs):
            per[k] += 1
        for k, n in enumerate(per):
            with (opts.workdir / f"clients-{tag}-{k}.log").open("w") as log:
                client_procs.append(
                    subprocess.Popen(
                        _python(
                            "_clients",
                            "--url",
                            f"ws://127.0.0.1:{port}/api/v1/live",
                            "--clients",
                            str(n),
                            "--ws-client",
                            opts.ws_client,
                            *([] if opts.deflate else ["--no-deflate"]),
                            "--window-start",
                            repr(window[0]),
                            "--window-end",
                            repr(window[1]),
                        ),
                        stdin=subprocess.PIPE,
                        stdout=subprocess.PIPE,
                        stderr=log,
                        text=True,
                    )
                )
        for proc in client_procs:
            _read_line(proc, "READY", 60)
        if time.time() > t0:
            raise RuntimeError(f"clients took more than {setup:.1f}s to connect")
        time.sleep(t0 - time.time())
        with (opts.workdir / f"publisher-{tag}.log").open("w") as log:
            pub = subprocess.Popen(
                _python(
                    "_publish",
                    "--port",
                    str(broker.port),
                    "--prefix",
                    "panel",
                    "--kind",
                    workload.kind,
                    "--rate",
                    str(opts.rate),
                    "--seconds",
                    str(window[1] - time.time()),
                    "--panels",
                    str(opts.panels),
                    "--metrics",
                    str(workload.metrics),
                ),
                stdout=subprocess.PIPE,
                stderr=log,
                text=True,
            )
        pids = {
            "server": [server.pid],
            "broker": [broker.proc.pid] if broker.proc else [],
            "clients": [p.pid for p in client_procs],
            "publisher": [pub.pid],
        }
        time.sleep(max(0.0, window[0] - time.time()))
        cpu0, busy0, w0 = _cpu_now(pids), machine_busy(), time.monotonic()
        time.sleep(max(0.0, window[1] - time.time()))
        cpu1, busy1, span = _cpu_now(pids), machine_busy(), time.monotonic() - w0
        out, _ = pub.communicate(timeout=60)
        published = json.loads(out.strip().splitlines()[-1])
        results = []
        for proc in client_procs:
            assert proc.stdin is not None
            proc.stdin.write("DONE\n")
            proc.stdin.flush()
        for proc in client_procs:
            out, _ = proc.communicate(timeout=60)
            results.append(json.loads(out.strip().splitlines()[-1]))
        server_alive = server.poll() is None
    finally:
        for proc in [pub, *client_procs]:
            _stop(proc, 5)
        _stop(server)
    cores = os.cpu_count() or 1
    cpu = {k: round((cpu1[k] - cpu0[k]) / span * 100, 1) for k in cpu0}
    cpu["machine"] = round((busy1[0] - busy0[0]) / (busy1[1] - busy0[1]) * 100 * cores, 1)
    cpu["others"] = round(max(0.0, cpu["machine"] - sum(cpu[k] for k in cpu0)), 1)
    value_hist = merge_hist([r["value_hist"] for r in results])
    frame_hist = merge_hist([r["frame_hist"] for r in results])
    value_lat, frame_lat = percentiles(value_hist), percentiles(frame_hist)
    stale = 0
    for r in results:
        for screen in r["screens"]:
            stale += sum(1 for k, v in published["last"].items() if screen.get(k) != v)
    in_window = int(opts.rate * seconds)
    row = {
        "workload": workload.kind,
        "scenario": scenario,
        "max_rate_hz": rate_hz,
        "value_latency_ms": value_lat,
        "frame_latency_ms": frame_lat,
        "value_hist": value_hist,
        "frame_hist": frame_hist,
        "cpu_pct_of_core": cpu,
        "window_s": round(span, 2),
        "published_readings": published["readings"],
        "values_delivered_per_client": round(
            (value_lat["n"] or 0) / max(1, opts.clients * in_window), 3
        ),
        "frames_per_s_all_clients": round(sum(r["frames_window"] for r in results) / span),
        "dropped_frames": sum(r["dropped_frames"] for r in results),
        "resyncs": sum(r["resyncs"] for r in results),
        "broken_connections": sum(r["broken_connections"] for r in results),
        "stale_series": stale,
        "server_alive": server_alive,
        "machine_busy_before_pct": busy_before,
        "worst_ms_by_second": results[0]["worst_ms_by_second"],
        "commit_lag_max_ms": max(r["commit_lag_max_ms"] for r in results),
        "writer_queue_max": max(r["queue_depth_max"] for r in results),
    }
    row["ok"] = bool(
        server_alive and stale == 0 and not row["broken_connections"] and value_lat["n"]
    )
    return row


def pool(rows: list[dict[str, Any]]) -> dict[str, Any]:
    """One scenario's rounds as one row: histograms merged, CPU and rates averaged."""
    first = rows[0]
    value_hist = merge_hist([{str(k): v for k, v in r["value_hist"].items()} for r in rows])
    frame_hist = merge_hist([{str(k): v for k, v in r["frame_hist"].items()} for r in rows])
    span = sum(r["window_s"] for r in rows)
    cpu = {
        k: round(sum(r["cpu_pct_of_core"][k] * r["window_s"] for r in rows) / span, 1)
        for k in first["cpu_pct_of_core"]
    }
    summed = ("dropped_frames", "resyncs", "broken_connections", "stale_series")
    return {
        "workload": first["workload"],
        "scenario": first["scenario"],
        "max_rate_hz": first["max_rate_hz"],
        "rounds": len(rows),
        "value_latency_ms": percentiles(value_hist),
        "frame_latency_ms": percentiles(frame_hist),
        "value_p99_per_round": [r["value_latency_ms"]["p99"] for r in rows],
        "cpu_pct_of_core": cpu,
        "window_s": round(span, 2),
        "values_delivered_per_client": round(
            sum(r["values_delivered_per_client"] * r["window_s"] for r in rows) / span, 3
        ),
        "frames_per_s_all_clients": round(
            sum(r["frames_per_s_all_clients"] * r["window_s"] for r in rows) / span
        ),
        **{k: sum(r[k] for r in rows) for k in summed},
        "commit_lag_max_ms": max(r["commit_lag_max_ms"] for r in rows),
        "writer_queue_max": max(r["writer_queue_max"] for r in rows),
        "worst_ms_by_second": [r["worst_ms_by_second"] for r in rows],
        "ok": all(r["ok"] for r in rows),
    }


def _name(row: dict[str, Any]) -> str:
    if row["scenario"] == "baseline":
        return "baseline (bare fan-out)"
    return f"pelbiot {row['max_rate_hz'] or 5:g} Hz"


def _report(row: dict[str, Any], round_no: int) -> None:
    v, f, c = row["value_latency_ms"], row["frame_latency_ms"], row["cpu_pct_of_core"]
    print(
        f"  {round_no} {_name(row):24} value p50 {v['p50']} p99 {v['p99']} max {v['max']} ms | "
        f"frame p50 {f['p50']} p99 {f['p99']} ms | cpu: server {c['server']}% "
        f"broker {c['broker']}% clients {c['clients']}% others {c['others']}% | "
        f"{row['frames_per_s_all_clients']:,} frames/s, "
        f"values {row['values_delivered_per_client']:.1%}"
        f", dropped {row['dropped_frames']}, stale {row['stale_series']}, "
        f"commit lag (sampled) max {row['commit_lag_max_ms']} ms"
        f"{'' if row['ok'] else '  FAILED'}",
        flush=True,
    )


def _ratio(a: float | None, b: float | None) -> str:
    return f"{a / b:.2f}" if a and b else "-"


SATURATED_P50_MS = 1000.0  # a baseline this late is behind, not a floor: no latency ratios


def summary(results: dict[str, Any]) -> str:
    o = results["options"]
    lines = [
        "",
        f"{o['rate']:,.0f} readings/s over {o['panels']} panels, {o['clients']} WebSocket "
        f"clients, {o['seconds']:g} s measured per scenario in {o['rounds']} round(s), each "
        f"after {o['warmup']:g} s warm-up. CPU in % of one "
        f"core (this machine: {o['cpus']} cores); x = PELBIOT / baseline of the same workload. "
        f"Clients: {o['ws_client']}, {'with' if o['deflate'] else 'without'} permessage-deflate; "
        f"server event loop: {o['server_loop']}.",
        "",
        "| workload | scenario | value p50 | value p99 (by round) | frame p50 | frame p99 | "
        "p50 x | p99 x | server CPU | CPU x | frames/s to clients | other processes' CPU |",
        "|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    rows = results["scenarios"]
    for r in rows:
        base = next(
            (b for b in rows if b["workload"] == r["workload"] and b["scenario"] == "baseline"),
            None,
        )
        v, f, c = r["value_latency_ms"], r["frame_latency_ms"], r["cpu_pct_of_core"]
        bv = base["value_latency_ms"] if base else {}
        bc = base["cpu_pct_of_core"]["server"] if base else None
        if (bv.get("p50") or 0) > SATURATED_P50_MS:
            bv = {}  # the bare fan-out could not keep up: its latency is a backlog
        by_round = ", ".join(str(x) for x in r["value_p99_per_round"])
        lines.append(
            f"| {r['workload']} | {_name(r)} | {v['p50']} ms | {v['p99']} ms ({by_round}) | "
            f"{f['p50']} ms | {f['p99']} ms | {_ratio(v['p50'], bv.get('p50'))} | "
            f"{_ratio(v['p99'], bv.get('p99'))} | {c['server']}% | {_ratio(c['server'], bc)} | "
            f"{r['frames_per_s_all_clients']:,} | {c['others']}% |"
        )
    lines.append("")
    for r in rows:
        p50 = r["value_latency_ms"]["p50"]
        if r["scenario"] == "baseline" and p50 and p50 > SATURATED_P50_MS:
            lines.append(
                f"{r['workload']}: the bare fan-out cannot keep up with "
                f"{r['frames_per_s_all_clients']:,} frames/s here (p50 {p50} ms and growing): "
                "no latency ratios against it."
            )
    for r in rows:
        if r["scenario"] != "baseline":
            p99 = r["value_latency_ms"]["p99"]
            verdict = "met" if p99 is not None and p99 < TARGET_P99_MS else "NOT met"
            lines.append(
                f"target p99 < {TARGET_P99_MS:g} ms, {r['workload']}, {_name(r)}: "
                f"{verdict} ({p99} ms)"
            )
    return "\n".join(lines)


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m bench.live", description=__doc__.split("\n\n")[0]
    )
    parser.add_argument("--quick", action="store_true", help="5 s windows (about 2 minutes)")
    parser.add_argument("--rate", type=float, default=1000.0, help="readings per second")
    parser.add_argument("--seconds", type=float, help="measured per scenario (20; 5 with --quick)")
    parser.add_argument(
        "--rounds", type=int, help="the scenarios take turns this often (2; 1 with --quick)"
    )
    parser.add_argument("--warmup", type=float, help="discarded first seconds (3; 2 with --quick)")
    parser.add_argument("--clients", type=int, default=50)
    parser.add_argument(
        "--client-procs", type=int, default=2, help="processes the clients are spread over"
    )
    parser.add_argument("--ws-client", choices=["raw", "websockets"], default="raw")
    parser.add_argument(
        "--no-deflate",
        action="store_true",
        help="clients do not offer permessage-deflate (shows what compression costs)",
    )
    parser.add_argument(
        "--server-loop",
        choices=["asyncio", "uvloop"],
        default="asyncio",
        help="event loop of `pelbiot serve` (asyncio is what it ships with)",
    )
    parser.add_argument("--panels", type=int, default=100)
    parser.add_argument(
        "--workload", action="append", choices=["telemetry", "single"], help="default: both"
    )
    parser.add_argument(
        "--scenario",
        action="append",
        choices=["baseline", "default", "high"],
        help="default: all three, in that order",
    )
    parser.add_argument("--high-rate-hz", type=float, default=HIGH_RATE_HZ)
    parser.add_argument(
        "--wait-quiet",
        type=float,
        default=10.0,
        metavar="S",
        help="before each round, wait up to S seconds for the machine to be quiet (0: don't)",
    )
    parser.add_argument(
        "--quiet-below",
        type=float,
        default=50.0,
        metavar="PCT",
        help="quiet = the whole machine busy less than PCT %% of one core",
    )
    parser.add_argument("--json", type=Path, help="also write the results here")
    parser.add_argument("--keep", action="store_true", help="keep the logs (temp dir)")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    workdir = Path(tempfile.mkdtemp(prefix="pelbiot-bench-live-"))
    opts = Options(
        rate=args.rate,
        seconds=args.seconds or (5.0 if args.quick else 20.0),
        rounds=max(1, args.rounds or (1 if args.quick else 2)),
        wait_quiet=args.wait_quiet,
        quiet_below=args.quiet_below,
        warmup=args.warmup or (2.0 if args.quick else 3.0),
        clients=args.clients,
        client_procs=max(1, min(args.client_procs, args.clients)),
        ws_client=args.ws_client,
        deflate=not args.no_deflate,
        server_loop=args.server_loop,
        panels=args.panels,
        high_rate_hz=args.high_rate_hz,
        workdir=workdir,
    )
    machine = {
        "date": datetime.now(UTC).isoformat(timespec="seconds"),
        "cpus": os.cpu_count(),
        "python": sys.version.split()[0],
        "load_avg_before": os.getloadavg(),
    }
    print(f"machine: {json.dumps(machine)}", flush=True)
    results: dict[str, Any] = {
        "machine": machine,
        "options": {
            "rate": opts.rate,
            "seconds": opts.seconds,
            "rounds": opts.rounds,
            "warmup": opts.warmup,
            "wait_quiet_s": opts.wait_quiet,
            "clients": opts.clients,
            "client_procs": opts.client_procs,
            "ws_client": opts.ws_client,
            "deflate": opts.deflate,
            "server_loop": opts.server_loop,
            "panels": opts.panels,
            "cpus": os.cpu_count(),
        },
        "scenarios": [],
    }
    workloads = {
        "telemetry": Workload("telemetry", len(TELEMETRY_METRICS)),
        "single": Workload("single", len(SINGLE_METRICS)),
    }
    plan = {"baseline": None, "default": None, "high": opts.high_rate_hz}
    failed = False
    try:
        with PrivateMosquitto(workdir / "mosquitto", max_queued=100_000) as broker:
            for kind in args.workload or list(workloads):
                workload = workloads[kind]
                print(
                    f"{kind}: {opts.rate:,.0f} readings/s = "
                    f"{opts.rate / workload.per_message:,.0f} messages/s, "
                    f"{opts.rate / workload.per_message / opts.panels:g} per panel per s",
                    flush=True,
                )
                scenarios = args.scenario or list(plan)
                done: dict[str, list[dict[str, Any]]] = {name: [] for name in scenarios}
                # Rounds interleave the scenarios, so a burst of load from elsewhere on the
                # machine does not land on one of them only.
                for round_no in range(1, opts.rounds + 1):
                    for scenario in scenarios:
                        try:
                            row = measure(broker, workload, scenario, opts, plan[scenario])
                        except (RuntimeError, TimeoutError, OSError, ValueError) as exc:
                            print(f"  {kind} {scenario}: FAILED: {exc}", flush=True)
                            failed = True
                            continue
                        _report(row, round_no)
                        failed = failed or not row["ok"]
                        done[scenario].append(row)
                results["scenarios"] += [pool(rows) for rows in done.values() if rows]
    finally:
        if args.keep:
            print(f"logs kept in {workdir}")
        else:
            shutil.rmtree(workdir, ignore_errors=True)
    results["machine"]["load_avg_after"] = os.getloadavg()
    print(summary(results))
    if args.json:
        args.json.write_text(json.dumps(results, indent=2))
    return 1 if failed else 0


def _role_args(role: str, argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog=f"python -m bench.live {role}")
    if role == "_publish":
        parser.add_argument("--port", type=int, required=True)
        parser.add_argument("--prefix", required=True)
        parser.add_argument("--kind", choices=["telemetry", "single"], required=True)
        parser.add_argument("--rate", type=float, required=True, help="readings per second")
        parser.add_argument("--seconds", type=float, required=True)
        parser.add_argument("--panels", type=int, required=True)
        parser.add_argument("--metrics", type=int, required=True)
    elif role == "_clients":
        parser.add_argument("--url", required=True)
        parser.add_argument("--clients", type=int, required=True)
        parser.add_argument("--ws-client", choices=["raw", "websockets"], default="raw")
        parser.add_argument("--no-deflate", action="store_true")
        parser.add_argument("--window-start", type=float, required=True)
        parser.add_argument("--window-end", type=float, required=True)
    else:
        parser.add_argument("--http-port", type=int, required=True)
        parser.add_argument("--mqtt-port", type=int, required=True)
        parser.add_argument("--prefix", default="panel")
        parser.add_argument("--loop", choices=["asyncio", "uvloop"], default="asyncio")
    return parser.parse_args(argv)


ROLES = {"_publish": run_publisher, "_clients": run_clients, "_fanout": run_fanout}

if __name__ == "__main__":
    if len(sys.argv) > 1 and sys.argv[1] in ROLES:
        with contextlib.suppress(KeyboardInterrupt):
            ROLES[sys.argv[1]](_role_args(sys.argv[1], sys.argv[2:]))
        sys.exit(0)
    sys.exit(main())
