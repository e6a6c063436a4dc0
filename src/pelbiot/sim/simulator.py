"""``pelbiot simulate``: realistic meters (``pelbiot.sim.meter_model``) published over MQTT.

``Simulator`` turns a tick into messages; ``run_simulator`` is the thin edge: a drift-free
monotonic schedule, and ``MqttPublisher``, one paho-mqtt connection (MQTT 3.1.1, which every broker
speaks, the embedded amqtt included) that reconnects with backoff and never has more than
``window`` messages awaiting acknowledgement (paho silently loses messages past 65,535).

Default topics: ``<prefix>/<panel>/telemetry`` with ``{"ts": "<ISO 8601 with offset>",
"voltage_l1": ..., ...}`` in canonical metric names. With ``seed_topics``: like the original
simulator, ``<prefix>/<panel>/volt|ampere|power|energy_cost`` with plain numbers.
When the broker is away, QoS 1 messages wait in the window (paho resends them on reconnect) and
readings beyond it are dropped, as a meter with a small buffer would.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import queue
import random
import signal
import threading
import time
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from urllib.parse import unquote, urlsplit
from zoneinfo import ZoneInfo

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion

from pelbiot.errors import ConfigError
from pelbiot.sim.meter_model import (
    EVENTS,
    PLN_TARIFF_RP_PER_KWH,
    PanelModel,
    Sample,
    format_ts,
    make_panels,
    seed_values,
    telemetry_payload,
)

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class SimulatorConfig:
    """What ``pelbiot simulate`` runs. Rates are chances per reading that an event starts;
    ``seed`` fixes the panels and every random draw (unset: same panels, fresh noise)."""

    panels: int = 5
    interval_s: float = 2.0
    seed_topics: bool = False
    prefix: str = "panel"
    sag_rate: float = 0.002
    swell_rate: float = 0.001
    overload_rate: float = 0.001
    dropout_rate: float = 0.0005
    seed: int | None = None
    zone: ZoneInfo = ZoneInfo("Asia/Jakarta")
    qos: int = 1
    tariff_rp_per_kwh: float = PLN_TARIFF_RP_PER_KWH
    window: int = 1000  # most publishes awaiting the broker's acknowledgement
    panel_prefix: str = "trafo"
    report_every_s: float = 60.0

    def __post_init__(self) -> None:
        if self.panels < 1 or self.interval_s <= 0:
            raise ConfigError("the simulator needs at least one panel and a positive interval")
        for name in ("sag_rate", "swell_rate", "overload_rate", "dropout_rate"):
            if not 0.0 <= getattr(self, name) <= 1.0:
                raise ConfigError(f"{name} must be between 0 and 1")
        if self.qos not in (0, 1, 2) or not 1 <= self.window <= 60_000:
            raise ConfigError("qos must be 0, 1 or 2 and window between 1 and 60000")

    def rate(self, event: str) -> float:
        rate: float = getattr(self, f"{event}_rate")
        return rate


class Simulator:
    """Every panel of a run. ``messages(ts)`` is one tick: (topic, payload) pairs to publish."""

    def __init__(self, config: SimulatorConfig, start_ts: float) -> None:
        self.config = config
        master = random.Random(config.seed) if config.seed is not None else random.Random()
        rates = {kind: config.rate(kind) for kind in EVENTS}
        self.panels = [
            PanelModel(
                spec,
                random.Random(master.getrandbits(64)),
                start_ts,
                zone=config.zone,
                rates=rates,
                tariff_rp_per_kwh=config.tariff_rp_per_kwh,
            )
            for spec in make_panels(config.panels, config.seed, config.panel_prefix)
        ]

    def step(self, ts: float) -> list[Sample]:
        return [panel.step(ts) for panel in self.panels]

    def messages(self, ts: float) -> list[tuple[str, bytes]]:
        """Step every panel to ``ts``; silent (dropped-out) meters send nothing."""
        prefix, zone = self.config.prefix, self.config.zone
        out: list[tuple[str, bytes]] = []
        ts_text = format_ts(ts, zone)
        for sample in self.step(ts):
            if sample.silent:
                continue
            if self.config.seed_topics:
                for metric, value in seed_values(sample).items():
                    out.append((f"{prefix}/{sample.panel_id}/{metric}", f"{value:.2f}".encode()))
            else:
                topic = f"{prefix}/{sample.panel_id}/telemetry"
                out.append((topic, telemetry_payload(sample, zone, ts_text)))
        return out


# -- the MQTT edge -------------------------------------------------------------------------


def _broker(url: str) -> tuple[str, int, bool, str | None, str | None]:
    """(host, port, tls, username, password) of mqtt://[user:pass@]host[:port] or mqtts://."""
    parts = urlsplit(url)
    if parts.scheme not in ("mqtt", "mqtts", "tcp", "ssl") or not parts.hostname:
        raise ConfigError(f"broker URL {url!r}: expected mqtt://host[:port] or mqtts://host[:port]")
    tls = parts.scheme in ("mqtts", "ssl")
    user = unquote(parts.username) if parts.username else None
    password = unquote(parts.password) if parts.password else None
    return parts.hostname, parts.port or (8883 if tls else 1883), tls, user, password


