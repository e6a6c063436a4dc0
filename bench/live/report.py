"""What ``python -m bench.live`` prints: a line per round, then the Markdown summary."""

from __future__ import annotations

from typing import Any

from bench.tables import markdown_table, ratio

TARGET_P99_MS = 100.0
SATURATED_P50_MS = 1000.0  # a baseline this late is behind, not a floor: no latency ratios
COLUMNS = (
    "workload",
    "scenario",
    "value p50",
    "value p99 (by round)",
    "frame p50",
    "frame p99",
    "p50 x",
    "p99 x",
    "server CPU",
    "CPU x",
    "frames/s to clients",
    "other processes' CPU",
)


def _name(row: dict[str, Any]) -> str:
    if row["scenario"] == "baseline":
        return "baseline (bare fan-out)"
    return f"pelbiot {row['max_rate_hz'] or 5:g} Hz"


def report_round(row: dict[str, Any], round_no: int) -> None:
    """The line of one round of one scenario, printed as soon as it is measured."""
    v, f, c = row["value_latency_ms"], row["frame_latency_ms"], row["cpu_pct_of_core"]
    print(
        f"  {round_no} {_name(row):24} value p50 {v['p50']} p99 {v['p99']} max {v['max']} ms | "
        f"frame p50 {f['p50']} p99 {f['p99']} ms | cpu: server {c['server']}% "
        f"broker {c['broker']}% clients {c['clients']}% others {c['others']}% | "
        f"{row['frames_per_s_all_clients']:,} frames/s, "
        f"values {row['values_delivered_per_client']:.1%}"
        f", dropped {row['dropped_frames']}, stale {row['stale_series']}, "
        f"commit lag (sampled) max {row['commit_lag_max_ms']} ms"
        f"{'' if row['ok'] else '  FAILED'}",
        flush=True,
    )


def summary(results: dict[str, Any]) -> str:
    o = results["options"]
    lines = [
        "",
        f"{o['rate']:,.0f} readings/s over {o['panels']} panels, {o['clients']} WebSocket "
        f"clients, {o['seconds']:g} s measured per scenario in {o['rounds']} round(s), each "
        f"after {o['warmup']:g} s warm-up. CPU in % of one "
        f"core (this machine: {o['cpus']} cores); x = PELBIOT / baseline of the same workload. "
        f"Clients: {o['ws_client']}, {'with' if o['deflate'] else 'without'} permessage-deflate; "
        f"server event loop: {o['server_loop']}.",
        "",
    ]
    rows = results["scenarios"]
    cells: list[list[object]] = []
    for r in rows:
        base = next(
            (b for b in rows if b["workload"] == r["workload"] and b["scenario"] == "baseline"),
            None,
        )
        v, f, c = r["value_latency_ms"], r["frame_latency_ms"], r["cpu_pct_of_core"]
        bv = base["value_latency_ms"] if base else {}
        bc = base["cpu_pct_of_core"]["server"] if base else None
        if (bv.get("p50") or 0) > SATURATED_P50_MS:
            bv = {}  # the bare fan-out could not keep up: its latency is a backlog
        by_round = ", ".join(str(x) for x in r["value_p99_per_round"])
        cells.append(
            [
                r["workload"],
                _name(r),
                f"{v['p50']} ms",
                f"{v['p99']} ms ({by_round})",
                f"{f['p50']} ms",
                f"{f['p99']} ms",
                ratio(v["p50"], bv.get("p50")),
                ratio(v["p99"], bv.get("p99")),
                f"{c['server']}%",
                ratio(c["server"], bc),
                f"{r['frames_per_s_all_clients']:,}",
                f"{c['others']}%",
            ]
        )
    lines += markdown_table(COLUMNS, "ll" + "r" * 10, cells)
    lines.append("")
    for r in rows:
        p50 = r["value_latency_ms"]["p50"]
        if r["scenario"] == "baseline" and p50 and p50 > SATURATED_P50_MS:
            lines.append(
                f"{r['workload']}: the bare fan-out cannot keep up with "
                f"{r['frames_per_s_all_clients']:,} frames/s here (p50 {p50} ms and growing): "
                "no latency ratios against it."
            )
    for r in rows:
        if r["scenario"] != "baseline":
            p99 = r["value_latency_ms"]["p99"]
            verdict = "met" if p99 is not None and p99 < TARGET_P99_MS else "NOT met"
            lines.append(
                f"target p99 < {TARGET_P99_MS:g} ms, {r['workload']}, {_name(r)}: "
                f"{verdict} ({p99} ms)"
            )
    return "\n".join(lines)
