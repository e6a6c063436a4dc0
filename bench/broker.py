"""A private Mosquitto for one benchmark run: free loopback port, raised limits, own temp dir.

The limits are the ones docs/performance.md tells operators to raise: with Mosquitto's default
``max_queued_messages 1000`` a backlog larger than that is silently dropped (QoS 1 included), and
the default ``max_inflight_messages 20`` caps a consumer that acknowledges after commit.
"""

from __future__ import annotations

import getpass
import os
import shutil
import socket
import subprocess
import time
from pathlib import Path

from pelbiot.broker import free_port


def mosquitto_binary() -> str:
    for candidate in (shutil.which("mosquitto"), "/usr/sbin/mosquitto"):
        if candidate and Path(candidate).exists():
            return candidate
    raise SystemExit("mosquitto is not installed (`make system-deps` installs it)")


class PrivateMosquitto:
    def __init__(self, workdir: Path, *, max_queued: int, max_inflight: int = 0) -> None:
        self.workdir = workdir
        self.port = free_port()
        self.proc: subprocess.Popen[bytes] | None = None
        workdir.mkdir(parents=True, exist_ok=True)
        self.config = workdir / "mosquitto.conf"
        self.config.write_text(
            "\n".join(
                [
                    f"listener {self.port} 127.0.0.1",
                    "allow_anonymous true",
                    f"user {getpass.getuser()}",
                    "persistence false",
                    f"max_queued_messages {max_queued}",
                    "max_queued_bytes 0",
                    f"max_inflight_messages {max_inflight}",
                    "max_inflight_bytes 0",
                    "max_keepalive 3600",
                    f"log_dest file {workdir}/mosquitto.log",
                    "log_type error",
                    "log_type warning",
                    "",
                ]
            )
        )

    @property
    def url(self) -> str:
        return f"mqtt://127.0.0.1:{self.port}"

    def __enter__(self) -> PrivateMosquitto:
        self.proc = subprocess.Popen(
            [mosquitto_binary(), "-c", str(self.config)],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=0.2):
                    return self
            except OSError:
                if self.proc.poll() is not None:
                    raise RuntimeError(f"mosquitto exited: {self.log()}") from None
                time.sleep(0.05)
        raise RuntimeError("mosquitto did not start")

    def __exit__(self, *_exc: object) -> None:
        if self.proc is not None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(timeout=5)
            self.proc = None

    def cpu_seconds(self) -> float:
        """User + system CPU time the broker has used so far (from /proc)."""
        if self.proc is None:
            return 0.0
        fields = Path(f"/proc/{self.proc.pid}/stat").read_text().rsplit(")", 1)[1].split()
        ticks = int(fields[11]) + int(fields[12])
        return ticks / os.sysconf("SC_CLK_TCK")

    def log(self) -> str:
        path = self.workdir / "mosquitto.log"
        return path.read_text(errors="replace")[-3000:] if path.exists() else ""
