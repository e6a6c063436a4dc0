"""``make bench``: sustained ingest rate, zero loss, latency and memory of PELBIOT's MQTT ingest.

For each workload (single-value messages, three-phase telemetry JSON) and each database (SQLite,
PostgreSQL):

1. a private Mosquitto with raised limits runs on a free loopback port (``bench/broker.py``);
2. persistent sessions are created for the consumers, then N messages with explicit timestamps
   are published at QoS 1 from a separate process (``bench/load.py``), so they wait in the
   broker like a backlog after an outage;
3. the baseline (``bench/baseline.py``: paho auto-ack + batched executemany, no validation) and
   then PELBIOT's real Runtime (``bench/target.py``: QoS 1, ack after commit) each drain the
   backlog into a fresh database, in a process of their own;
4. each run ends when every reading is committed, then the rows are counted: count == N (zero
   loss) and no duplicate keys, or the run is reported as failed.

Then the latency run: PELBIOT consumes a steady 1,000 messages/s published concurrently (each
stamped when sent) and reports publish-to-commit p50/p99. Rates are readings committed per
second from the first commit to the last; ratios are PELBIOT / baseline of the same run.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import subprocess
import sys
import tempfile
import time
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from bench.broker import PrivateMosquitto
from bench.ingest_report import report_run, summary
from bench.messages import Workload
from bench.sessions import fresh_database, postgres_available, prepare_session
from pelbiot.settings import Settings

PG_DEFAULT = "postgresql://postgres@127.0.0.1:5432/postgres"


@dataclass
class Options:
    single: int
    telemetry: int
    metrics: int
    panels: int
    databases: list[str]
    pg_url: str
    baseline: bool
    latency_rate: float
    latency_seconds: float
    timeout: float
    settings: dict[str, Any]
    workdir: Path
    profile: Path | None = None
    profile_gil: bool = False

    @property
    def window(self) -> int:
        """PELBIOT's MQTT 5 receive-maximum in these runs."""
        default = Settings.model_fields["mqtt_receive_maximum"].default
        return int(self.settings.get("mqtt_receive_maximum", default))


# -- runs -------------------------------------------------------------------------------------


def _python(module: str, *args: str) -> list[str]:
    return [sys.executable, "-m", module, *args]


def _finish(proc: subprocess.Popen[str], timeout: float, name: str) -> dict[str, Any]:
    try:
        out, _ = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.communicate()
        return {"finished": False, "error": f"{name} timed out after {timeout:.0f}s"}
    lines = [line for line in out.splitlines() if line.startswith("{")]
    if not lines:
        return {"finished": False, "error": f"{name} exited {proc.returncode} without a result"}
    result: dict[str, Any] = json.loads(lines[-1])
    return result


def publish(broker: PrivateMosquitto, workload: Workload, rate: float | None = None) -> Any:
    args = [
        "--port",
        str(broker.port),
        "--prefix",
        workload.prefix,
        "--kind",
        workload.kind,
        "--count",
        str(workload.count),
        "--panels",
        str(workload.panels),
        "--metrics",
        str(workload.metrics),
    ]
    if rate:
        args += ["--rate", str(rate)]
    return subprocess.Popen(_python("bench.load", *args), stdout=subprocess.PIPE, text=True)


def run_target(
    broker: PrivateMosquitto,
    db_url: str,
    workload: Workload,
    client_id: str,
    opts: Options,
    *,
    latency: bool = False,
) -> tuple[subprocess.Popen[str], Any]:
    args = [
        "--database-url",
        db_url,
        "--mqtt-url",
        broker.url,
        "--client-id",
        client_id,
        "--prefix",
        workload.prefix,
        "--workdir",
        str(opts.workdir),
        "--expected",
        str(workload.expected_readings),
        "--series",
        str(min(workload.series, workload.count * workload.readings_per_message)),
        "--timeout",
        str(opts.timeout),
        "--settings",
        json.dumps(opts.settings),
    ]
    if latency:
        args.append("--latency")
    log = (opts.workdir / f"{client_id}.log").open("w")
    command = _python("bench.target", *args)
    if opts.profile is not None:
        command = _profiled(command, opts.profile / f"{client_id}.txt", gil=opts.profile_gil)
    proc = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=log, text=True)
    return proc, log


def _profiled(command: list[str], out: Path, *, gil: bool) -> list[str]:
    """``command`` under py-spy: collapsed stacks per thread (only the GIL holder's if ``gil``:
    where the Python time goes, as opposed to time spent waiting or in SQLite)."""
    spy = shutil.which("py-spy", path=str(Path(sys.executable).parent)) or shutil.which("py-spy")
    if spy is None:
        raise SystemExit("--profile needs py-spy: .venv/bin/pip install py-spy")
    out.parent.mkdir(parents=True, exist_ok=True)
    return [
        spy,
        "record",
        "--rate",
        "250",
        "--threads",
        *(["--gil"] if gil else []),
        "--format",
        "raw",
        "-o",
        str(out),
        "--",
        *command,
    ]


