"""The one object that owns a PELBIOT process's state: engines, store, writer, ingest, counters.

``app.py`` runs its long-lived parts inside the lifespan task group; tests and the CLI build it
from Settings like everything else.
"""

from __future__ import annotations

import asyncio
import logging
import time
from dataclasses import dataclass, field

from sqlalchemy import Engine

from pelbiot import __version__
from pelbiot.decode.payloads import DecodeConfig
from pelbiot.ingest.consumer import MqttIngest
from pelbiot.ingest.recorder import Caps, Recorder
from pelbiot.ingest.rejects import RejectLog
from pelbiot.ingest.stats import IngestStats
from pelbiot.ingest.topics import TopicTracker
from pelbiot.ingest.writer import Writer
from pelbiot.live.hub import LiveHub
from pelbiot.security.api_keys import ApiKeys
from pelbiot.security.audit import AuditLog
from pelbiot.security.regions import PanelDirectory
from pelbiot.security.sessions import Sessions, account_services
from pelbiot.security.throttle import SlidingWindow
from pelbiot.security.users import Users
from pelbiot.settings import Settings
from pelbiot.storage.db import make_engine
from pelbiot.storage.migrations import upgrade
from pelbiot.storage.store import Store

logger = logging.getLogger(__name__)

RETENTION_INTERVAL_S = 3600.0
HOUSEKEEPING_INTERVAL_S = 3600.0


@dataclass(frozen=True)
class RateLimits:
    per_address: SlidingWindow
    per_key: SlidingWindow


