"""Ingest counters. Each counter has one writing thread, so plain ints are enough under the GIL."""

from __future__ import annotations

import time
from dataclasses import dataclass, field


@dataclass
class IngestStats:
    started: float = field(default_factory=time.time)
    # written by the MQTT consumer
    broker_connected: bool = False
    connects: int = 0
    disconnects: int = 0
    subscriptions: list[str] = field(default_factory=list)
    messages_received: int = 0
    readings_received: int = 0
    messages_rejected: int = 0
    last_message_at: float | None = None
    last_topic: str | None = None
    # written by the writer
    db_ok: bool = True
    db_errors: int = 0
    batches: int = 0
    messages_committed: int = 0
    readings_written: int = 0
    duplicates: int = 0
    last_batch_size: int = 0
    max_batch_size: int = 0
    last_commit_at: float | None = None
    last_lag_s: float = 0.0
    max_lag_s: float = 0.0
    # seconds the database took for the last / slowest transaction (a stall shows here)
    last_commit_s: float = 0.0
    max_commit_s: float = 0.0

    def record_batch(
        self,
        *,
        messages: int,
        written: int,
        duplicates: int,
        lag_s: float,
        commit_s: float = 0.0,
    ) -> None:
        self.batches += 1
        self.messages_committed += messages
        self.readings_written += written
        self.duplicates += duplicates
        size = written + duplicates
        self.last_batch_size = size
        self.max_batch_size = max(self.max_batch_size, size)
        self.last_commit_at = time.time()
        self.last_lag_s = lag_s
        self.max_lag_s = max(self.max_lag_s, lag_s)
        self.last_commit_s = commit_s
        self.max_commit_s = max(self.max_commit_s, commit_s)