def run_baseline(
    broker: PrivateMosquitto, db_url: str, workload: Workload, client_id: str, opts: Options
) -> dict[str, Any]:
    args = [
        "--database-url",
        db_url,
        "--port",
        str(broker.port),
        "--client-id",
        client_id,
        "--prefix",
        workload.prefix,
        "--expected",
        str(workload.expected_readings),
        "--series",
        str(workload.series),
        "--timeout",
        str(opts.timeout),
    ]
    with (opts.workdir / f"{client_id}.log").open("w") as log:
        proc = subprocess.Popen(
            _python("bench.baseline", *args), stdout=subprocess.PIPE, stderr=log, text=True
        )
        return _finish(proc, opts.timeout + 30, "baseline")


def throughput(broker: PrivateMosquitto, kind: str, opts: Options) -> list[dict[str, Any]]:
    count = opts.single if kind == "single" else opts.telemetry
    workload = Workload(kind, count, f"b{uuid.uuid4().hex[:8]}", opts.panels, opts.metrics)
    topic = f"{workload.prefix}/#"
    clients = {}
    for db in opts.databases:
        if opts.baseline:
            clients[("baseline", db)] = f"bench-base-{db}-{workload.prefix}"
            prepare_session(broker.port, clients[("baseline", db)], topic, v5=False)
        clients[("pelbiot", db)] = f"bench-pelbiot-{db}-{workload.prefix}"
        prepare_session(
            broker.port, clients[("pelbiot", db)], topic, v5=True, receive_maximum=opts.window
        )
    print(
        f"  publishing {count:,} {kind} messages ({workload.expected_readings:,} readings) ...",
        flush=True,
    )
    pub = publish(broker, workload)
    pub_result = json.loads(pub.communicate(timeout=opts.timeout)[0].strip().splitlines()[-1])
    print(
        f"  published in {pub_result['seconds']:.1f}s "
        f"({count / pub_result['seconds']:,.0f} msg/s into {len(clients)} queued sessions)",
        flush=True,
    )
    rows = []
    for db in opts.databases:
        row: dict[str, Any] = {"kind": kind, "database": db, "messages": count}
        row["readings"] = workload.expected_readings
        if opts.baseline:
            with fresh_database(db, opts.workdir, opts.pg_url) as url:
                row["baseline"] = run_baseline(
                    broker, url, workload, clients[("baseline", db)], opts
                )
            report_run("baseline", kind, db, row["baseline"])
        with fresh_database(db, opts.workdir, opts.pg_url) as url:
            proc, log = run_target(broker, url, workload, clients[("pelbiot", db)], opts)
            row["pelbiot"] = _finish(proc, opts.timeout + 60, "pelbiot")
            log.close()
        report_run("pelbiot", kind, db, row["pelbiot"])
        rows.append(row)
    return rows


