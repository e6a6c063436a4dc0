"""MQTT ingest against a real Mosquitto, in-process: the shutdown drain (issue #3).

A stop must commit what was read, write the PUBACK of every committed message and only then
DISCONNECT, keeping the persistent session: reconnecting with the same client id must bring back
exactly the messages that were not committed, none that were.
"""

from __future__ import annotations

import asyncio
import json
import threading
import time
import uuid
from collections.abc import AsyncIterator, Callable, Iterator
from contextlib import asynccontextmanager, contextmanager
from typing import Any

import paho.mqtt.client as mqtt
import pytest
from paho.mqtt.enums import CallbackAPIVersion
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties

from pelbiot.ingest.consumer import MqttIngest, subscription_topic
from pelbiot.ingest.recorder import BatchResult
from pelbiot.ingest.rejects import RejectLog
from pelbiot.ingest.stats import IngestStats
from pelbiot.ingest.topics import TopicTracker
from pelbiot.models import Reading
from pelbiot.runtime import Runtime
from pelbiot.settings import Settings
from tests.support.databases import stored_readings
from tests.support.mosquitto import Mosquitto
from tests.support.publisher import WindowedPublisher
from tests.support.readings import block_inserts, unblock_inserts
from tests.support.waiting import wait_for

pytestmark = pytest.mark.slow

Key = tuple[str, int]  # (panel, ts_ms): one per published message


