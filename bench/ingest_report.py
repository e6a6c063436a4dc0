"""``bench.ingest``'s output: a line per run as it finishes, and the summary tables."""

from __future__ import annotations

import os
from typing import Any

from bench.tables import markdown_table, ratio


def report_run(what: str, kind: str, db: str, r: dict[str, Any]) -> None:
    if not r.get("finished"):
        print(f"  {what:8} {kind:9} {db:10} FAILED: {r.get('error') or r}", flush=True)
        return
    check = "ok" if r["verify"]["ok"] else "; ".join(r["verify"]["problems"])
    lat = r.get("latency_ms")
    extra = f" p50 {lat['p50']} ms p99 {lat['p99']} ms" if lat else ""
    print(
        f"  {what:8} {kind:9} {db:10} {r.get('readings_per_s') or 0:>9,} readings/s "
        f"in {r.get('seconds', 0):6.2f}s  rss {r['peak_rss_mb']:6.1f} MB  "
        f"cpu {cpu_us(r):5.1f} us/reading  load {os.getloadavg()[0]:4.1f}  "
        f"max batch {r.get('max_batch', '-')}  rows {check}{extra}",
        flush=True,
    )


def cpu_us(r: dict[str, Any]) -> float:
    """CPU time (all threads) per committed reading: steadier than rates on a busy machine."""
    return r["cpu_s"] * 1e6 / r["committed"] if r.get("committed") else 0.0


# -- summary ----------------------------------------------------------------------------------


def _thousands(rate: object) -> str:
    return f"{rate:,}" if isinstance(rate, int | float) else "-"


LATENCY_COLUMNS = ("latency at 1,000 msg/s", "p50", "p99", "max")
THROUGHPUT_COLUMNS = (
    "workload",
    "database",
    "baseline readings/s",
    "PELBIOT readings/s",
    "ratio",
    "CPU us/reading (baseline / PELBIOT)",
    "PELBIOT peak RSS",
    "zero loss",
)


def summary(results: dict[str, Any]) -> str:
    cells: list[list[object]] = []
    for row in results["throughput"]:
        base, ours = row.get("baseline") or {}, row["pelbiot"]
        b, p = base.get("readings_per_s"), ours.get("readings_per_s")
        ok = ours.get("verify", {}).get("ok")
        cpu = f"{cpu_us(base):.1f} / {cpu_us(ours):.1f}" if base else f"{cpu_us(ours):.1f}"
        cells.append(
            [
                f"{row['kind']} ({row['messages']:,} msgs)",
                row["database"],
                _thousands(b),
                _thousands(p),
                ratio(p, b),
                cpu,
                f"{ours.get('peak_rss_mb', '-')} MB",
                "yes" if ok else "NO",
            ]
        )
    lines = ["", *markdown_table(THROUGHPUT_COLUMNS, "llrrrrrl", cells)]
    if results["latency"]:
        latency_cells = []
        for row in results["latency"]:
            lat = row["pelbiot"].get("latency_ms") or {}
            latency_cells.append(
                [row["database"], *(f"{lat.get(k, '-')} ms" for k in ("p50", "p99", "max"))]
            )
        lines += ["", *markdown_table(LATENCY_COLUMNS, "lrrr", latency_cells)]
    return "\n".join(lines)