class MqttPublisher:
    """One paho connection owned by one thread, which publishes, reads acknowledgements and
    reconnects (capped, jittered backoff). Nothing else touches the client, so there is no lock
    hand-off with paho's network thread (that convoy halves throughput). At most ``window``
    publishes await acknowledgement: paho keeps those over a reconnect and resends them; the
    rest of a batch that finds the window full past its deadline is dropped and counted."""

    def __init__(
        self,
        url: str,
        *,
        qos: int = 1,
        window: int = 1000,
        reconnect_min: float = 0.5,
        reconnect_max: float = 30.0,
    ) -> None:
        self._host, self._port, tls, user, password = _broker(url)
        self.url = url
        self._qos, self._window = qos, window
        self._backoff = (reconnect_min, reconnect_max)
        self._batches: queue.Queue[tuple[Sequence[tuple[str, bytes]], float]] = queue.Queue(4)
        self._stopping = threading.Event()
        self._connected = threading.Event()
        self._thread = threading.Thread(target=self._run, name="simulator-mqtt", daemon=True)
        self._inflight = 0
        self._drain_s = 2.0
        self.published = 0  # handed to paho (sent, or kept for the reconnect)
        self.acked = 0  # acknowledged by the broker (QoS 0: written to the socket)
        self.dropped = 0
        client = mqtt.Client(
            callback_api_version=CallbackAPIVersion.VERSION2,
            client_id=f"pelbiot-sim-{uuid.uuid4().hex[:12]}",
            protocol=mqtt.MQTTv311,
            clean_session=True,
        )
        if user:
            client.username_pw_set(user, password)
        if tls:
            client.tls_set()
        # Our window bounds what is in flight. paho's own limit must stay off (0): with one set,
        # every PUBACK scans all outstanding messages, O(window) per acknowledgement.
        client.max_inflight_messages_set(0)
        client.max_queued_messages_set(0)
        client.on_connect = self._on_connect
        client.on_disconnect = self._on_disconnect
        client.on_publish = self._on_publish
        self._client = client

    @property
    def connected(self) -> bool:
        return self._connected.is_set()

    @property
    def inflight(self) -> int:
        """Publishes awaiting the broker's acknowledgement (never more than ``window``)."""
        return self._inflight

    def start(self) -> None:
        self._thread.start()

    def wait_connected(self, timeout: float) -> bool:
        return self._connected.wait(timeout)

    def submit(self, messages: Sequence[tuple[str, bytes]], deadline: float) -> bool:
        """Hand over one tick's messages; they are dropped if not sent by ``deadline``
        (monotonic). False (and dropped) when the publisher is that far behind."""
        try:
            self._batches.put_nowait((messages, deadline))
        except queue.Full:
            self.dropped += len(messages)
            return False
        return True

    def close(self, timeout: float = 2.0) -> None:
        """Wait up to ``timeout`` for outstanding acknowledgements, then disconnect."""
        self._drain_s = timeout
        self._stopping.set()
        if self._thread.is_alive():
            self._thread.join(timeout + 10)

    # -- the owner thread -----------------------------------------------------------------

    def _on_connect(self, _c: object, _u: object, _f: object, reason: object, _p: object) -> None:
        if getattr(reason, "is_failure", False):
            logger.error("broker %s:%d refused the simulator: %s", self._host, self._port, reason)
            return
        self._connected.set()
        logger.info("simulator connected to %s:%d", self._host, self._port)

    def _on_disconnect(
        self, _c: object, _u: object, _f: object, reason: object, _p: object
    ) -> None:
        if self._connected.is_set() and not self._stopping.is_set():
            logger.warning(
                "simulator lost broker %s:%d (%s); reconnecting", self._host, self._port, reason
            )
        self._connected.clear()

    def _on_publish(self, _c: object, _u: object, _mid: int, _rc: object, _p: object) -> None:
        self.acked += 1
        if self._qos > 0:
            self._inflight -= 1

    def _run(self) -> None:
        delay, warned = self._backoff[0], False
        while not self._stopping.is_set():
            try:
                self._client.connect(self._host, self._port, keepalive=30)
            except OSError as exc:
                if not warned:
                    logger.warning("simulator cannot reach broker %s:%d (%s); retrying",
                                   self._host, self._port, exc)  # fmt: skip
                    warned = True
                self._idle(random.uniform(delay / 2, delay))
                delay = min(delay * 2, self._backoff[1])
                continue
            warned, connected_at = False, time.monotonic()
            self._pump()
            if self._stopping.is_set():
                break
            if time.monotonic() - connected_at > 10:
                delay = self._backoff[0]
            self._idle(random.uniform(delay / 2, delay))
            delay = min(delay * 2, self._backoff[1])
        self._finish()

    def _pump(self) -> None:
        """Connected: publish what arrives, read acknowledgements; return when the link drops."""
        while not self._stopping.is_set():
            try:
                messages, deadline = self._batches.get(timeout=0.02)
            except queue.Empty:
                pass
            else:
                self._publish(messages, deadline)
            if self._client.loop(timeout=0) != mqtt.MQTT_ERR_SUCCESS:
                return

    def _idle(self, seconds: float) -> None:
        """Disconnected for ``seconds``: keep QoS > 0 messages for the reconnect while the window
        has room (a meter's small buffer), drop the rest."""
        end = time.monotonic() + seconds
        while not self._stopping.is_set() and (remaining := end - time.monotonic()) > 0:
            try:
                messages, _deadline = self._batches.get(timeout=min(remaining, 0.1))
            except queue.Empty:
                continue
            self._publish(messages, 0.0)

    def _publish(self, messages: Sequence[tuple[str, bytes]], deadline: float) -> None:
        for index, (topic, payload) in enumerate(messages):
            while self._qos > 0 and self._inflight >= self._window:
                wait = deadline - time.monotonic()
                if wait <= 0 or self._stopping.is_set() or not self.connected:
                    self.dropped += len(messages) - index
                    return
                if self._client.loop(timeout=min(wait, 0.05)) != mqtt.MQTT_ERR_SUCCESS:
                    self.dropped += len(messages) - index
                    return
            info = self._client.publish(topic, payload, qos=self._qos)
            if info.rc == mqtt.MQTT_ERR_SUCCESS or (
                self._qos > 0 and info.rc == mqtt.MQTT_ERR_NO_CONN  # kept for the reconnect
            ):
                self.published += 1
                self._inflight += self._qos > 0
            else:
                self.dropped += 1

    def _finish(self) -> None:
        end = time.monotonic() + self._drain_s
        while self._inflight > 0 and self.connected and time.monotonic() < end:
            if self._client.loop(timeout=0.05) != mqtt.MQTT_ERR_SUCCESS:
                break
        if self._inflight > 0:
            logger.warning(
                "simulator stopped with %d messages not acknowledged by the broker", self._inflight
            )
        self._client.disconnect()
        with contextlib.suppress(Exception):
            self._client.loop(timeout=0)  # writes the DISCONNECT


