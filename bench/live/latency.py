"""Latency in the value: each reading carries its publish time; histograms in 0.1 ms buckets."""

from __future__ import annotations

from collections import Counter

_WRAP = 1_000_000  # publish time is encoded in units of 0.1 ms, modulo 100 s
_BUCKET_MS = 0.1  # latency histogram resolution


def encode_time(t: float) -> float:
    """A plausible voltage (200.0000 .. 299.9999) that carries ``t`` (epoch s) modulo 100 s."""
    return 200.0 + (int(t * 10_000) % _WRAP) / 10_000


def decode_time(value: float, now: float) -> float:
    """The publish time (epoch s) of a value received at ``now`` (less than 100 s later)."""
    units = round((value - 200.0) * 10_000)
    now_units = int(now * 10_000)
    return (now_units - (now_units - units) % _WRAP) / 10_000


def percentiles(hist: dict[int, int]) -> dict[str, float | int | None]:
    """p50 / p90 / p99 / max (ms) of a histogram in 0.1 ms buckets."""
    total = sum(hist.values())
    out: dict[str, float | int | None] = {"n": total}
    if not total:
        return out | {"p50": None, "p90": None, "p99": None, "max": None}
    keys = sorted(hist)
    marks = {"p50": 0.50, "p90": 0.90, "p99": 0.99}
    seen, i = 0, 0
    for key in keys:
        seen += hist[key]
        while i < len(marks) and seen >= total * list(marks.values())[i]:
            out[list(marks)[i]] = round((key + 1) * _BUCKET_MS, 1)
            i += 1
    out["max"] = round((keys[-1] + 1) * _BUCKET_MS, 1)
    return out


def merge_hist(hists: list[dict[str, int]]) -> dict[int, int]:
    merged: Counter[int] = Counter()
    for h in hists:
        merged.update({int(k): v for k, v in h.items()})
    return dict(merged)
