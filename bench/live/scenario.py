"""One round of one scenario: a fresh server, the clients, the publisher; the window's figures."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
import urllib.request
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from bench.broker import PrivateMosquitto
from bench.live.latency import merge_hist, percentiles
from bench.live.processes import cpu_seconds, machine_busy, python, read_line, stop, wait_quiet
from bench.live.publisher import Workload
from pelbiot.ingest.broker import free_port


@dataclass
class Options:
    rate: float  # readings per second
    seconds: float  # measured per scenario, over all rounds
    rounds: int
    wait_quiet: float
    quiet_below: float
    warmup: float
    clients: int
    client_procs: int
    ws_client: str
    deflate: bool
    server_loop: str
    panels: int
    high_rate_hz: float
    workdir: Path


# ``pelbiot serve`` runs its own asyncio.run(): uvicorn's loop setting does not apply to it.
_UVLOOP_SERVE = (
    "import asyncio, sys, uvloop; asyncio.set_event_loop_policy(uvloop.EventLoopPolicy()); "
    "from pelbiot.cli.main import main; sys.argv = ['pelbiot', 'serve']; main()"
)


def _start_pelbiot(
    broker: PrivateMosquitto, port: int, rate_hz: float | None, opts: Options, tag: str
) -> subprocess.Popen[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("PELBIOT_")}
    env |= {
        "PELBIOT_MQTT_URL": broker.url,
        "PELBIOT_DATABASE_URL": f"sqlite:///{opts.workdir / tag}.db",
        "PELBIOT_DATA_DIR": str(opts.workdir),
        "PELBIOT_HTTP_PORT": str(port),
        "PELBIOT_TOPIC_PREFIX": "panel",
        "PELBIOT_MQTT_CLIENT_ID": f"bench-live-{tag}",
        # Wall-display mode: the clients need no account (the cost per socket is the same).
        "PELBIOT_ANONYMOUS_READ": "true",
    }
    if rate_hz is not None:
        env["PELBIOT_LIVE_MAX_RATE_HZ"] = str(rate_hz)
    with (opts.workdir / f"{tag}.log").open("w") as log:
        proc = subprocess.Popen(
            [sys.executable, "-m", "pelbiot", "serve"]
            if opts.server_loop == "asyncio"
            else [sys.executable, "-c", _UVLOOP_SERVE],
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
            text=True,
            cwd=opts.workdir,
        )
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"pelbiot exited {proc.returncode}; see {tag}.log")
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/health", timeout=2) as resp:
                if json.load(resp)["checks"]["broker"]["ok"]:
                    return proc
        except OSError:
            pass
        time.sleep(0.2)
    stop(proc)
    raise TimeoutError("pelbiot did not become healthy within 60s")


def _start_fanout(broker: PrivateMosquitto, port: int, opts: Options) -> subprocess.Popen[str]:
    with (opts.workdir / "fanout.log").open("a") as log:
        proc = subprocess.Popen(
            python(
                "bench.live.fanout",
                "--http-port",
                str(port),
                "--mqtt-port",
                str(broker.port),
                "--loop",
                opts.server_loop,
            ),
            stdout=subprocess.PIPE,
            stderr=log,
            text=True,
        )
    read_line(proc, "READY", 30)
    return proc


def _cpu_now(pids: dict[str, list[int]]) -> dict[str, float]:
    return {name: sum(cpu_seconds(pid) for pid in group) for name, group in pids.items()}


def measure(
    broker: PrivateMosquitto,
    workload: Workload,
    scenario: str,
    opts: Options,
    rate_hz: float | None = None,
) -> dict[str, Any]:
    """One round of one scenario: server, clients, publisher; the figures of the window."""
    seconds = opts.seconds / opts.rounds
    busy_before = wait_quiet(opts.wait_quiet, opts.quiet_below) if opts.wait_quiet else None
    port = free_port()
    tag = f"{workload.kind}-{scenario}-{uuid.uuid4().hex[:6]}"
    server = None
    client_procs: list[subprocess.Popen[str]] = []
    pub = None
    try:
        if scenario == "baseline":
            server = _start_fanout(broker, port, opts)
        else:
            server = _start_pelbiot(broker, port, rate_hz, opts, tag)
        # The window is fixed before anything is published: the clients keep only the
        # readings published inside it.
        setup = 2.0 + 0.05 * opts.clients
        t0 = time.time() + setup
        window = (t0 + opts.warmup, t0 + opts.warmup + seconds)
        per = [opts.clients // opts.client_procs] * opts.client_procs
        for k in range(opts.clients % opts.client_procs):
            per[k] += 1
        for k, n in enumerate(per):
            with (opts.workdir / f"clients-{tag}-{k}.log").open("w") as log:
                client_procs.append(
                    subprocess.Popen(
                        python(
                            "bench.live.clients",
                            "--url",
                            f"ws://127.0.0.1:{port}/api/v1/live",
                            "--clients",
                            str(n),
                            "--ws-client",
                            opts.ws_client,
                            *([] if opts.deflate else ["--no-deflate"]),
                            "--window-start",
                            repr(window[0]),
                            "--window-end",
                            repr(window[1]),
                        ),
                        stdin=subprocess.PIPE,
                        stdout=subprocess.PIPE,
                        stderr=log,
                        text=True,
                    )
                )
        for proc in client_procs:
            read_line(proc, "READY", 60)
        if time.time() > t0:
            raise RuntimeError(f"clients took more than {setup:.1f}s to connect")
        time.sleep(t0 - time.time())
        with (opts.workdir / f"publisher-{tag}.log").open("w") as log:
            pub = subprocess.Popen(
                python(
                    "bench.live.publisher",
                    "--port",
                    str(broker.port),
                    "--prefix",
                    "panel",
                    "--kind",
                    workload.kind,
                    "--rate",
                    str(opts.rate),
                    "--seconds",
                    str(window[1] - time.time()),
                    "--panels",
                    str(opts.panels),
                    "--metrics",
                    str(workload.metrics),
                ),
                stdout=subprocess.PIPE,
                stderr=log,
                text=True,
            )
        pids = {
            "server": [server.pid],
            "broker": [broker.proc.pid] if broker.proc else [],
            "clients": [p.pid for p in client_procs],
            "publisher": [pub.pid],
        }
        time.sleep(max(0.0, window[0] - time.time()))
        cpu0, busy0, w0 = _cpu_now(pids), machine_busy(), time.monotonic()
        time.sleep(max(0.0, window[1] - time.time()))
        cpu1, busy1, span = _cpu_now(pids), machine_busy(), time.monotonic() - w0
        out, _ = pub.communicate(timeout=60)
        published = json.loads(out.strip().splitlines()[-1])
        results = []
        for proc in client_procs:
            assert proc.stdin is not None
            proc.stdin.write("DONE\n")
            proc.stdin.flush()
        for proc in client_procs:
            out, _ = proc.communicate(timeout=60)
            results.append(json.loads(out.strip().splitlines()[-1]))
        server_alive = server.poll() is None
    finally:
        for proc in [pub, *client_procs]:
            stop(proc, 5)
        stop(server)
    cores = os.cpu_count() or 1
    cpu = {k: round((cpu1[k] - cpu0[k]) / span * 100, 1) for k in cpu0}
    cpu["machine"] = round((busy1[0] - busy0[0]) / (busy1[1] - busy0[1]) * 100 * cores, 1)
    cpu["others"] = round(max(0.0, cpu["machine"] - sum(cpu[k] for k in cpu0)), 1)
    value_hist = merge_hist([r["value_hist"] for r in results])
    frame_hist = merge_hist([r["frame_hist"] for r in results])
    value_lat, frame_lat = percentiles(value_hist), percentiles(frame_hist)
    stale = 0
    for r in results:
        for screen in r["screens"]:
            stale += sum(1 for k, v in published["last"].items() if screen.get(k) != v)
    in_window = int(opts.rate * seconds)
    row = {
        "workload": workload.kind,
        "scenario": scenario,
        "max_rate_hz": rate_hz,
        "value_latency_ms": value_lat,
        "frame_latency_ms": frame_lat,
        "value_hist": value_hist,
        "frame_hist": frame_hist,
        "cpu_pct_of_core": cpu,
        "window_s": round(span, 2),
        "published_readings": published["readings"],
        "values_delivered_per_client": round(
            (value_lat["n"] or 0) / max(1, opts.clients * in_window), 3
        ),
        "frames_per_s_all_clients": round(sum(r["frames_window"] for r in results) / span),
        "dropped_frames": sum(r["dropped_frames"] for r in results),
        "resyncs": sum(r["resyncs"] for r in results),
        "broken_connections": sum(r["broken_connections"] for r in results),
        "stale_series": stale,
        "server_alive": server_alive,
        "machine_busy_before_pct": busy_before,
        "worst_ms_by_second": results[0]["worst_ms_by_second"],
        "commit_lag_max_ms": max(r["commit_lag_max_ms"] for r in results),
        "writer_queue_max": max(r["queue_depth_max"] for r in results),
    }
    row["ok"] = bool(
        server_alive and stale == 0 and not row["broken_connections"] and value_lat["n"]
    )
    return row


def pool(rows: list[dict[str, Any]]) -> dict[str, Any]:
    """One scenario's rounds as one row: histograms merged, CPU and rates averaged."""
    first = rows[0]
    value_hist = merge_hist([{str(k): v for k, v in r["value_hist"].items()} for r in rows])
    frame_hist = merge_hist([{str(k): v for k, v in r["frame_hist"].items()} for r in rows])
    span = sum(r["window_s"] for r in rows)
    cpu = {
        k: round(sum(r["cpu_pct_of_core"][k] * r["window_s"] for r in rows) / span, 1)
        for k in first["cpu_pct_of_core"]
    }
    summed = ("dropped_frames", "resyncs", "broken_connections", "stale_series")
    return {
        "workload": first["workload"],
        "scenario": first["scenario"],
        "max_rate_hz": first["max_rate_hz"],
        "rounds": len(rows),
        "value_latency_ms": percentiles(value_hist),
        "frame_latency_ms": percentiles(frame_hist),
        "value_p99_per_round": [r["value_latency_ms"]["p99"] for r in rows],
        "cpu_pct_of_core": cpu,
        "window_s": round(span, 2),
        "values_delivered_per_client": round(
            sum(r["values_delivered_per_client"] * r["window_s"] for r in rows) / span, 3
        ),
        "frames_per_s_all_clients": round(
            sum(r["frames_per_s_all_clients"] * r["window_s"] for r in rows) / span
        ),
        **{k: sum(r[k] for r in rows) for k in summed},
        "commit_lag_max_ms": max(r["commit_lag_max_ms"] for r in rows),
        "writer_queue_max": max(r["writer_queue_max"] for r in rows),
        "worst_ms_by_second": [r["worst_ms_by_second"] for r in rows],
        "ok": all(r["ok"] for r in rows),
    }
