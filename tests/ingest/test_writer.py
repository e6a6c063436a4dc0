"""Stopping the writer: the drain is bounded in time, and a failed writer ends the process."""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Callable

from sqlalchemy import Engine

from pelbiot.ingest.recorder import BatchResult, Recorder
from pelbiot.ingest.rejects import RejectLog
from pelbiot.ingest.stats import IngestStats
from pelbiot.ingest.writer import Writer
from pelbiot.models import Reading
from pelbiot.runtime import Runtime
from pelbiot.settings import Settings
from pelbiot.storage.db import make_engine
from pelbiot.storage.migrations import upgrade
from tests.support.mosquitto import Mosquitto
from tests.support.readings import T0, stored


def slowed(recorder: Recorder, pause_s: float) -> None:
    """Injected fault: every commit takes ``pause_s`` longer (a loaded database)."""
    write = recorder.write

    def slow_write(readings: list[Reading]) -> BatchResult:
        time.sleep(pause_s)
        return write(readings)

    recorder.write = slow_write  # type: ignore[method-assign]


def test_a_slow_database_does_not_hold_up_the_stop(database_url: str) -> None:
    engine: Engine = make_engine(database_url, writer=True)
    upgrade(engine)
    recorder = Recorder(engine, auto_create_panels=True)
    slowed(recorder, 0.2)
    writer = Writer(
        recorder, queue_size=1000, batch_max=10, rejects=RejectLog(ring_size=5), stats=IngestStats()
    )
    acked: list[int] = []
    for i in range(100):  # 100 batches of 10 readings: 20 s of commits at 0.2 s each
        readings = [Reading("p1", "voltage_l1", T0 + i * 10_000 + k, 230.0) for k in range(10)]
        assert writer.submit(readings, lambda i=i: acked.append(i), messages=10)  # type: ignore[misc]
    thread = threading.Thread(target=writer.run)
    thread.start()
    time.sleep(0.3)
    started = time.monotonic()
    writer.stop(drain_timeout=0.5)
    thread.join(5)
    assert not thread.is_alive()
    assert time.monotonic() - started < 1.5  # the deadline, plus the commit under way
    # What was acknowledged is exactly what is stored; the rest waits for redelivery.
    assert 0 < len(acked) < 100
    assert len(stored(engine)) == 10 * len(acked)
    assert acked == sorted(acked)
    engine.dispose()


def test_a_failed_writer_ends_run_instead_of_hanging(
    mosquitto: Mosquitto, make_settings: Callable[..., Settings]
) -> None:
    """A bug that kills the writer thread (not a database error: those are retried) must end
    Runtime.run with the error, with the MQTT thread stopped too, so the process exits and a
    supervisor restarts it; unacknowledged messages come back from the broker."""
    runtime = Runtime.build(make_settings(mqtt_url=mosquitto.url))

    def broken_write(readings: list[Reading]) -> BatchResult:
        raise RuntimeError("injected writer bug")

    runtime.recorder.write = broken_write  # type: ignore[method-assign]
    outcome: list[BaseException] = []

    async def scenario() -> None:
        ready, stop = asyncio.Event(), asyncio.Event()
        task = asyncio.create_task(runtime.run(ready, stop))
        await asyncio.wait_for(ready.wait(), 10)
        assert runtime.ingest is not None
        await asyncio.to_thread(runtime.ingest.wait_connected, 10)
        runtime.writer.submit([Reading("p1", "voltage_l1", T0, 230.0)])
        try:
            await asyncio.wait_for(task, 10)
        except BaseException as exc:
            outcome.append(exc)

    # asyncio.run waits for every thread of its executor: a thread left running hangs it.
    runner = threading.Thread(target=asyncio.run, args=(scenario(),), daemon=True)
    runner.start()
    runner.join(20)
    assert not runner.is_alive(), "Runtime.run left a thread running after the writer failed"
    assert outcome and "injected writer bug" in repr(outcome[0].exceptions)  # type: ignore[attr-defined]
