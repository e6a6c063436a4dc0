"""The single batching writer: a bounded queue in, one transaction per batch, acks after commit.

Every path that brings readings (MQTT, HTTP ingest, simulator, import) submits here. A message's
``on_committed`` callback (the MQTT acknowledgement) runs only after the transaction holding its
readings has committed. While the database is down the batch is retried with capped, jittered
backoff and nothing is acknowledged; the full queue then pushes back on the producers.

An item may carry many messages (the MQTT consumer submits what one socket read brought, with
one callback that acknowledges them all): the queue is bounded in messages, not in items, and
a batch is made of whole items, so one callback never straddles two transactions.
"""

from __future__ import annotations

import logging
import random
import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass

from sqlalchemy.exc import SQLAlchemyError

from pelbiot.ingest.recorder import BatchResult, Recorder
from pelbiot.ingest.rejects import RejectLog
from pelbiot.ingest.stats import IngestStats
from pelbiot.models import Committed, Reading, Rejection

logger = logging.getLogger(__name__)


BatchListener = Callable[[Committed], None]
# After the commit: {index in the item's readings: why it was not stored} (duplicate,
# unknown_panel, too_many_panels, ...); a reading not named there was stored.
ResultCallback = Callable[[dict[int, str]], None]

_REFUSED_DETAIL = {
    "unknown_panel": "panel {p!r} is not registered",
    "too_many_panels": "panel {p!r} not created: the site has PELBIOT_MAX_PANELS panels",
    "too_many_metrics": "{m!r} not created: panel {p!r} has PELBIOT_MAX_METRICS_PER_PANEL metrics",
    "too_many_series": "{m!r} not created on {p!r}: the site has PELBIOT_MAX_SERIES series",
}


