"""What a batch's first contact with new panels and series may create, and which of its
readings are stored already: the recorder's checks before it writes (in its transaction).

A flood of made-up panel ids or metric names must not grow the registry, memory and /latest
without end: new panels and series are admitted up to the caps, in name order, and the rest is
refused with a reason the writer turns into rejections.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from sqlalchemy import Connection, func, select, tuple_

from pelbiot.models import Reading
from pelbiot.storage import schema

_CHUNK = 500  # key pairs per lookup


@dataclass(frozen=True, slots=True)
class Caps:
    """Bounds on what first contact may create; explicitly registered panels count too."""

    max_panels: int = 5_000
    max_metrics_per_panel: int = 200
    max_series: int = 20_000


def admit_panels(conn: Connection, caps: Caps, absent: list[str]) -> list[str]:
    """The first of ``absent`` (sorted) that fit under the panel cap."""
    count = conn.execute(select(func.count()).select_from(schema.panels)).scalar_one()
    return absent[: max(0, caps.max_panels - count)]


def admit_series(
    conn: Connection, caps: Caps, new: list[tuple[str, str]], known: dict[tuple[str, str], int]
) -> dict[tuple[str, str], str]:
    """Per new (panel, metric): "ok", or the cap it would break."""
    per_panel: dict[str, int] = {}
    for panel_id, _metric in known:
        per_panel[panel_id] = per_panel.get(panel_id, 0) + 1
    total = conn.execute(select(func.count()).select_from(schema.series)).scalar_one()
    out: dict[tuple[str, str], str] = {}
    for key in new:
        count = per_panel.get(key[0], 0)
        if count >= caps.max_metrics_per_panel:
            out[key] = "too_many_metrics"
        elif total >= caps.max_series:
            out[key] = "too_many_series"
        else:
            out[key] = "ok"
            per_panel[key[0]] = count + 1
            total += 1
    return out


def sample(names: list[str], shown: int = 10) -> str:
    """A few names for a log line that stands for many."""
    text = ", ".join(repr(n) for n in names[:shown])
    return text + (f" and {len(names) - shown} more" if len(names) > shown else "")


def already_stored(
    conn: Connection, readings: list[Reading], sids: list[int | None], explain: Sequence[range]
) -> list[int]:
    """Indices in ``explain`` of readings that will not be written: their (series, ts) is in
    the table already, or an earlier reading of this batch has it (the first one wins)."""
    asked = {i for span in explain for i in span}
    seen: set[tuple[int, int]] = set()
    check: dict[tuple[int, int], int] = {}
    out: list[int] = []
    for i, (sid, reading) in enumerate(zip(sids, readings, strict=True)):
        if sid is None:
            continue
        key = (sid, reading.ts_ms)
        if key in seen:
            if i in asked:
                out.append(i)
            continue
        seen.add(key)
        if i in asked:
            check[key] = i
    r = schema.readings.c
    pairs = list(check)
    for at in range(0, len(pairs), _CHUNK):
        chunk = pairs[at : at + _CHUNK]
        query = select(r.series_id, r.ts_ms).where(tuple_(r.series_id, r.ts_ms).in_(chunk))
        out.extend(check[(sid, ts)] for sid, ts in conn.execute(query))
    return sorted(out)
