"""The benchmark's processes: starting and stopping them, their CPU and the machine's."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any


def python(module: str, *args: str) -> list[str]:
    return [sys.executable, "-m", module, *args]


def cpu_seconds(pid: int) -> float:
    """User + system CPU of a process (all its threads) from /proc."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return 0.0
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def machine_busy() -> tuple[float, float]:
    """(busy, total) jiffies of the whole machine, all CPUs (from /proc/stat)."""
    values = [int(v) for v in Path("/proc/stat").read_text().splitlines()[0].split()[1:]]
    idle = values[3] + values[4]
    total = sum(values[:8])
    return total - idle, total


def wait_quiet(limit_s: float, below_pct: float) -> float:
    """Wait (at most ``limit_s``) until the machine is busy less than ``below_pct`` % of one
    core over a second; returns the busy % last seen. Other people's test runs are not ours to
    stop, but a round need not start in the middle of one."""
    cores = os.cpu_count() or 1
    deadline = time.monotonic() + limit_s
    while True:
        a = machine_busy()
        time.sleep(1.0)
        b = machine_busy()
        busy = (b[0] - a[0]) / max(1, b[1] - a[1]) * 100 * cores
        if busy < below_pct or time.monotonic() >= deadline:
            return round(busy, 1)
        time.sleep(2.0)


def read_line(proc: subprocess.Popen[str], prefix: str, timeout: float) -> str:
    """Read stdout lines until one starts with ``prefix`` (the child blocks nothing else)."""
    assert proc.stdout is not None
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        line = proc.stdout.readline()
        if not line:
            raise RuntimeError(f"child exited ({proc.poll()}) before {prefix!r}")
        if line.startswith(prefix):
            return line[len(prefix) :].strip()
    raise TimeoutError(f"no {prefix!r} within {timeout:.0f}s")


def stop(proc: subprocess.Popen[Any] | None, timeout: float = 15) -> None:
    if proc is None or proc.poll() is not None:
        return
    proc.send_signal(signal.SIGTERM)
    try:
        proc.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait(timeout=5)


def run_loop(coro: Any) -> None:
    """Run ``coro`` on uvloop where it is installed, else on asyncio."""
    try:
        import uvloop

        uvloop.run(coro)
    except ImportError:
        asyncio.run(coro)
