"""The live hub: committed readings fan out to WebSocket clients, coalesced and bounded.

- The writer thread calls ``LiveHub.on_batch`` after each commit; the hub merges values per panel
  (newest wins) and hands off to the event loop without blocking the writer.
- Per panel at most ``max_rate_hz`` reading frames a second are sent; values that arrive in
  between are merged into the next frame, so no value is older than one interval on screen.
- Every client has a bounded queue. A client that cannot keep up loses its old frames, is told
  so (``{"type": "dropped"}``) and gets a fresh ``snapshot``: the server never buffers without
  bound for a slow dashboard.
- Panel status (online / stale / offline) comes from the time since a panel's last reading,
  measured against its own reporting interval (learnt from the gaps between its readings).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import threading
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

from pelbiot.live.changes import ChangeSignal
from pelbiot.models import Committed, Reading

logger = logging.getLogger(__name__)

Frame = dict[str, Any]

ONLINE, STALE, OFFLINE = "online", "stale", "offline"
_MAX_PENDING_BATCHES = 10_000


@dataclass(frozen=True, slots=True)
class StatusPolicy:
    """A panel is stale after ``stale_factor`` reporting intervals without a reading, offline
    after ``offline_factor``; floors keep fast reporters from flapping on a hiccup."""

    stale_factor: float = 3.0
    offline_factor: float = 10.0
    stale_floor_s: float = 10.0
    offline_floor_s: float = 60.0
    default_interval_s: float = 5.0

    def status(self, age_s: float, interval_s: float | None) -> str:
        interval = interval_s or self.default_interval_s
        if age_s > max(self.offline_floor_s, self.offline_factor * interval):
            return OFFLINE
        if age_s > max(self.stale_floor_s, self.stale_factor * interval):
            return STALE
        return ONLINE


@dataclass
class PanelLive:
    """What the hub knows of one panel: newest values, arrival times, learnt interval."""

    values: dict[str, tuple[int, float]] = field(default_factory=dict)
    last_arrival: float = 0.0
    interval_s: float | None = None
    status: str = OFFLINE
    last_sent: float = 0.0

    def observe(self, arrival: float) -> None:
        if self.last_arrival:
            gap = arrival - self.last_arrival
            if gap > 0.05:  # a burst of one batch is not an interval
                self.interval_s = (
                    gap if self.interval_s is None else 0.8 * self.interval_s + 0.2 * gap
                )
        self.last_arrival = arrival


class LiveClient:
    """One subscriber. ``frames`` is bounded; the hub never awaits a client."""

    def __init__(
        self,
        *,
        queue_size: int,
        panels: set[str] | None = None,
        visible: frozenset[str] | None = None,
    ) -> None:
        self.frames: asyncio.Queue[Frame] = asyncio.Queue(maxsize=queue_size)
        self.panels = panels  # what it subscribed to; None = every panel
        # What it may see (region scoping), computed off the event loop by the feed and
        # refreshed there: a tick only tests set membership. None = every panel.
        self.visible = visible
        self.dropped = 0

    def wants(self, panel_id: str) -> bool:
        if self.visible is not None and panel_id not in self.visible:
            return False
        return self.panels is None or panel_id in self.panels


class LiveHub:
    def __init__(
        self,
        *,
        max_rate_hz: float = 5.0,
        client_queue_size: int = 256,
        policy: StatusPolicy | None = None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self._min_gap = 1.0 / max_rate_hz
        self._queue_size = client_queue_size
        self.policy = policy or StatusPolicy()
        self._clock = clock
        self._panels: dict[str, PanelLive] = {}
        self._dirty: dict[str, dict[str, tuple[int, float]]] = {}
        self._incoming: list[tuple[float, list[Reading]]] = []
        self._incoming_lock = threading.Lock()
        self._clients: set[LiveClient] = set()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._wake = asyncio.Event()
        self._wake_scheduled = False
        self.frames_sent = 0
        self.frames_dropped = 0
        # Panels or accounts changed (any thread): open feeds re-check what they may see.
        self.access_changed = ChangeSignal()

    # -- producer side (writer thread) ------------------------------------------------------

    def on_batch(self, committed: Committed) -> None:
        """Called from the writer thread after a commit. Never blocks on clients.

        Only the newest reading of each series in the batch matters to a screen, and the
        writer has it already: a batch of 20,000 readings from 600 series costs 600 updates."""
        readings = committed.newest
        loop = self._loop
        if not readings or loop is None:
            return  # not running yet: the snapshot at start comes from the store
        with self._incoming_lock:
            # Bounded: if the loop falls far behind, the oldest batches go (newest values win).
            if len(self._incoming) >= _MAX_PENDING_BATCHES:
                del self._incoming[0]
            self._incoming.append((self._clock(), readings))
            if self._wake_scheduled:
                return
            self._wake_scheduled = True
        with contextlib.suppress(RuntimeError):  # the loop is closing: nobody to show
            loop.call_soon_threadsafe(self._wake.set)

    # -- state ------------------------------------------------------------------------------

    def seed(self, latest: dict[str, dict[str, tuple[int, float]]]) -> None:
        """Start from the stored latest values (status from their device timestamps)."""
        now = self._clock()
        for panel_id, values in latest.items():
            panel = self._panels.setdefault(panel_id, PanelLive())
            panel.values.update(values)
            newest_s = max(ts for ts, _ in values.values()) / 1000 if values else 0.0
            panel.last_arrival = min(newest_s, now)
            panel.status = self.policy.status(now - panel.last_arrival, None)

    def forget_panel(self, panel_id: str) -> None:
        """A panel was deleted (called from any thread)."""
        loop = self._loop
        if loop is None:
            self._panels.pop(panel_id, None)
            return
        with contextlib.suppress(RuntimeError):
            loop.call_soon_threadsafe(self._forget, panel_id)

    def _forget(self, panel_id: str) -> None:
        self._panels.pop(panel_id, None)
        self._dirty.pop(panel_id, None)
        self._send_panel(panel_id, {"type": "removed", "panel": panel_id})

    def panel_status(self, panel_id: str) -> Frame:
        panel = self._panels.get(panel_id)
        if panel is None:
            return {"type": "status", "panel": panel_id, "status": OFFLINE, "last_seen": None}
        return self._status_frame(panel_id, panel)

    def snapshot(self, client: LiveClient) -> Frame:
        panels = {}
        for panel_id, panel in sorted(self._panels.items()):
            if not client.wants(panel_id):
                continue
            panels[panel_id] = {
                "values": {m: v for m, (_ts, v) in sorted(panel.values.items())},
                "ts": max((ts for ts, _ in panel.values.values()), default=None),
                "status": panel.status,
                "last_seen": _ms(panel.last_arrival),
                "interval_s": panel.interval_s,
            }
        return {"type": "snapshot", "panels": panels, "server_time": _ms(self._clock())}

    # -- clients ----------------------------------------------------------------------------

    def connect(
        self,
        panels: Iterable[str] | None = None,
        *,
        visible: frozenset[str] | None = None,
    ) -> LiveClient:
        client = LiveClient(queue_size=self._queue_size, panels=_panel_set(panels), visible=visible)
        self._clients.add(client)
        self._offer(client, self.snapshot(client))
        return client

    def panel_changed(self, panel_id: str) -> None:
        """A panel was created, edited or deleted (any thread): scoped feeds recompute what
        they may see."""
        self.access_changed.notify(("panel", panel_id))

    def user_changed(self, user_id: int) -> None:
        """An account changed (any thread): its feeds re-check their rights."""
        self.access_changed.notify(("user", user_id))

    def rescope(self, client: LiveClient, visible: frozenset[str] | None) -> bool:
        """Apply new access rights to an open client: panels it may no longer see are
        ``removed`` from its screen, then a fresh snapshot. Returns whether anything changed."""
        if visible == client.visible:
            return False
        shown = [panel_id for panel_id in sorted(self._panels) if client.wants(panel_id)]
        client.visible = visible
        for panel_id in shown:
            if not client.wants(panel_id):
                self._offer(client, {"type": "removed", "panel": panel_id, "reason": "access"})
        self._offer(client, self.snapshot(client))
        return True

    def subscribe(self, client: LiveClient, panels: Iterable[str] | None) -> None:
        client.panels = _panel_set(panels)
        self._offer(client, self.snapshot(client))

    def disconnect(self, client: LiveClient) -> None:
        self._clients.discard(client)

    @property
    def client_count(self) -> int:
        return len(self._clients)

    def send(self, client: LiveClient, frame: Frame) -> None:
        """Queue a frame for one client (drops its backlog if it is too slow)."""
        self._offer(client, frame)

    def broadcast(self, frame: Frame) -> None:
        """Send a frame to every client (ingest status, alarms)."""
        for client in list(self._clients):
            self._offer(client, frame)

    def _offer(self, client: LiveClient, frame: Frame) -> None:
        try:
            client.frames.put_nowait(frame)
            self.frames_sent += 1
            return
        except asyncio.QueueFull:
            pass
        lost = client.frames.qsize()
        while not client.frames.empty():
            client.frames.get_nowait()
        client.dropped += lost
        self.frames_dropped += lost
        client.frames.put_nowait({"type": "dropped", "frames": lost, "reason": "slow client"})
        client.frames.put_nowait(self.snapshot(client))
        logger.info("live client too slow: dropped %d frames and resent a snapshot", lost)

    # -- the loop ---------------------------------------------------------------------------

    async def run(self, *, status_interval_s: float = 1.0) -> None:
        """Owned by the app's task group: fan out readings and watch panel status."""
        self._loop = asyncio.get_running_loop()
        next_status = self._clock()
        while True:
            timeout = self._drain_and_send()
            now = self._clock()
            if now >= next_status:
                self._check_status(now)
                next_status = now + status_interval_s
            wait = min(timeout if timeout is not None else status_interval_s, next_status - now)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), timeout=max(wait, 0.001))
            self._wake.clear()

    def _drain_and_send(self) -> float | None:
        with self._incoming_lock:
            incoming, self._incoming = self._incoming, []
            self._wake_scheduled = False
        for arrival, readings in incoming:
            touched = set()
            for r in readings:
                panel = self._panels.get(r.panel_id)
                if panel is None:
                    panel = self._panels[r.panel_id] = PanelLive()
                seen = panel.values.get(r.metric)
                if seen is None or r.ts_ms >= seen[0]:
                    panel.values[r.metric] = (r.ts_ms, r.value)
                    self._dirty.setdefault(r.panel_id, {})[r.metric] = (r.ts_ms, r.value)
                touched.add(r.panel_id)
            for panel_id in touched:
                panel = self._panels[panel_id]
                panel.observe(arrival)
                if panel.status != ONLINE:
                    panel.status = ONLINE
                    self._send_panel(panel_id, self._status_frame(panel_id, panel))
        return self._flush_due()

    def _flush_due(self) -> float | None:
        """Send reading frames for panels whose interval has passed; return the next wait."""
        now = self._clock()
        next_wait: float | None = None
        for panel_id in list(self._dirty):
            panel = self._panels[panel_id]
            due = panel.last_sent + self._min_gap
            if now + 0.0005 < due:
                wait = due - now
                next_wait = wait if next_wait is None else min(next_wait, wait)
                continue
            values = self._dirty.pop(panel_id)
            panel.last_sent = now
            self._send_panel(
                panel_id,
                {
                    "type": "reading",
                    "panel": panel_id,
                    "ts": max(ts for ts, _ in values.values()),
                    "values": {m: v for m, (_ts, v) in values.items()},
                },
            )
        return next_wait

    def _send_panel(self, panel_id: str, frame: Frame) -> None:
        for client in list(self._clients):
            if client.wants(panel_id):
                self._offer(client, frame)

    def _check_status(self, now: float) -> None:
        for panel_id, panel in self._panels.items():
            status = self.policy.status(now - panel.last_arrival, panel.interval_s)
            if status != panel.status:
                panel.status = status
                self._send_panel(panel_id, self._status_frame(panel_id, panel))

    def _status_frame(self, panel_id: str, panel: PanelLive) -> Frame:
        return {
            "type": "status",
            "panel": panel_id,
            "status": panel.status,
            "last_seen": _ms(panel.last_arrival),
            "interval_s": panel.interval_s,
        }


def _ms(seconds: float) -> int | None:
    return int(seconds * 1000) if seconds else None


def _panel_set(panels: Iterable[str] | None) -> set[str] | None:
    if panels is None:
        return None
    chosen = set(panels)
    return None if "*" in chosen else chosen