@dataclass
class Runtime:
    settings: Settings
    engine: Engine
    writer_engine: Engine
    store: Store
    recorder: Recorder
    writer: Writer
    rejects: RejectLog
    stats: IngestStats
    topics: TopicTracker
    ingest: MqttIngest | None
    hub: LiveHub
    audit: AuditLog
    users: Users
    sessions: Sessions
    api_keys: ApiKeys
    directory: PanelDirectory
    rate_limits: RateLimits
    started: float = field(default_factory=time.time)
    version: str = __version__

    @classmethod
    def build(cls, settings: Settings, *, migrate: bool = True) -> Runtime:
        url = settings.effective_database_url
        if migrate:
            # Its own engine, without the statement timeout: a migration may rewrite a big table.
            migration_engine = make_engine(url)
            upgrade(migration_engine)
            migration_engine.dispose()
        timeout_s = settings.db_statement_timeout_s
        engine = make_engine(url, statement_timeout_s=timeout_s)
        writer_engine = make_engine(url, writer=True, statement_timeout_s=timeout_s)
        store = Store(engine)
        recorder = Recorder(
            writer_engine,
            auto_create_panels=settings.auto_create_panels,
            caps=Caps(
                max_panels=settings.max_panels,
                max_metrics_per_panel=settings.max_metrics_per_panel,
                max_series=settings.max_series,
            ),
            latest_max_skew_ms=int(settings.latest_max_skew_s * 1000),
        )
        store.on_panel_deleted(recorder.forget_panel)
        rejects = RejectLog(ring_size=settings.rejected_ring_size)
        stats = IngestStats()
        topics = TopicTracker()
        writer = Writer(
            recorder,
            queue_size=settings.writer_queue_size,
            batch_max=settings.writer_batch_max,
            rejects=rejects,
            stats=stats,
        )
        hub = LiveHub(
            max_rate_hz=settings.live_max_rate_hz, client_queue_size=settings.live_client_queue
        )
        writer.add_listener(hub.on_batch)
        store.on_panel_deleted(hub.forget_panel)
        audit = AuditLog(engine)
        users, sessions = account_services(engine, settings, audit)
        directory = PanelDirectory(store.panel_regions)
        store.on_panel_changed(directory.invalidate)
        # After the directory forgot its cache: open live feeds re-check what they may see.
        store.on_panel_changed(hub.panel_changed)
        users.changes.add(hub.user_changed)
        sessions.changes.add(hub.user_changed)
        api_keys = ApiKeys(engine, audit)
        api_keys.changes.add(hub.user_changed)
        ingest = None
        if settings.mqtt_url:
            ingest = MqttIngest(
                settings, writer=writer, rejects=rejects, stats=stats, topics=topics
            )
        return cls(
            settings=settings,
            engine=engine,
            writer_engine=writer_engine,
            store=store,
            recorder=recorder,
            writer=writer,
            rejects=rejects,
            stats=stats,
            topics=topics,
            ingest=ingest,
            hub=hub,
            audit=audit,
            users=users,
            sessions=sessions,
            api_keys=api_keys,
            directory=directory,
            rate_limits=RateLimits(
                per_address=SlidingWindow(limit=settings.rate_limit_per_address, window_s=60),
                per_key=SlidingWindow(limit=settings.rate_limit_per_key, window_s=60),
            ),
        )

    @property
    def decode_config(self) -> DecodeConfig:
        s = self.settings
        return DecodeConfig(
            prefix=s.topic_prefix,
            max_payload_bytes=s.max_payload_bytes,
            future_tolerance_ms=int(s.future_tolerance_s * 1000),
            zone=s.zone,
        )

    async def run(self, ready: asyncio.Event, stop: asyncio.Event) -> None:
        """Run writer, ingest and housekeeping until ``stop`` is set, then drain and return.

        Shutdown order: stop reading MQTT, drain the writer (commit + ack), send the last acks
        and disconnect, so a SIGTERM loses nothing and redelivers nothing.
        """
        try:
            async with asyncio.TaskGroup() as group:
                try:
                    await self._serve(group, ready, stop)
                finally:
                    # However we leave (a task failed, we were cancelled), the threads must end:
                    # asyncio.run waits for them, so one left running would hang the process.
                    if self.ingest is not None:
                        self.ingest.stop()
                    self.writer.stop(drain_timeout=0.0)
        finally:
            self.writer_engine.dispose()
            self.engine.dispose()

    async def _serve(
        self, group: asyncio.TaskGroup, ready: asyncio.Event, stop: asyncio.Event
    ) -> None:
        writer_task = group.create_task(asyncio.to_thread(self.writer.run), name="writer")
        ingest_task = None
        if self.ingest is not None:
            ingest_task = group.create_task(asyncio.to_thread(self.ingest.run), name="mqtt-ingest")
        retention_task = group.create_task(self._retention_loop(), name="retention")
        housekeeping_task = group.create_task(self._housekeeping_loop(), name="housekeeping")
        self.hub.seed(await asyncio.to_thread(self.store.latest))
        hub_task = group.create_task(self.hub.run(), name="live-hub")
        status_task = group.create_task(self._broadcast_ingest_status(), name="live-status")
        if await asyncio.to_thread(self.users.count) == 0:
            logger.warning(
                "no user accounts yet: create the first with "
                "`pelbiot user create admin --role super_admin --password-stdin`"
            )
        ready.set()
        await stop.wait()
        if self.ingest is not None:
            self.ingest.pause_reading()
        self.writer.stop(drain_timeout=3.0)
        await writer_task
        if self.ingest is not None and ingest_task is not None:
            self.ingest.stop()
            await ingest_task
        retention_task.cancel()
        housekeeping_task.cancel()
        hub_task.cancel()
        status_task.cancel()

    def ingest_summary(self) -> dict[str, object]:
        """The counters a dashboard shows; rates are derived by the client from two frames."""
        st = self.stats
        return {
            "type": "ingest",
            "connected": self.ingest.connected if self.ingest else False,
            "broker": self.ingest.broker if self.ingest else None,
            "messages_received": st.messages_received,
            "readings_received": st.readings_received,
            "readings_written": st.readings_written,
            "duplicates": st.duplicates,
            "rejected": self.rejects.total(),
            "queue_depth": self.writer.depth,
            "lag_s": round(st.last_lag_s, 4),
            "db_ok": st.db_ok,
            "server_time": int(time.time() * 1000),
        }

    async def _broadcast_ingest_status(self) -> None:
        while True:
            await asyncio.sleep(self.settings.live_status_interval_s)
            self.hub.broadcast(self.ingest_summary())

    async def _housekeeping_loop(self) -> None:
        while True:
            try:
                sessions, failures = await asyncio.to_thread(self.sessions.purge_expired)
                if sessions or failures:
                    logger.info(
                        "housekeeping: dropped %d expired sessions and %d quiet login-failure "
                        "counts",
                        sessions,
                        failures,
                    )
            except Exception:
                logger.exception("housekeeping failed; will retry")
            await asyncio.sleep(HOUSEKEEPING_INTERVAL_S)

    async def _retention_loop(self) -> None:
        days = self.settings.raw_retention_days
        if days <= 0:
            return
        while True:
            cutoff = int((time.time() - days * 86400) * 1000)
            try:
                deleted = await asyncio.to_thread(self.store.purge_before, cutoff)
                if deleted:
                    logger.info(
                        "retention: deleted %d raw readings older than %d days", deleted, days
                    )
            except Exception:
                logger.exception("retention purge failed; will retry")
            await asyncio.sleep(RETENTION_INTERVAL_S)
