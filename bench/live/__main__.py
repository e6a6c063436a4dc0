"""``python -m bench.live``: the command line, and the runs it makes (see the package's doc)."""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
import tempfile
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import bench.live
from bench.broker import PrivateMosquitto
from bench.live.publisher import SINGLE_METRICS, TELEMETRY_METRICS, Workload
from bench.live.report import report_round, summary
from bench.live.scenario import Options, measure, pool

HIGH_RATE_HZ = 100.0  # the highest PELBIOT_LIVE_MAX_RATE_HZ the settings accept


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m bench.live", description=(bench.live.__doc__ or "").split("\n\n")[0]
    )
    parser.add_argument("--quick", action="store_true", help="5 s windows (about 2 minutes)")
    parser.add_argument("--rate", type=float, default=1000.0, help="readings per second")
    parser.add_argument("--seconds", type=float, help="measured per scenario (20; 5 with --quick)")
    parser.add_argument(
        "--rounds", type=int, help="the scenarios take turns this often (2; 1 with --quick)"
    )
    parser.add_argument("--warmup", type=float, help="discarded first seconds (3; 2 with --quick)")
    parser.add_argument("--clients", type=int, default=50)
    parser.add_argument(
        "--client-procs", type=int, default=2, help="processes the clients are spread over"
    )
    parser.add_argument("--ws-client", choices=["raw", "websockets"], default="raw")
    parser.add_argument(
        "--no-deflate",
        action="store_true",
        help="clients do not offer permessage-deflate (shows what compression costs)",
    )
    parser.add_argument(
        "--server-loop",
        choices=["asyncio", "uvloop"],
        default="asyncio",
        help="event loop of `pelbiot serve` (asyncio is what it ships with)",
    )
    parser.add_argument("--panels", type=int, default=100)
    parser.add_argument(
        "--workload", action="append", choices=["telemetry", "single"], help="default: both"
    )
    parser.add_argument(
        "--scenario",
        action="append",
        choices=["baseline", "default", "high"],
        help="default: all three, in that order",
    )
    parser.add_argument("--high-rate-hz", type=float, default=HIGH_RATE_HZ)
    parser.add_argument(
        "--wait-quiet",
        type=float,
        default=10.0,
        metavar="S",
        help="before each round, wait up to S seconds for the machine to be quiet (0: don't)",
    )
    parser.add_argument(
        "--quiet-below",
        type=float,
        default=50.0,
        metavar="PCT",
        help="quiet = the whole machine busy less than PCT %% of one core",
    )
    parser.add_argument("--json", type=Path, help="also write the results here")
    parser.add_argument("--keep", action="store_true", help="keep the logs (temp dir)")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    workdir = Path(tempfile.mkdtemp(prefix="pelbiot-bench-live-"))
    opts = Options(
        rate=args.rate,
        seconds=args.seconds or (5.0 if args.quick else 20.0),
        rounds=max(1, args.rounds or (1 if args.quick else 2)),
        wait_quiet=args.wait_quiet,
        quiet_below=args.quiet_below,
        warmup=args.warmup or (2.0 if args.quick else 3.0),
        clients=args.clients,
        client_procs=max(1, min(args.client_procs, args.clients)),
        ws_client=args.ws_client,
        deflate=not args.no_deflate,
        server_loop=args.server_loop,
        panels=args.panels,
        high_rate_hz=args.high_rate_hz,
        workdir=workdir,
    )
    machine = {
        "date": datetime.now(UTC).isoformat(timespec="seconds"),
        "cpus": os.cpu_count(),
        "python": sys.version.split()[0],
        "load_avg_before": os.getloadavg(),
    }
    print(f"machine: {json.dumps(machine)}", flush=True)
    results: dict[str, Any] = {
        "machine": machine,
        "options": {
            "rate": opts.rate,
            "seconds": opts.seconds,
            "rounds": opts.rounds,
            "warmup": opts.warmup,
            "wait_quiet_s": opts.wait_quiet,
            "clients": opts.clients,
            "client_procs": opts.client_procs,
            "ws_client": opts.ws_client,
            "deflate": opts.deflate,
            "server_loop": opts.server_loop,
            "panels": opts.panels,
            "cpus": os.cpu_count(),
        },
        "scenarios": [],
    }
    workloads = {
        "telemetry": Workload("telemetry", len(TELEMETRY_METRICS)),
        "single": Workload("single", len(SINGLE_METRICS)),
    }
    plan = {"baseline": None, "default": None, "high": opts.high_rate_hz}
    failed = False
    try:
        with PrivateMosquitto(workdir / "mosquitto", max_queued=100_000) as broker:
            for kind in args.workload or list(workloads):
                workload = workloads[kind]
                print(
                    f"{kind}: {opts.rate:,.0f} readings/s = "
                    f"{opts.rate / workload.per_message:,.0f} messages/s, "
                    f"{opts.rate / workload.per_message / opts.panels:g} per panel per s",
                    flush=True,
                )
                scenarios = args.scenario or list(plan)
                done: dict[str, list[dict[str, Any]]] = {name: [] for name in scenarios}
                # Rounds interleave the scenarios, so a burst of load from elsewhere on the
                # machine does not land on one of them only.
                for round_no in range(1, opts.rounds + 1):
                    for scenario in scenarios:
                        try:
                            row = measure(broker, workload, scenario, opts, plan[scenario])
                        except (RuntimeError, TimeoutError, OSError, ValueError) as exc:
                            print(f"  {kind} {scenario}: FAILED: {exc}", flush=True)
                            failed = True
                            continue
                        report_round(row, round_no)
                        failed = failed or not row["ok"]
                        done[scenario].append(row)
                results["scenarios"] += [pool(rows) for rows in done.values() if rows]
    finally:
        if args.keep:
            print(f"logs kept in {workdir}")
        else:
            shutil.rmtree(workdir, ignore_errors=True)
    results["machine"]["load_avg_after"] = os.getloadavg()
    print(summary(results))
    if args.json:
        args.json.write_text(json.dumps(results, indent=2))
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
