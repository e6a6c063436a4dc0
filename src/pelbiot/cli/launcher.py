"""Runs a whole PELBIOT process: HTTP server, optionally an embedded broker and the simulator.

One task group owns every part. SIGTERM/SIGINT stop the HTTP server; the app lifespan then
drains the writer (commit, ack) before the broker and simulator are stopped. Exit is clean (0).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import secrets
import signal
from collections.abc import Callable, Generator
from urllib.parse import quote

import uvicorn

from pelbiot.app import create_app
from pelbiot.ingest.broker import EmbeddedBroker
from pelbiot.ingest.broker_auth import BrokerGate
from pelbiot.security.audit import AuditLog
from pelbiot.security.devices import Devices
from pelbiot.settings import Settings
from pelbiot.sim.demo_site import DEMO_DEVICE, demo_device_password
from pelbiot.sim.meter_model import make_panels
from pelbiot.sim.simulator import SimulatorConfig, run_simulator
from pelbiot.storage.db import make_engine
from pelbiot.storage.migrations import upgrade

logger = logging.getLogger(__name__)


class _Server(uvicorn.Server):
    """uvicorn without its own signal capture (it re-raises the signal after shutdown)."""

    @contextlib.contextmanager
    def capture_signals(self) -> Generator[None, None, None]:
        yield


async def run_process(
    settings: Settings,
    *,
    embedded_broker_port: int | None = None,
    simulator: SimulatorConfig | None = None,
    on_ready: Callable[[Settings], None] | None = None,
) -> None:
    """Serve until SIGTERM/SIGINT. With ``embedded_broker_port`` an amqtt broker is started and
    ``settings.mqtt_url`` is pointed at it; with ``simulator`` simulated meters publish to it."""
    async with contextlib.AsyncExitStack() as stack:
        simulator_url = settings.mqtt_url
        if embedded_broker_port is not None:
            settings, simulator_url = await _start_embedded_broker(
                stack, settings, embedded_broker_port, simulator
            )
        config = uvicorn.Config(
            create_app(settings),
            host=settings.http_host,
            port=settings.http_port,
            log_config=None,
            access_log=False,
            timeout_graceful_shutdown=2,
            # Protocol pings drop dead dashboard sockets instead of letting them pile up.
            ws_ping_interval=20.0,
            ws_ping_timeout=20.0,
            lifespan="on",
        )
        server = _Server(config)
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, stop.set)
        async with asyncio.TaskGroup() as group:
            server_task = group.create_task(server.serve(), name="http")
            sim_task = None
            while not server.started and not server_task.done():  # noqa: ASYNC110 - uvicorn has no event
                await asyncio.sleep(0.05)
            if server.started:
                if simulator is not None:
                    assert simulator_url is not None
                    sim_task = group.create_task(
                        run_simulator(simulator, simulator_url, stop), name="simulator"
                    )
                if on_ready is not None:
                    on_ready(settings)
                stop_wait = group.create_task(stop.wait(), name="signals")
                await asyncio.wait([server_task, stop_wait], return_when=asyncio.FIRST_COMPLETED)
                stop.set()
                if sim_task is not None:
                    await sim_task
                server.should_exit = True
            stop.set()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.remove_signal_handler(sig)
    logger.info("PELBIOT stopped")


async def _start_embedded_broker(
    stack: contextlib.AsyncExitStack,
    settings: Settings,
    port: int,
    simulator: SimulatorConfig | None,
) -> tuple[Settings, str]:
    """Start amqtt with the device registry enforced; return the settings pointed at it (with
    PELBIOT's own per-start ingest credentials and client id) and the simulator's URL (its
    device's)."""
    engine = make_engine(settings.effective_database_url)
    stack.callback(engine.dispose)
    await asyncio.to_thread(upgrade, engine)
    devices = Devices(engine, AuditLog(engine))
    ingest_user = settings.mqtt_username or "pelbiot"
    ingest_password = settings.mqtt_password or secrets.token_urlsafe(24)
    # Random per start, whatever PELBIOT_MQTT_CLIENT_ID says: amqtt deletes or takes over the
    # session of a client id BEFORE it checks the login, so a refused CONNECT with a guessable
    # id (`pelbiot-<hostname>`) would silently cut ingest. Nothing is lost: the embedded broker
    # keeps its sessions in memory and starts and stops with this process.
    ingest_client_id = f"pelbiot-ingest-{secrets.token_hex(16)}"
    gate = BrokerGate(
        lambda: (devices.credentials(), devices.count()),
        ingest_user=ingest_user,
        ingest_password=ingest_password,
        ingest_client_id=ingest_client_id,
        prefix=settings.topic_prefix,
        anonymous=settings.embedded_broker_anonymous,
    )
    password = None
    if simulator is not None:
        # Before the broker starts: a fresh demo is never open to clients without credentials.
        panel_ids = [
            spec.panel_id
            for spec in make_panels(simulator.panels, simulator.seed, simulator.panel_prefix)
        ]
        password = await asyncio.to_thread(demo_device_password, devices, panel_ids)
    broker = await stack.enter_async_context(EmbeddedBroker("127.0.0.1", port, gate=gate))
    simulator_url = broker.url
    if password is not None:
        simulator_url = f"mqtt://{DEMO_DEVICE}:{quote(password, safe='')}@{broker.host}:{port}"
    # amqtt speaks MQTT 3.1.1 only: an MQTT 5 CONNECT would never be answered.
    updated = settings.model_copy(
        update={
            "mqtt_url": broker.url,
            "mqtt_protocol": "3.1.1",
            "mqtt_client_id": ingest_client_id,
            "mqtt_username": ingest_user,
            "mqtt_password": ingest_password,
        }
    )
    return updated, simulator_url