def latency(broker: PrivateMosquitto, db: str, opts: Options) -> dict[str, Any]:
    count = int(opts.latency_rate * opts.latency_seconds)
    workload = Workload("single", count, f"l{uuid.uuid4().hex[:8]}", opts.panels, opts.metrics)
    client_id = f"bench-latency-{db}-{workload.prefix}"
    prepare_session(
        broker.port, client_id, f"{workload.prefix}/#", v5=True, receive_maximum=opts.window
    )
    with fresh_database(db, opts.workdir, opts.pg_url) as url:
        proc, log = run_target(broker, url, workload, client_id, opts, latency=True)
        assert proc.stdout is not None
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            line = proc.stdout.readline()
            if not line or line.startswith("READY"):
                break
        pub = publish(broker, workload, rate=opts.latency_rate)
        result = _finish(proc, opts.timeout + 60, "pelbiot")
        pub.communicate(timeout=60)
        log.close()
    report_run("latency", "single", db, result)
    return {"database": db, "rate": opts.latency_rate, "messages": count, "pelbiot": result}


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m bench.ingest", description=__doc__.split("\n\n")[0]
    )
    parser.add_argument("--quick", action="store_true", help="small sizes (about a minute)")
    parser.add_argument("--messages", type=int, help="single-value messages (300,000)")
    parser.add_argument("--telemetry", type=int, help="telemetry messages (100,000)")
    parser.add_argument("--metrics", type=int, default=6, help="metrics per telemetry message")
    parser.add_argument("--panels", type=int, default=100)
    parser.add_argument(
        "--db",
        action="append",
        choices=["sqlite", "postgresql"],
        help="database(s) to run (default: both; PostgreSQL is skipped if unreachable)",
    )
    parser.add_argument(
        "--pg-url",
        default=os.environ.get("PELBIOT_BENCH_DATABASE_URL", PG_DEFAULT),
        help="admin URL; a fresh database is created per run",
    )
    parser.add_argument(
        "--kind", action="append", choices=["single", "telemetry"], help="default: both"
    )
    parser.add_argument("--no-baseline", action="store_true")
    parser.add_argument("--no-latency", action="store_true")
    parser.add_argument("--latency-rate", type=float, default=1000.0)
    parser.add_argument("--latency-seconds", type=float, help="(20; 5 with --quick)")
    parser.add_argument("--timeout", type=float, default=300, help="per run, seconds")
    parser.add_argument(
        "--setting",
        action="append",
        default=[],
        metavar="NAME=VALUE",
        help="PELBIOT setting for the runs, e.g. writer_batch_max=5000",
    )
    parser.add_argument(
        "--broker-inflight",
        type=int,
        default=0,
        help="Mosquitto max_inflight_messages (0: unlimited; Mosquitto's default is 20)",
    )
    parser.add_argument(
        "--broker-queued",
        type=int,
        help="Mosquitto max_queued_messages (default: enough for the run; Mosquitto's is 1000)",
    )
    parser.add_argument("--json", type=Path, help="also write the results here")
    parser.add_argument(
        "--profile",
        type=Path,
        metavar="DIR",
        help="record PELBIOT's runs with py-spy (collapsed stacks per thread) into DIR",
    )
    parser.add_argument(
        "--profile-gil", action="store_true", help="with --profile: sample the GIL holder only"
    )
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    settings: dict[str, Any] = {}
    for item in args.setting:
        name, _, value = item.partition("=")
        settings[name] = value
    workdir = Path(tempfile.mkdtemp(prefix="pelbiot-bench-"))
    databases = args.db or ["sqlite", "postgresql"]
    pg_version = postgres_available(args.pg_url) if "postgresql" in databases else None
    if "postgresql" in databases and pg_version is None:
        print(f"PostgreSQL at {args.pg_url} is not reachable: skipping it", flush=True)
        databases = [d for d in databases if d != "postgresql"]
    opts = Options(
        single=args.messages or (60_000 if args.quick else 300_000),
        telemetry=args.telemetry or (15_000 if args.quick else 100_000),
        metrics=args.metrics,
        panels=args.panels,
        databases=databases,
        pg_url=args.pg_url,
        baseline=not args.no_baseline,
        latency_rate=args.latency_rate,
        latency_seconds=args.latency_seconds or (5.0 if args.quick else 20.0),
        timeout=args.timeout,
        settings=settings,
        workdir=workdir,
        profile=args.profile,
        profile_gil=args.profile_gil,
    )
    machine = {
        "date": datetime.now(UTC).isoformat(timespec="seconds"),
        "cpus": os.cpu_count(),
        "cpu": _cpu_model(),
        "python": platform.python_version(),
        "sqlite": __import__("sqlite3").sqlite_version,
        "postgresql": pg_version,
        "mosquitto": _mosquitto_version(),
        "load_avg": os.getloadavg(),
    }
    print(f"machine: {json.dumps(machine)}", flush=True)
    results: dict[str, Any] = {"machine": machine, "throughput": [], "latency": []}
    queued = args.broker_queued or max(opts.single, opts.telemetry) * 2 + 10_000
    failed = False
    try:
        broker = PrivateMosquitto(
            workdir / "mosquitto", max_queued=queued, max_inflight=args.broker_inflight
        )
        with broker:
            for kind in args.kind or ["single", "telemetry"]:
                print(f"{kind}:", flush=True)
                results["throughput"] += throughput(broker, kind, opts)
            if not args.no_latency:
                print(f"latency at {opts.latency_rate:,.0f} msg/s:", flush=True)
                for db in opts.databases:
                    results["latency"].append(latency(broker, db, opts))
    finally:
        shutil.rmtree(workdir, ignore_errors=True)
    for row in results["throughput"] + results["latency"]:
        for who in ("baseline", "pelbiot"):
            r = row.get(who)
            if r is not None and not (r.get("finished") and r["verify"]["ok"]):
                failed = True
    print(summary(results))
    if args.json:
        args.json.write_text(json.dumps(results, indent=2))
    return 1 if failed else 0


def _cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor()


def _mosquitto_version() -> str:
    from bench.broker import mosquitto_binary

    out = subprocess.run(
        [mosquitto_binary(), "-h"], capture_output=True, text=True, check=False
    ).stdout
    return out.splitlines()[0] if out else "?"


if __name__ == "__main__":
    sys.exit(main())
