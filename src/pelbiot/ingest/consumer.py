"""The MQTT consumer: connect, subscribe, decode, hand readings to the writer, ack after commit.

paho-mqtt runs in manual-ack mode inside our own select loop (paho's "external loop" API), so:
- the PUBACK of a QoS 1 message is sent only after the commit that holds the message's
  readings: the writer hands the committed message ids back, and this thread (the only one that
  touches the socket) sends them, many PUBACKs per write;
- ``BulkClient`` (mqttclient.py) reads the socket in large chunks and gives us every message of
  a read at once; their readings go to the writer as one item with one acknowledgement callback,
  split at ``writer_batch_max`` readings. ``PELBIOT_MQTT_CLIENT=paho`` (or paho internals that
  changed, checked at start) selects ``PlainClient``, the same on paho's public API, slower;
- an MQTT 5 receive-maximum raises the broker's in-flight window so ack-after-commit does not cap
  throughput; the writer queue bounds the rest (backpressure: we stop reading the socket);
- acks are tied to a connection generation: after a reconnect the broker redelivers whatever was
  not acknowledged, and an old packet id is never acked on the new connection;
- reconnects use capped, jittered exponential backoff, and resubscribe.

Shutdown (``pause_reading``, the writer drains, ``stop``): while the writer commits what is
queued this thread keeps sending the PUBACKs; at the end it writes the last ones, then
DISCONNECT, half-closes the socket and reads (and drops) what the broker still sends until the
broker closes its side. Closing a TCP socket with unread data in it makes the kernel send a RST
instead of a FIN, and a RST throws away our last bytes (in our send queue, or unread in the
broker's receive queue): the broker then redelivers committed messages after a restart (#3).
"""

from __future__ import annotations

import contextlib
import logging
import random
import select
import socket
import ssl
import threading
import time
from collections import deque
from typing import Any
from urllib.parse import unquote, urlsplit

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties

from pelbiot.decode.payloads import DecodeConfig, decode
from pelbiot.ingest.mqttclient import BulkClient, Inbound, PlainClient, reader_class
from pelbiot.ingest.rejects import RejectLog
from pelbiot.ingest.stats import IngestStats
from pelbiot.ingest.topics import TopicTracker
from pelbiot.ingest.writer import Writer
from pelbiot.models import Reading
from pelbiot.settings import Settings

logger = logging.getLogger(__name__)

DISCONNECT_TIMEOUT_S = 2.0  # last acks + DISCONNECT + the broker closing its side


def broker_address(url: str) -> tuple[str, int, bool, str | None, str | None]:
    """(host, port, tls, username, password) from mqtt://user:pass@host:port or mqtts://."""
    parts = urlsplit(url)
    tls = parts.scheme in {"mqtts", "ssl"}
    port = parts.port or (8883 if tls else 1883)
    user = unquote(parts.username) if parts.username else None
    password = unquote(parts.password) if parts.password else None
    return parts.hostname or "localhost", port, tls, user, password


def subscription_topic(settings: Settings) -> str:
    topic = f"{settings.topic_prefix}/#"
    if settings.mqtt_shared_group:
        topic = f"$share/{settings.mqtt_shared_group}/{topic}"
    return topic