def workload(prefix: str, total: int) -> list[tuple[str, bytes]]:
    """``total`` single-reading messages, each with its own (panel, ts)."""
    base_ms = (int(time.time()) - 3 * 3600) * 1000
    messages = []
    for i in range(total):
        panel, ts = f"m{i % 10:02d}", base_ms + (i // 10) * 1000
        messages.append((f"{prefix}/{panel}/volt", json.dumps({"value": 230.0, "ts": ts}).encode()))
    return messages


def key_of(topic: str, payload: bytes) -> Key:
    return topic.split("/")[1], int(json.loads(payload)["ts"])


def publish(broker: Mosquitto, messages: list[tuple[str, bytes]], client_id: str) -> None:
    with WindowedPublisher("127.0.0.1", broker.port, client_id=client_id, window=2000) as pub:
        pub.publish_all(messages, timeout=60)


@contextmanager
def as_server(
    broker: Mosquitto, settings: Settings, on_message: Callable[[Key], None] | None = None
) -> Iterator[mqtt.Client]:
    """A plain paho client with the server's client id and persistent session (auto-ack)."""
    v5 = settings.mqtt_protocol == "5"
    client = mqtt.Client(
        callback_api_version=CallbackAPIVersion.VERSION2,
        client_id=settings.mqtt_client_id,
        protocol=mqtt.MQTTv5 if v5 else mqtt.MQTTv311,
        clean_session=None if v5 else False,
    )
    connected = threading.Event()

    def on_connect(_c: object, _u: object, _flags: Any, _rc: object, _p: object) -> None:
        connected.set()

    client.on_connect = on_connect
    if on_message is not None:
        client.on_message = lambda _c, _u, msg: on_message(key_of(msg.topic, msg.payload))
    if v5:
        props = Properties(PacketTypes.CONNECT)  # type: ignore[no-untyped-call]
        props.SessionExpiryInterval = settings.mqtt_session_expiry
        client.connect("127.0.0.1", broker.port, clean_start=False, properties=props)
    else:
        client.connect("127.0.0.1", broker.port)
    client.loop_start()
    try:
        assert connected.wait(10), "no CONNACK"
        yield client
    finally:
        client.disconnect()
        client.loop_stop()


def open_session(broker: Mosquitto, settings: Settings) -> None:
    """Create the server's persistent session and subscription, then leave: what is published
    now waits in the session and floods the server the moment it connects."""
    subscribed = threading.Event()
    with as_server(broker, settings) as client:
        client.on_subscribe = lambda *_a: subscribed.set()
        client.subscribe(subscription_topic(settings), qos=1)
        assert subscribed.wait(10), "no SUBACK"


def redelivered(broker: Mosquitto, settings: Settings, quiet_s: float = 1.5) -> set[Key]:
    """Come back as the server and collect what the broker redelivers, until it is quiet."""
    got: set[Key] = set()
    last = [time.monotonic()]

    def on_message(key: Key) -> None:
        got.add(key)
        last[0] = time.monotonic()

    with as_server(broker, settings, on_message):
        last[0] = time.monotonic()
        while time.monotonic() - last[0] < quiet_s:
            time.sleep(0.05)
    return got


class CommitThenStop:
    """Stands in for the Writer: holds what ingest submits and, once it holds ``hold``
    messages, "commits" them all and stops ingest, from inside ``submit``. So every PUBACK is
    queued in the last moment before DISCONNECT while the broker is still streaming to us: the
    window in which a SIGTERM's last commits land, made certain."""

    def __init__(self, hold: int) -> None:
        self.hold = hold
        self.held: list[tuple[list[Reading], Callable[[], None] | None, int]] = []
        self.committed: set[Key] = set()
        self.ingest: MqttIngest | None = None

    def submit(
        self,
        readings: list[Reading],
        on_committed: Callable[[], None] | None = None,
        *,
        timeout: float | None = None,
        messages: int = 1,
    ) -> bool:
        if self.committed:
            return False  # stopping: not taken, so never acknowledged
        self.held.append((readings, on_committed, messages))
        if sum(n for _r, _c, n in self.held) >= self.hold:
            for readings_, callback, _n in self.held:
                self.committed.update((r.panel_id, r.ts_ms) for r in readings_)
                if callback is not None:
                    callback()
            assert self.ingest is not None
            self.ingest.pause_reading()
            self.ingest.stop()
        return True


@pytest.mark.usefixtures("mqtt_reader")
@pytest.mark.parametrize("protocol", ["5", "3.1.1"])
def test_acks_queued_just_before_disconnect_reach_the_broker(
    private_mosquitto: Mosquitto,
    make_settings: Callable[..., Settings],
    prefix: str,
    protocol: str,
) -> None:
    """The last PUBACKs are queued right before DISCONNECT while unread PUBLISHes fill our
    receive buffer (the session holds 12,000 messages, we take 3,000 and stop). Closing such a
    socket makes the kernel send a RST instead of a FIN, and that threw the PUBACKs away: they
    all came back as redeliveries after the restart (issue #3)."""
    broker = private_mosquitto
    settings = make_settings(
        mqtt_url=broker.url,
        mqtt_protocol=protocol,
        mqtt_client_id=f"pelbiot-drain-{uuid.uuid4().hex[:8]}",
    )
    messages = workload(prefix, 12_000)
    open_session(broker, settings)
    publish(broker, messages, f"pub-{prefix}")

    writer = CommitThenStop(hold=3000)
    ingest = MqttIngest(
        settings,
        writer=writer,  # type: ignore[arg-type]
        rejects=RejectLog(ring_size=10),
        stats=IngestStats(),
        topics=TopicTracker(),
    )
    writer.ingest = ingest
    started = time.monotonic()
    thread = threading.Thread(target=ingest.run, name="mqtt-ingest", daemon=True)
    thread.start()
    try:
        wait_for(lambda: not thread.is_alive(), 15, "ingest stopped after the commit")
    finally:
        ingest.stop()
        thread.join(10)
    assert time.monotonic() - started < 5
    assert writer.hold <= len(writer.committed) < len(messages)

    again = redelivered(broker, settings)
    duplicates = again & writer.committed
    assert not duplicates, (
        f"{len(duplicates)} of {len(writer.committed)} acknowledged messages were redelivered; "
        f"mosquitto log:\n{broker.log()}"
    )
    assert again | writer.committed == {key_of(t, p) for t, p in messages}, "messages lost"


@asynccontextmanager
async def running(runtime: Runtime) -> AsyncIterator[None]:
    """``runtime`` running, connected and subscribed; stopped as SIGTERM does on the way out."""
    ready, stop = asyncio.Event(), asyncio.Event()
    task = asyncio.create_task(runtime.run(ready, stop))
    await ready.wait()
    try:
        assert runtime.ingest is not None
        assert await asyncio.to_thread(runtime.ingest.wait_connected, 10)
        await asyncio.sleep(0.3)  # SUBACK
        yield
    finally:
        stop.set()
        await asyncio.wait_for(task, 10)


def slow_recorder(runtime: Runtime, pause_s: float) -> list[int]:
    """Make every commit take ``pause_s`` longer (a loaded database); returns the sizes of the
    batches committed so far."""
    recorder = runtime.recorder
    write = recorder.write
    sizes: list[int] = []

    def slow_write(readings: list[Reading]) -> BatchResult:
        time.sleep(pause_s)
        result = write(readings)
        sizes.append(len(readings))
        return result

    recorder.write = slow_write  # type: ignore[method-assign]
    return sizes


@pytest.mark.usefixtures("mqtt_reader")
def test_runtime_stop_with_a_full_writer_queue_acks_every_commit(
    private_mosquitto: Mosquitto,
    make_settings: Callable[..., Settings],
    database_url: str,
    prefix: str,
) -> None:
    """The whole shutdown (``Runtime.run``: pause reading, drain the writer, disconnect) while
    the writer queue is full and the database slow: the drain commits the queue in many small
    transactions, and none of those messages may be redelivered; all the others must be."""
    broker = private_mosquitto
    settings = make_settings(
        mqtt_url=broker.url,
        mqtt_client_id=f"pelbiot-drain-{uuid.uuid4().hex[:8]}",
        writer_queue_size=3000,
        mqtt_receive_maximum=3000,
        writer_batch_max=100,
    )
    messages = workload(prefix, 30_000)
    runtime = Runtime.build(settings)
    sizes = slow_recorder(runtime, 0.05)
    publisher = threading.Thread(
        target=publish, args=(broker, messages, f"pub-{prefix}"), daemon=True
    )

    async def scenario() -> float:
        async with running(runtime):
            publisher.start()
            await asyncio.to_thread(
                wait_for,
                lambda: len(sizes) >= 10 and runtime.writer.depth >= 2000,
                30,
                "writer busy with a full queue",
            )
            stopped = time.monotonic()
        return time.monotonic() - stopped

    took = asyncio.run(scenario())
    assert took < 5, f"stop took {took:.1f}s"
    committed = {(p, ts) for p, _m, ts in stored_readings(database_url)}
    assert 0 < len(committed) < len(messages), "the stop must land mid-stream"
    publisher.join(60)
    assert not publisher.is_alive()

    again = redelivered(broker, settings)
    duplicates = again & committed
    assert not duplicates, (
        f"{len(duplicates)} of {len(committed)} committed messages were redelivered "
        f"(their PUBACKs never reached the broker); mosquitto log:\n{broker.log()}"
    )
    assert again | committed == {key_of(t, p) for t, p in messages}, "messages lost"


def test_a_database_outage_longer_than_the_keepalive_keeps_the_connection(
    private_mosquitto: Mosquitto,
    make_settings: Callable[..., Settings],
    database_url: str,
    prefix: str,
) -> None:
    """While the database refuses writes, the writer queue fills and ingest stops reading; it
    still pings, so the broker (which drops a client silent for 1.5 keepalives) keeps the
    connection, and everything is stored once the database is back."""
    broker = private_mosquitto
    settings = make_settings(
        mqtt_url=broker.url,
        # MQTT 3.1.1 with the broker's in-flight limit off: the broker sends all it has and
        # ingest waits on the full writer queue (with MQTT 5 it would idle in select instead,
        # where paho's own keepalive runs).
        mqtt_protocol="3.1.1",
        mqtt_keepalive=5,
        writer_queue_size=300,
        mqtt_receive_maximum=300,
        writer_batch_max=100,
    )
    messages = workload(prefix, 2000)
    runtime = Runtime.build(settings)
    block_inserts(runtime.engine)

    async def scenario() -> None:
        async with running(runtime):
            await asyncio.to_thread(publish, broker, messages, f"pub-{prefix}")
            # 2,000 messages against a queue of 300 and a batch of 100: ingest must wait.
            await asyncio.to_thread(
                wait_for,
                lambda: runtime.writer.depth >= 100 and runtime.stats.db_errors > 0,
                10,
                "writer queue filling while the database refuses writes",
            )
            await asyncio.sleep(10)  # 2 keepalives: Mosquitto gives up after 7.5 s of silence
            assert runtime.stats.db_errors > 0
            assert (runtime.stats.connects, runtime.stats.disconnects) == (1, 0), broker.log()
            unblock_inserts(runtime.engine)
            await asyncio.to_thread(
                wait_for,
                lambda: runtime.stats.readings_written >= len(messages),
                30,
                "every reading stored after the outage",
            )
            assert (runtime.stats.connects, runtime.stats.disconnects) == (1, 0), broker.log()

    asyncio.run(scenario())
    stored = {(p, ts) for p, _m, ts in stored_readings(database_url)}
    assert stored == {key_of(t, p) for t, p in messages}
