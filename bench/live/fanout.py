"""The ``baseline`` scenario's server: a bare fan-out, the floor of broker + loopback + WebSocket.

``python -m bench.live.fanout --http-port P --mqtt-port M``, started by ``scenario.py``: a
``websockets`` server and a raw MQTT 3.1.1 QoS 1 subscriber, no database, no coalescing; each
MQTT message becomes one ``reading`` frame broadcast to every client. Prints ``READY`` once
subscribed.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import signal
import struct
import sys
import uuid

import orjson

from bench import packets
from bench.live.processes import run_loop


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
        writer.write(packets.connect(f"bench-live-fanout-{uuid.uuid4().hex[:8]}", clean=True))
        writer.write(packets.subscribe(f"{args.prefix}/#".encode()))
        await writer.drain()
        buf = bytearray()
        announced = False
        while True:
            chunk = await reader.read(262144)
            if not chunk:
                return  # the broker went away: the run is over
            buf += chunk
            received, used = packets.split(buf)
            acks = []
            for first, start, end in received:
                kind = first & 0xF0
                if kind == packets.SUBACK and not announced:
                    announced = True
                    print("READY", flush=True)
                if kind != packets.PUBLISH:
                    continue
                body = bytes(buf[start:end])
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
            del buf[:used]
            if acks:
                writer.write(b"".join(acks))


def run_fanout(args: argparse.Namespace) -> None:
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
    if args.loop == "uvloop":
        run_loop(_fanout_main(args))
    else:
        asyncio.run(_fanout_main(args))


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m bench.live.fanout")
    parser.add_argument("--http-port", type=int, required=True)
    parser.add_argument("--mqtt-port", type=int, required=True)
    parser.add_argument("--prefix", default="panel")
    parser.add_argument("--loop", choices=["asyncio", "uvloop"], default="asyncio")
    return parser.parse_args(argv)


if __name__ == "__main__":
    with contextlib.suppress(KeyboardInterrupt):
        run_fanout(parse_args())
    sys.exit(0)
