"""The single batching writer: a bounded queue in, one transaction per batch, acks after commit.

Every path that brings readings (MQTT, HTTP ingest, simulator, import) submits here. A message's
``on_committed`` callback (the MQTT acknowledgement) runs only after the transaction holding its
readings has committed. While the database is down the batch is retried with capped, jittered
backoff and nothing is acknowledged; the full queue then pushes back on the producers.
"""

from __future__ import annotations

import logging
import queue
import random
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass

from sqlalchemy.exc import SQLAlchemyError

from pelbiot.models import Reading, Rejection
from pelbiot.recorder import Recorder
from pelbiot.rejects import RejectLog
from pelbiot.stats import IngestStats

logger = logging.getLogger(__name__)

BatchListener = Callable[[list[Reading]], None]


@dataclass(slots=True)
class _Item:
    readings: list[Reading]
    on_committed: Callable[[], None] | None
    arrived: float


class Writer:
    def __init__(
        self,
        recorder: Recorder,
        *,
        queue_size: int,
        batch_max: int,
        rejects: RejectLog,
        stats: IngestStats,
        retry_min_s: float = 0.2,
        retry_max_s: float = 5.0,
    ) -> None:
        self._recorder = recorder
        self._queue: queue.Queue[_Item] = queue.Queue(maxsize=queue_size)
        self._batch_max = batch_max
        self._rejects = rejects
        self._stats = stats
        self._retry_min_s = retry_min_s
        self._retry_max_s = retry_max_s
        self._listeners: list[BatchListener] = []
        self._stopping = threading.Event()
        self._abandon_at: float | None = None

    def add_listener(self, listener: BatchListener) -> None:
        """Called with each committed batch, from the writer thread; must not block."""
        self._listeners.append(listener)

    @property
    def depth(self) -> int:
        return self._queue.qsize()

    def submit(
        self,
        readings: list[Reading],
        on_committed: Callable[[], None] | None = None,
        *,
        timeout: float | None = None,
    ) -> bool:
        """Queue one message's readings. Blocks while the queue is full (backpressure).

        Returns False if the queue stayed full for ``timeout`` seconds or the writer is stopping.
        """
        if self._stopping.is_set():
            return False
        try:
            self._queue.put(_Item(readings, on_committed, time.monotonic()), timeout=timeout)
        except queue.Full:
            return False
        return True

    def stop(self, *, drain_timeout: float = 3.0) -> None:
        """Stop accepting; the run loop drains what is queued, giving up after the timeout."""
        self._abandon_at = time.monotonic() + drain_timeout
        self._stopping.set()

    def run(self) -> None:
        """Thread body. Returns once stopped and drained (or the drain timed out)."""
        logger.debug("writer started")
        while True:
            batch = self._next_batch()
            if batch:
                if not self._commit(batch):
                    logger.warning(
                        "writer stopped with %d uncommitted messages; they stay "
                        "unacknowledged and the broker will redeliver them",
                        len(batch) + self._queue.qsize(),
                    )
                    return
            elif self._stopping.is_set():
                logger.debug("writer drained and stopped")
                return

    def _next_batch(self) -> list[_Item]:
        try:
            first = self._queue.get(timeout=0.1)
        except queue.Empty:
            return []
        batch = [first]
        count = len(first.readings)
        while count < self._batch_max:
            try:
                item = self._queue.get_nowait()
            except queue.Empty:
                break
            batch.append(item)
            count += len(item.readings)
        return batch

    def _commit(self, batch: list[_Item]) -> bool:
        readings = [r for item in batch for r in item.readings]
        delay = self._retry_min_s
        while True:
            try:
                result = self._recorder.write(readings) if readings else None
                break
            except SQLAlchemyError as exc:
                self._stats.db_errors += 1
                self._stats.db_ok = False
                if self._abandon_at is not None and time.monotonic() > self._abandon_at:
                    return False
                logger.warning(
                    "database write failed (%s); retrying in %.1fs",
                    type(getattr(exc, "orig", None) or exc).__name__,
                    delay,
                )
                time.sleep(random.uniform(delay / 2, delay))
                delay = min(delay * 2, self._retry_max_s)
        if not self._stats.db_ok:
            logger.info("database writes resumed")
        self._stats.db_ok = True
        now = time.monotonic()
        for item in batch:
            if item.on_committed is not None:
                item.on_committed()
        written = result.written if result else 0
        self._stats.record_batch(
            messages=len(batch),
            written=written,
            duplicates=result.duplicates if result else 0,
            lag_s=now - batch[0].arrived,
        )
        if result and result.unknown_panel:
            self._rejects.add(
                Rejection(
                    "unknown_panel",
                    f"panel {r.panel_id!r} is not registered",
                    f"{r.panel_id}/{r.metric}",
                    repr(r.value),
                    int(time.time() * 1000),
                )
                for r in result.unknown_panel
            )
        if readings and self._listeners:
            stored = (
                readings
                if not (result and result.unknown_panel)
                else [r for r in readings if r not in set(result.unknown_panel)]
            )
            for listener in self._listeners:
                try:
                    listener(stored)
                except Exception:
                    logger.exception("batch listener failed")
        return True