def next_tick(start: float, interval: float, index: int, now: float) -> tuple[int, float, int]:
    """Drift-free schedule: tick ``index`` is due at ``start + index * interval``. When ``now``
    is past more than one tick, the missed ones are skipped. Returns (index, due, skipped)."""
    due = start + index * interval
    skipped = 0
    if now - due >= interval:
        skipped = int((now - due) // interval)
        index += skipped
        due = start + index * interval
    return index, due, skipped


async def run_simulator(config: SimulatorConfig, broker_url: str, stop: asyncio.Event) -> None:
    """Publish every ``config.interval_s`` until ``stop`` is set."""
    publisher = MqttPublisher(broker_url, qos=config.qos, window=config.window)
    sim = await asyncio.to_thread(Simulator, config, time.time())  # 10,000 panels take 0.4 s
    what = "volt|ampere|power|energy_cost" if config.seed_topics else "telemetry"
    logger.info(
        "simulating %d panels (%s..%s) every %gs to %s on %s",
        config.panels, sim.panels[0].spec.panel_id, sim.panels[-1].spec.panel_id,
        config.interval_s, broker_url.rsplit("@", maxsplit=1)[-1],
        f"{config.prefix}/<panel>/{what}",
    )  # fmt: skip
    publisher.start()
    stop_wait = asyncio.ensure_future(stop.wait())
    mono0, wall0 = time.monotonic(), time.time()
    index, skipped_total, report_at = 0, 0, mono0 + config.report_every_s
    published_before = dropped_before = 0
    try:
        while not stop.is_set():
            index, due, skipped = next_tick(mono0, config.interval_s, index, time.monotonic())
            if skipped:
                skipped_total += skipped
                logger.debug("simulator fell behind; skipped %d ticks", skipped)
            delay = due - time.monotonic()
            if delay > 0:
                await asyncio.wait([stop_wait], timeout=delay)
                if stop.is_set():
                    break
            ts = wall0 + (due - mono0)
            await asyncio.to_thread(_tick, sim, publisher, ts, due + config.interval_s)
            index += 1
            if time.monotonic() >= report_at:
                report_at += config.report_every_s
                logger.info(
                    "simulator: %d messages published, %d dropped, %d ticks skipped in the last "
                    "%gs; broker %s",
                    publisher.published - published_before, publisher.dropped - dropped_before,
                    skipped_total, config.report_every_s,
                    "connected" if publisher.connected else "unreachable",
                )  # fmt: skip
                published_before, dropped_before, skipped_total = (
                    publisher.published,
                    publisher.dropped,
                    0,
                )
    finally:
        stop_wait.cancel()
        await asyncio.to_thread(publisher.close, 2.0)
        logger.info(
            "simulator stopped: %d messages acknowledged by the broker, %d dropped",
            publisher.acked, publisher.dropped,
        )  # fmt: skip


def _tick(sim: Simulator, publisher: MqttPublisher, ts: float, deadline: float) -> None:
    if not publisher.submit(sim.messages(ts), deadline):
        logger.debug("simulator dropped a tick: the broker connection is not keeping up")


async def run_simulator_until_signal(
    config: SimulatorConfig, broker_url: str, duration: float | None
) -> None:
    """``pelbiot simulate``: run until SIGINT/SIGTERM or ``duration`` seconds."""
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    installed = []
    for sig in (signal.SIGINT, signal.SIGTERM):
        with contextlib.suppress(NotImplementedError, RuntimeError, ValueError):
            loop.add_signal_handler(sig, stop.set)
            installed.append(sig)
    timer = loop.call_later(duration, stop.set) if duration is not None else None
    try:
        await run_simulator(config, broker_url, stop)
    finally:
        if timer is not None:
            timer.cancel()
        for sig in installed:
            loop.remove_signal_handler(sig)