@dataclass(slots=True)
class _Item:
    readings: list[Reading]
    on_committed: Callable[[], None] | None
    arrived: float
    messages: int
    on_result: ResultCallback | None = None


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
        self._items: deque[_Item] = deque()
        self._capacity = queue_size
        self._held = 0  # messages in self._items
        self._lock = threading.Lock()
        self._not_empty = threading.Condition(self._lock)
        self._not_full = threading.Condition(self._lock)
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
        """Messages waiting to be committed."""
        return self._held

    def submit(
        self,
        readings: list[Reading],
        on_committed: Callable[[], None] | None = None,
        *,
        timeout: float | None = None,
        messages: int = 1,
        on_result: ResultCallback | None = None,
    ) -> bool:
        """Queue the readings of ``messages`` messages; ``on_committed`` runs after their commit,
        and ``on_result`` (if given) before it, with the readings that were not stored and why.

        Blocks while the queue holds too many messages (backpressure). An item larger than the
        whole queue is let in when the queue is empty. Returns False if there was no room for
        ``timeout`` seconds or the writer is stopping.
        """
        deadline = None if timeout is None else time.monotonic() + timeout
        with self._not_full:
            while True:
                if self._stopping.is_set():
                    return False
                if self._held == 0 or self._held + messages <= self._capacity:
                    break
                remaining = None if deadline is None else deadline - time.monotonic()
                if remaining is not None and remaining <= 0:
                    return False
                self._not_full.wait(remaining)
            self._items.append(_Item(readings, on_committed, time.monotonic(), messages, on_result))
            self._held += messages
            self._not_empty.notify()
        return True

    def stop(self, *, drain_timeout: float = 3.0) -> None:
        """Stop accepting; the run loop drains what is queued, giving up after the timeout."""
        self._abandon_at = time.monotonic() + drain_timeout
        self._stopping.set()
        with self._lock:
            self._not_full.notify_all()  # producers waiting for room give up

    def run(self) -> None:
        """Thread body. Returns once stopped and drained (or the drain timed out)."""
        logger.debug("writer started")
        while True:
            abandon_at = self._abandon_at
            if abandon_at is not None and self._held and time.monotonic() > abandon_at:
                # A slow database with a full queue must not hold up the exit: what is left
                # stays unacknowledged, and the broker redelivers it after the restart.
                logger.warning(
                    "writer stopped with %d uncommitted messages (drain time is up); they stay "
                    "unacknowledged and the broker will redeliver them",
                    self._held,
                )
                return
            batch = self._next_batch()
            if batch:
                if not self._commit(batch):
                    logger.warning(
                        "writer stopped with %d uncommitted messages; they stay "
                        "unacknowledged and the broker will redeliver them",
                        sum(item.messages for item in batch) + self._held,
                    )
                    return
            elif self._stopping.is_set():
                logger.debug("writer drained and stopped")
                return

    def _next_batch(self) -> list[_Item]:
        """Whole items, oldest first, up to ``batch_max`` readings (at least one item)."""
        with self._not_empty:
            if not self._items:
                self._not_empty.wait(0.1)
                if not self._items:
                    return []
            items = self._items
            first = items.popleft()
            batch = [first]
            count = len(first.readings)
            messages = first.messages
            while items and count + len(items[0].readings) <= self._batch_max:
                item = items.popleft()
                batch.append(item)
                count += len(item.readings)
                messages += item.messages
            self._held -= messages
            self._not_full.notify_all()
        return batch

    def _tell_results(self, batch: list[_Item], result: BatchResult | None) -> None:
        why: dict[int, str] = {}
        if result is not None:
            why.update(result.refused)
            why.update((i, "duplicate") for i in result.duplicate_at)
        offset = 0
        for item in batch:
            size = len(item.readings)
            if item.on_result is not None:
                mine = {i - offset: r for i, r in why.items() if offset <= i < offset + size}
                try:
                    item.on_result(mine)
                except Exception:
                    logger.exception("result callback failed")
            offset += size

    def _backoff(self, pause: float) -> None:
        """Wait before retrying a failed commit. ``stop()`` cuts the wait short, and once
        stopping we never sleep past the drain deadline: a SIGTERM during a database outage
        must not wait out a 5 s backoff (exit within seconds, nothing acknowledged)."""
        abandon_at = self._abandon_at
        if abandon_at is None:
            self._stopping.wait(pause)  # returns at once when stop() comes: retry now
            return
        time.sleep(max(0.0, min(pause, abandon_at - time.monotonic())))

    def _commit(self, batch: list[_Item]) -> bool:
        readings = [r for item in batch for r in item.readings]
        explain, offset = [], 0
        for item in batch:
            if item.on_result is not None:
                explain.append(range(offset, offset + len(item.readings)))
            offset += len(item.readings)
        delay = self._retry_min_s
        while True:
            started = time.monotonic()
            try:
                if not readings:
                    result = None
                elif explain:
                    result = self._recorder.write(readings, explain=explain)
                else:
                    result = self._recorder.write(readings)
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
                self._backoff(random.uniform(delay / 2, delay))
                delay = min(delay * 2, self._retry_max_s)
        if not self._stats.db_ok:
            logger.info("database writes resumed")
        self._stats.db_ok = True
        now = time.monotonic()
        if explain:
            self._tell_results(batch, result)
        for item in batch:
            if item.on_committed is not None:
                item.on_committed()
        written = result.written if result else 0
        self._stats.record_batch(
            messages=sum(item.messages for item in batch),
            written=written,
            duplicates=result.duplicates if result else 0,
            lag_s=now - batch[0].arrived,
            commit_s=now - started,
        )
        if result and result.refused:
            at_ms = int(time.time() * 1000)
            self._rejects.add(
                Rejection(
                    reason,
                    _REFUSED_DETAIL[reason].format(p=r.panel_id, m=r.metric),
                    f"{r.panel_id}/{r.metric}",
                    repr(r.value),
                    at_ms,
                    r.panel_id,
                )
                for r, reason in ((readings[i], reason) for i, reason in result.refused)
            )
        if result and result.written + result.duplicates and self._listeners:
            stored = readings
            if result.refused:
                refused = {i for i, _reason in result.refused}
                stored = [r for i, r in enumerate(readings) if i not in refused]
            committed = Committed(stored, result.newest)
            for listener in self._listeners:
                try:
                    listener(committed)
                except Exception:
                    logger.exception("batch listener failed")
        return True
