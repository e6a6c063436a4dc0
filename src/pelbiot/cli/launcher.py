"""Runs a whole PELBIOT process: HTTP server, optionally an embedded broker and the simulator.

One task group owns every part. SIGTERM/SIGINT stop the HTTP server; the app lifespan then
drains the writer (commit, ack) before the broker and simulator are stopped. Exit is clean (0).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal
from collections.abc import Callable, Generator

import uvicorn

from pelbiot.app import create_app
from pelbiot.ingest.broker import EmbeddedBroker
from pelbiot.settings import Settings
from pelbiot.sim.simulator import SimulatorConfig, run_simulator

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
        if embedded_broker_port is not None:
            broker = await stack.enter_async_context(
                EmbeddedBroker("127.0.0.1", embedded_broker_port)
            )
            # amqtt speaks MQTT 3.1.1 only: an MQTT 5 CONNECT would never be answered.
            settings = settings.model_copy(
                update={"mqtt_url": broker.url, "mqtt_protocol": "3.1.1"}
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
                    assert settings.mqtt_url is not None
                    sim_task = group.create_task(
                        run_simulator(simulator, settings.mqtt_url, stop), name="simulator"
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
