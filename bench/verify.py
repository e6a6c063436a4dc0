"""Zero loss, no duplicates: count what reached the database after a run."""

from __future__ import annotations

import sqlite3
from typing import Any

import psycopg

_QUERIES = {
    "rows": "SELECT count(*) FROM readings",
    "distinct_keys": "SELECT count(*) FROM (SELECT DISTINCT series_id, ts_ms FROM readings) k",
    "series": "SELECT count(DISTINCT series_id) FROM readings",
    "per_series": "SELECT min(n), max(n) FROM "
    "(SELECT count(*) AS n FROM readings GROUP BY series_id) s",
}


def _fetch(url: str) -> dict[str, Any]:
    out: dict[str, Any] = {}
    if url.startswith("sqlite"):
        conn = sqlite3.connect(url.split("///", 1)[1])
        try:
            for name, sql in _QUERIES.items():
                out[name] = conn.execute(sql).fetchone()
        finally:
            conn.close()
        return out
    with psycopg.connect(url.replace("postgresql+psycopg://", "postgresql://")) as conn:
        for name, sql in _QUERIES.items():
            out[name] = conn.execute(sql).fetchone()
    return out


def verify(url: str, expected: int, series: int) -> dict[str, Any]:
    got = _fetch(url)
    rows, keys, nseries = got["rows"][0], got["distinct_keys"][0], got["series"][0]
    low, high = got["per_series"]
    # Messages go round-robin over the series: each holds floor or ceil of the average.
    per_low = expected // series if series else 0
    per_high = per_low + (1 if series and expected % series else 0)
    problems = []
    if rows != expected:
        problems.append(f"{rows} rows, expected {expected} ({expected - rows} lost)")
    if keys != rows:
        problems.append(f"{rows - keys} duplicate rows")
    if nseries != series:
        problems.append(f"{nseries} series, expected {series}")
    if low is None or low < per_low or high > per_high:
        problems.append(f"rows per series between {low} and {high}, expected {per_low}")
    return {"rows": rows, "ok": not problems, "problems": problems}
