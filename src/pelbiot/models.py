"""Plain value types shared by the pipeline. No I/O here."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import NamedTuple


class Reading(NamedTuple):
    """One measured value. ``ts_ms`` is UTC epoch milliseconds (the storage unit)."""

    panel_id: str
    metric: str
    ts_ms: int
    value: float


class Rejection(NamedTuple):
    """Why (part of) a message was refused. ``reason`` is a short stable code."""

    reason: str
    detail: str
    topic: str
    payload: str
    at_ms: int
    # The panel it belongs to when known for sure (the writer's refusals); otherwise the API
    # reads it from the topic, and a topic outside the scheme belongs to no panel.
    panel_id: str | None = None


@dataclass(slots=True)
class Decoded:
    """What a decoder made of one message: readings to store and parts it refused."""

    readings: list[Reading] = field(default_factory=list)
    rejections: list[Rejection] = field(default_factory=list)


@dataclass(frozen=True, slots=True)
class Committed:
    """What one transaction stored: every reading, and the newest reading of each series (what
    /latest shows from now on; a live screen needs no more than that)."""

    readings: list[Reading]
    newest: list[Reading]
