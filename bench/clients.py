"""MQTT client libraries compared: how fast each drains a QoS 1 backlog, and when it acks.

``python -m bench.clients [--count N]``: for each client a persistent session is created, N
single-value messages are published into it (``bench/load.py``), then the client, in a process
of its own, receives them with a handler that only counts (no decoding, no database). What is
measured is the library's own cost per message, against the broker + loopback ceiling of a
raw-socket consumer. aiomqtt and gmqtt are optional: install them to include them
(``pip install aiomqtt gmqtt``; they are not PELBIOT dependencies).

The clients, all MQTT 3.1.1 so the broker's window is the same for every one
(``max_inflight_messages 0``):

- ``raw``: ``bench/rawsub.py``, 256 KiB reads, one ``send`` of PUBACKs per read (the ceiling);
- ``paho-auto``: paho-mqtt, ``loop()``, PUBACK sent by paho when ``on_message`` returns;
- ``paho-manual``: paho-mqtt with ``manual_ack=True``, ``ack()`` called in ``on_message``;
- ``pelbiot-bulk``: PELBIOT's ``BulkClient`` (paho subclass), acks sent per read in one write;
- ``aiomqtt``: ``async for message in client.messages`` (paho underneath, acks on arrival);
- ``gmqtt-auto``: gmqtt with its default optimistic acknowledgement (PUBACK before the handler);
- ``gmqtt-late``: gmqtt with ``optimistic_acknowledgement=False`` (PUBACK after the handler).
"""

from __future__ import annotations

import argparse
import asyncio
import importlib.util
import json
import select
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion

from bench.broker import PrivateMosquitto
from bench.load import publish_backlog
from bench.messages import Workload
from bench.sessions import prepare_session

CLIENTS = [
    "raw",
    "paho-auto",
    "paho-manual",
    "pelbiot-bulk",
    "aiomqtt",
    "gmqtt-auto",
    "gmqtt-late",
]
NOTES = {
    "raw": "ceiling: no library",
    "paho-auto": "acks when on_message returns, before any commit",
    "paho-manual": "ack() whenever the app wants; one send() per PUBACK",
    "pelbiot-bulk": "ack whenever the app wants; many PUBACKs per send()",
    "aiomqtt": "acks on arrival (no manual ack API); a bounded queue drops after acking",
    "gmqtt-auto": "acks before the handler runs",
    "gmqtt-late": "acks when the handler coroutine returns; one task per message",
}


# -- consumers (each runs in its own process) -------------------------------------------------


def _paho(port: int, client_id: str, count: int, *, manual: bool) -> float:
    got = [0, 0.0]

    def on_message(c: mqtt.Client, _u: object, msg: mqtt.MQTTMessage) -> None:
        if not got[0]:
            got[1] = time.perf_counter()
        got[0] += 1
        if manual:
            c.ack(msg.mid, msg.qos)

    client = mqtt.Client(
        callback_api_version=CallbackAPIVersion.VERSION2,
        client_id=client_id,
        protocol=mqtt.MQTTv311,
        clean_session=False,
        manual_ack=manual,
    )
    client.on_message = on_message
    client.connect("127.0.0.1", port, keepalive=60)
    deadline = time.monotonic() + 300
    while got[0] < count and time.monotonic() < deadline:
        client.loop(timeout=0.05)
    elapsed = time.perf_counter() - float(got[1])
    for _ in range(20):
        client.loop(timeout=0.01)  # flush the last acks
    client.disconnect()
    return elapsed


def _bulk(port: int, client_id: str, count: int) -> float:
    from pelbiot.ingest.mqttclient import BulkClient, Inbound

    got = [0, 0.0]

    def on_messages(batch: list[Inbound]) -> None:
        if not got[0]:
            got[1] = time.perf_counter()
        got[0] += len(batch)
        client.queue_pubacks([m.mid for m in batch if m.qos])

    client = BulkClient(
        on_messages=on_messages,
        callback_api_version=CallbackAPIVersion.VERSION2,
        client_id=client_id,
        protocol=mqtt.MQTTv311,
        clean_session=False,
        manual_ack=True,
    )
    client.on_socket_register_write = lambda *_a: None
    client.connect("127.0.0.1", port, keepalive=60)
    deadline = time.monotonic() + 300
    while got[0] < count and time.monotonic() < deadline:
        sock = client.socket()
        if sock is None:
            break
        readable, _, _ = select.select([sock], [], [], 0.05)
        if readable:
            client.loop_read()
        if client.want_write():
            client.loop_write()
        client.loop_misc()
    elapsed = time.perf_counter() - float(got[1])
    while client.want_write():
        client.loop_write()
    client.disconnect()
    return elapsed