class MqttIngest:
    """Owns one paho client. ``run`` is the thread body; ``stop`` ends it."""

    def __init__(
        self,
        settings: Settings,
        *,
        writer: Writer,
        rejects: RejectLog,
        stats: IngestStats,
        topics: TopicTracker,
    ) -> None:
        if not settings.mqtt_url:
            raise ValueError("MqttIngest needs settings.mqtt_url")
        self._settings = settings
        self._writer = writer
        self._rejects = rejects
        self._stats = stats
        self._topics = topics
        self._decode_config = DecodeConfig(
            prefix=settings.topic_prefix,
            max_payload_bytes=settings.max_payload_bytes,
            future_tolerance_ms=int(settings.future_tolerance_s * 1000),
            zone=settings.zone,
        )
        self._host, self._port, tls, url_user, url_password = broker_address(settings.mqtt_url)
        self._v5 = settings.mqtt_protocol == "5"
        self._stop = threading.Event()
        self._wake_r, self._wake_w = socket.socketpair()
        self._wake_r.setblocking(False)
        self._wake_w.setblocking(False)
        self._generation = 0
        # (connection generation, QoS 1 ids) committed and ready to acknowledge; appended by
        # the writer thread, sent by this one.
        self._acks: deque[tuple[int, list[int]]] = deque()
        self._item_readings = max(1, min(settings.writer_batch_max, 4096))
        self._reading = True
        self._thread_id: int | None = None
        # Set while _disconnect_cleanly writes DISCONNECT: paho closes the socket right after
        # writing it, and _on_socket_close lingers until then (see the module docstring).
        self._linger_until: float | None = None
        self._connected = threading.Event()
        # The reader is chosen once, here (its check builds a paho client and may log an error);
        # the one client it makes is reused by every reconnect.
        self._reader = reader_class(settings)
        self._client = self._make_client(tls, url_user, url_password)

    # -- public -------------------------------------------------------------------------------

    @property
    def connected(self) -> bool:
        return self._connected.is_set()

    @property
    def broker(self) -> str:
        return f"{self._host}:{self._port}"

    def wait_connected(self, timeout: float) -> bool:
        return self._connected.wait(timeout)

    def pause_reading(self) -> None:
        """Stop taking new messages but keep sending acks (shutdown: drain first, then stop)."""
        self._reading = False
        self._wake()

    def stop(self) -> None:
        self._stop.set()
        self._wake()

    def publish(self, topic: str, payload: bytes, *, qos: int = 1, retain: bool = False) -> bool:
        """Publish through our connection (used by the seed-compatible publish endpoint)."""
        if not self.connected:
            return False
        info = self._client.publish(topic, payload, qos=qos, retain=retain)
        return bool(info.rc == mqtt.MQTT_ERR_SUCCESS)

    def run(self) -> None:
        """Thread body: connect, pump the socket, reconnect with backoff until stopped."""
        self._thread_id = threading.get_ident()
        delay = self._settings.mqtt_reconnect_min
        while not self._stop.is_set():
            try:
                self._connect()
            except (OSError, ssl.SSLError) as exc:
                self._stats.broker_connected = False
                wait = random.uniform(delay / 2, delay)
                logger.warning(
                    "cannot reach MQTT broker %s (%s); retrying in %.1fs", self.broker, exc, wait
                )
                self._stop.wait(wait)
                delay = min(delay * 2, self._settings.mqtt_reconnect_max)
                continue
            connected_at = time.monotonic()
            self._pump()
            if self._stop.is_set():
                break  # still connected: _disconnect_cleanly sends the last acks
            self._on_lost()
            if time.monotonic() - connected_at > 10:
                delay = self._settings.mqtt_reconnect_min
            if not self._stop.is_set():
                wait = random.uniform(delay / 2, delay)
                logger.info("reconnecting to MQTT broker in %.1fs", wait)
                self._stop.wait(wait)
                delay = min(delay * 2, self._settings.mqtt_reconnect_max)
        self._disconnect_cleanly()
        self._wake_r.close()
        self._wake_w.close()

    # -- connection ---------------------------------------------------------------------------

    def _make_client(
        self, tls: bool, url_user: str | None, url_pw: str | None
    ) -> BulkClient | PlainClient:
        s = self._settings
        client = self._reader(
            on_messages=self._on_messages,
            callback_api_version=CallbackAPIVersion.VERSION2,
            client_id=s.mqtt_client_id,
            protocol=mqtt.MQTTv5 if self._v5 else mqtt.MQTTv311,
            clean_session=None if self._v5 else False,
            manual_ack=True,
        )
        user = s.mqtt_username or url_user
        password = s.mqtt_password or url_pw
        if user:
            client.username_pw_set(user, password)
        if tls:
            client.tls_set(
                ca_certs=str(s.mqtt_ca_file) if s.mqtt_ca_file else None,
                certfile=str(s.mqtt_cert_file) if s.mqtt_cert_file else None,
                keyfile=str(s.mqtt_key_file) if s.mqtt_key_file else None,
            )
            client.tls_insecure_set(s.mqtt_tls_insecure)
        client.on_connect = self._on_connect
        client.on_disconnect = self._on_disconnect
        client.on_subscribe = self._on_subscribe
        # Registering these makes paho queue outgoing packets (acks from the writer thread)
        # instead of writing to the socket from the calling thread; we write in run().
        client.on_socket_register_write = self._on_register_write
        client.on_socket_unregister_write = lambda *_a: None
        client.on_socket_close = self._on_socket_close
        client.max_queued_messages_set(0)
        client.max_inflight_messages_set(1000)
        return client

    def _connect(self) -> None:
        s = self._settings
        if self._v5:
            props = Properties(PacketTypes.CONNECT)  # type: ignore[no-untyped-call]
            props.SessionExpiryInterval = s.mqtt_session_expiry
            props.ReceiveMaximum = s.mqtt_receive_maximum
            self._client.connect(
                self._host,
                self._port,
                keepalive=s.mqtt_keepalive,
                clean_start=False,
                properties=props,
            )
        else:
            self._client.connect(self._host, self._port, keepalive=s.mqtt_keepalive)

    def _pump(self) -> None:
        client = self._client
        while not self._stop.is_set():
            sock = client.socket()
            if sock is None:
                return
            pending = self._reading and isinstance(sock, ssl.SSLSocket) and sock.pending() > 0
            wlist = [sock] if client.want_write() else []
            if pending:
                readable: list[Any] = [sock]
                writable: list[Any] = wlist
            else:
                rlist = [sock, self._wake_r] if self._reading else [self._wake_r]
                readable, writable, _ = select.select(rlist, wlist, [], 1.0)
            if self._wake_r in readable:
                self._drain_wake()
            self._send_acks()
            # Paused: a select that began before pause_reading may still report the socket.
            if (
                self._reading
                and sock in readable
                and client.loop_read(max_packets=256) != mqtt.MQTT_ERR_SUCCESS
            ):
                return
            if (sock in writable or client.want_write()) and client.loop_write() not in (
                mqtt.MQTT_ERR_SUCCESS,
                mqtt.MQTT_ERR_AGAIN,
            ):
                return
            if client.loop_misc() != mqtt.MQTT_ERR_SUCCESS:
                return

    def _on_lost(self) -> None:
        if self._connected.is_set():
            logger.warning("lost connection to MQTT broker %s", self.broker)
        self._connected.clear()
        self._stats.broker_connected = False

    def _disconnect_cleanly(self) -> None:
        """Write the last acks, then DISCONNECT (the session stays: no session expiry change),
        and let the broker read them all before the socket is closed."""
        if not self._connected.is_set():
            return
        deadline = time.monotonic() + DISCONNECT_TIMEOUT_S
        client = self._client
        self._send_acks()
        self._flush(deadline)
        self._linger_until = deadline
        try:
            client.disconnect()  # queued behind any ack not yet written: the queue is FIFO
            self._flush(deadline)  # paho closes the socket once DISCONNECT is written
        finally:
            self._linger_until = None
        sock = client.socket()
        if sock is not None:
            logger.warning(
                "MQTT broker %s did not take our DISCONNECT within %.0fs; closing",
                self.broker,
                DISCONNECT_TIMEOUT_S,
            )
            with contextlib.suppress(OSError):
                sock.close()
        self._connected.clear()
        self._stats.broker_connected = False

    def _flush(self, deadline: float) -> None:
        """Write paho's queued packets, waiting for the socket to take them, until ``deadline``."""
        client = self._client
        while client.want_write():
            sock = client.socket()
            left = deadline - time.monotonic()
            if sock is None or left <= 0:
                return
            _, writable, _ = select.select([], [sock], [], left)
            if writable and client.loop_write() != mqtt.MQTT_ERR_SUCCESS:
                return

    def _on_socket_close(self, _client: mqtt.Client, _userdata: object, sock: Any) -> None:
        """paho is about to close the socket. After our DISCONNECT, linger: half-close (a FIN
        queued behind our last bytes), then read and drop what the broker still sends until it
        closes its side, so that our close finds no unread data and sends no RST. What we drop
        was never acknowledged: the broker redelivers it."""
        deadline = self._linger_until
        if deadline is None or not isinstance(sock, socket.socket):
            return
        self._linger_until = None
        with contextlib.suppress(OSError):
            sock.shutdown(socket.SHUT_WR)
        dropped = 0
        while (left := deadline - time.monotonic()) > 0:
            try:
                readable, _, _ = select.select([sock], [], [], left)
                if not readable:
                    break
                data = sock.recv(256 * 1024)
            except (BlockingIOError, ssl.SSLWantReadError):
                continue
            except OSError:
                data = b""  # reset: the broker is gone as well
            if not data:
                logger.debug(
                    "MQTT broker closed the connection after our DISCONNECT (%d bytes dropped)",
                    dropped,
                )
                return
            dropped += len(data)
        logger.warning(
            "MQTT broker %s did not close the connection within %.0fs of our DISCONNECT",
            self.broker,
            DISCONNECT_TIMEOUT_S,
        )

    def _wake(self) -> None:
        # BlockingIOError: a wake-up is already pending; OSError: we are closing.
        with contextlib.suppress(BlockingIOError, OSError):
            self._wake_w.send(b"\0")

    def _drain_wake(self) -> None:
        with contextlib.suppress(BlockingIOError, OSError):
            while self._wake_r.recv(4096):
                pass

    def _on_register_write(self, *_args: object) -> None:
        # Our own thread writes at the end of this pump turn; others (publish) must wake it.
        if threading.get_ident() != self._thread_id:
            self._wake()

    # -- paho callbacks (all run in the ingest thread) ----------------------------------------

    def _on_connect(
        self, client: mqtt.Client, _userdata: object, flags: Any, reason: Any, _props: Any
    ) -> None:
        if reason.is_failure:
            logger.error("MQTT broker %s refused the connection: %s", self.broker, reason)
            return
        self._generation += 1
        self._stats.connects += 1
        self._stats.broker_connected = True
        self._connected.set()
        topic = subscription_topic(self._settings)
        client.subscribe(topic, qos=self._settings.mqtt_qos)
        self._stats.subscriptions = [topic]
        logger.info(
            "connected to MQTT broker %s (session present: %s); subscribing to %s",
            self.broker,
            flags.session_present,
            topic,
        )

    def _on_subscribe(
        self, _c: mqtt.Client, _u: object, _mid: int, reasons: Any, _props: Any
    ) -> None:
        for code in reasons:
            if code.is_failure:
                logger.error("subscription refused by the broker: %s", code)

    def _on_disconnect(
        self, _c: mqtt.Client, _u: object, _flags: Any, reason: Any, _props: Any
    ) -> None:
        self._stats.disconnects += 1
        self._connected.clear()
        self._stats.broker_connected = False
        if not self._stop.is_set():
            logger.warning("MQTT broker %s disconnected us: %s", self.broker, reason)

    # -- messages and acknowledgements -------------------------------------------------------

    def _on_messages(self, batch: list[Inbound]) -> None:
        """Everything one socket read brought: decode, then hand to the writer in few items."""
        now = time.time()
        now_ms = int(now * 1000)
        config = self._decode_config
        limit = self._item_readings
        newest: dict[str, bytes] = {}  # per topic, for the topic tracker: one update per read
        counts: dict[str, int] = {}
        readings: list[Reading] = []
        acks: list[int] = []
        messages = rejected = received = 0
        for msg in batch:
            topic = msg.topic
            decoded = decode(topic, msg.payload, now_ms, config)
            newest[topic] = msg.payload
            counts[topic] = counts.get(topic, 0) + 1
            if decoded.rejections:
                rejected += 1
                self._rejects.add(decoded.rejections)
            if msg.qos:
                acks.append(msg.mid)
            messages += 1
            if decoded.readings:
                readings += decoded.readings
                if len(readings) >= limit:
                    received += len(readings)
                    if not self._submit(readings, acks, messages):
                        return
                    readings, acks, messages = [], [], 0
        record = self._topics.record
        for topic, payload in newest.items():
            record(topic, payload, now, counts[topic])
        stats = self._stats
        stats.messages_received += len(batch)
        stats.messages_rejected += rejected
        stats.last_message_at = now
        stats.last_topic = batch[-1].topic
        received += len(readings)
        stats.readings_received += received
        if readings or acks:
            # Refused messages too go through the writer, so PUBACKs keep the arrival order.
            self._submit(readings, acks, messages)

    def _submit(self, readings: list[Reading], acks: list[int], n: int) -> bool:
        generation = self._generation
        pending = self._acks

        def on_committed() -> None:  # writer thread: hand the ids back, wake the socket loop
            pending.append((generation, acks))
            self._wake()

        # Blocks while the writer queue is full: we stop reading, the broker holds the rest.
        # Refused once reading is paused (the writer is stopping): give up at once, so this
        # thread goes back to sending the acks of what the writer commits while it drains.
        waiting_since = time.monotonic()
        while not self._writer.submit(
            readings, on_committed if acks else None, timeout=1.0, messages=n
        ):
            if self._stop.is_set() or not self._reading:
                return False  # not acked: the broker redelivers after restart
            if time.monotonic() - waiting_since >= self._settings.mqtt_keepalive / 2:
                # The database is down and nothing commits: without a word from us for 1.5
                # keepalives the broker would drop the connection and redeliver everything.
                self._ping_while_blocked()
                waiting_since = time.monotonic()
        return True

    def _ping_while_blocked(self) -> None:
        client = self._client
        if client.socket() is None:
            return
        client.queue_ping()
        client.loop_write()  # a failed write shows as a lost connection when the pump resumes

    def _send_acks(self) -> None:
        """Send the PUBACKs of committed messages of this connection (this thread only)."""
        pending = self._acks
        if not pending:
            return
        mids: list[int] = []
        while pending:
            generation, acks = pending.popleft()
            # An id from an earlier connection means nothing now: the broker redelivers it.
            if generation == self._generation and self._connected.is_set():
                mids += acks
        if mids:
            self._client.queue_pubacks(mids)