async def _aiomqtt(port: int, client_id: str, count: int) -> float:
    import aiomqtt

    got = 0
    started = 0.0
    async with aiomqtt.Client(
        "127.0.0.1",
        port,
        identifier=client_id,
        clean_session=False,
        protocol=aiomqtt.ProtocolVersion.V311,
    ) as client:
        async for _message in client.messages:
            if not got:
                started = time.perf_counter()
            got += 1
            if got >= count:
                break
        elapsed = time.perf_counter() - started
    return elapsed


async def _gmqtt(port: int, client_id: str, count: int, *, late: bool) -> float:
    import gmqtt
    from gmqtt.mqtt.constants import MQTTv311

    done = asyncio.Event()
    state = {"got": 0, "started": 0.0}

    async def on_message(_c: Any, _topic: str, _payload: bytes, _qos: int, _p: Any) -> int:
        if not state["got"]:
            state["started"] = time.perf_counter()
        state["got"] += 1
        if state["got"] >= count:
            done.set()
        return 0

    client = gmqtt.Client(client_id, clean_session=False, optimistic_acknowledgement=not late)
    client.on_message = on_message
    await client.connect("127.0.0.1", port, version=MQTTv311, keepalive=60)
    await asyncio.wait_for(done.wait(), 300)
    elapsed = time.perf_counter() - state["started"]
    await asyncio.sleep(0.2)  # let the last acks go
    await client.disconnect()
    return elapsed


def consume(name: str, port: int, client_id: str, count: int) -> float:
    if name == "raw":
        from bench.rawsub import consume as raw

        return raw(port, client_id, count)
    if name in ("paho-auto", "paho-manual"):
        return _paho(port, client_id, count, manual=name == "paho-manual")
    if name == "pelbiot-bulk":
        return _bulk(port, client_id, count)
    if name == "aiomqtt":
        return asyncio.run(_aiomqtt(port, client_id, count))
    return asyncio.run(_gmqtt(port, client_id, count, late=name == "gmqtt-late"))


# -- driver -----------------------------------------------------------------------------------


def available(name: str) -> bool:
    module = {"aiomqtt": "aiomqtt", "gmqtt-auto": "gmqtt", "gmqtt-late": "gmqtt"}.get(name)
    return module is None or importlib.util.find_spec(module) is not None


def main() -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.clients", description=__doc__)
    parser.add_argument("--count", type=int, default=100_000, help="messages per client")
    parser.add_argument("--client", action="append", choices=CLIENTS, help="default: all")
    parser.add_argument("--consume", nargs=3, metavar=("CLIENT", "PORT", "ID"), help="internal")
    args = parser.parse_args()
    if args.consume:
        name, port, client_id = args.consume
        print(json.dumps({"seconds": consume(name, int(port), client_id, args.count)}))
        return 0
    results = []
    with tempfile.TemporaryDirectory(prefix="pelbiot-clients-") as tmp:
        broker = PrivateMosquitto(Path(tmp), max_queued=args.count * 2)
        with broker:
            for name in args.client or CLIENTS:
                if not available(name):
                    print(f"  {name:13} not installed: skipped", flush=True)
                    continue
                prefix = f"c{uuid.uuid4().hex[:8]}"
                client_id = f"bench-{name}-{prefix}"
                prepare_session(broker.port, client_id, f"{prefix}/#", v5=False)
                publish_backlog(broker.port, Workload("single", args.count, prefix))
                proc = subprocess.run(
                    [
                        sys.executable,
                        "-m",
                        "bench.clients",
                        "--count",
                        str(args.count),
                        "--consume",
                        name,
                        str(broker.port),
                        client_id,
                    ],
                    capture_output=True,
                    text=True,
                    timeout=600,
                    check=False,
                )
                lines = [x for x in proc.stdout.splitlines() if x.startswith("{")]
                if not lines:
                    print(f"  {name:13} FAILED: {proc.stderr[-500:]}", flush=True)
                    continue
                seconds = json.loads(lines[-1])["seconds"]
                rate = args.count / seconds
                results.append((name, rate))
                print(f"  {name:13} {rate:>10,.0f} msg/s   {NOTES[name]}", flush=True)
    print("\n| client | messages/s | acknowledgement |\n|---|---:|---|")
    for name, rate in results:
        print(f"| {name} | {rate:,.0f} | {NOTES[name]} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
