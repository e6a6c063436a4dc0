"""A private Mosquitto process: its own config and temp dir, a free loopback port, raised limits.

The one core of the tests' brokers (``tests/support/mosquitto.py``: persistent, restartable, a
test is skipped where Mosquitto is missing) and the benchmarks' (``bench/broker.py``: no
persistence, limits per run, the benchmark exits where Mosquitto is missing). It does not import
pytest: the benchmarks import it too.

The limits are the ones docs/performance.md tells operators to raise: with Mosquitto's default
``max_queued_messages 1000`` a backlog larger than that is silently dropped (QoS 1 included), and
the default ``max_inflight_messages 20`` caps a consumer that acknowledges after commit.
"""

from __future__ import annotations

import getpass
import shutil
import socket
import subprocess
import time
from collections.abc import Sequence
from pathlib import Path

from pelbiot.ingest.broker import free_port


def find_mosquitto() -> str | None:
    """The mosquitto binary, or None where it is not installed."""
    for candidate in (shutil.which("mosquitto"), "/usr/sbin/mosquitto"):
        if candidate and Path(candidate).exists():
            return candidate
    return None


class MosquittoProcess:
    """``start`` returns once the port accepts connections; port and config outlive a ``stop``.

    Subclasses say what to do where Mosquitto is missing (``binary``) and add their settings.
    """

    def __init__(
        self,
        workdir: Path,
        *,
        port: int | None = None,
        max_queued: int,
        max_inflight: int,
        settings: Sequence[str] = (),
    ) -> None:
        self.workdir = workdir
        self.port = port or free_port()
        self.proc: subprocess.Popen[bytes] | None = None
        workdir.mkdir(parents=True, exist_ok=True)
        self.config = workdir / "mosquitto.conf"
        # `user` = us: started as root, mosquitto would switch to user `mosquitto` and then
        # fail to write its persistence file, losing persistent sessions over a restart.
        self.config.write_text(
            "\n".join(
                [
                    f"listener {self.port} 127.0.0.1",
                    "allow_anonymous true",
                    f"user {getpass.getuser()}",
                    f"max_queued_messages {max_queued}",
                    "max_queued_bytes 0",
                    f"max_inflight_messages {max_inflight}",
                    "max_inflight_bytes 0",
                    *settings,
                    f"log_dest file {workdir}/mosquitto.log",
                    "",
                ]
            )
        )

    @property
    def url(self) -> str:
        return f"mqtt://127.0.0.1:{self.port}"

    def binary(self) -> str:
        path = find_mosquitto()
        if path is None:
            raise RuntimeError("mosquitto is not installed")
        return path

    def start(self) -> None:
        self.proc = subprocess.Popen(
            [self.binary(), "-c", str(self.config)],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=0.2):
                    return
            except OSError:
                if self.proc.poll() is not None:
                    raise RuntimeError(f"mosquitto exited: {self.log()}") from None
                time.sleep(0.05)
        raise RuntimeError("mosquitto did not start")

    def stop(self, *, force: bool = False) -> None:
        """Graceful stop (SIGTERM): mosquitto saves its persistence file. If it has not exited
        within 10 s: ``subprocess.TimeoutExpired``, or with ``force`` a SIGKILL."""
        if self.proc is None:
            return
        self.proc.terminate()
        try:
            self.proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            if not force:
                raise
            self.proc.kill()
            self.proc.wait(timeout=5)
        self.proc = None

    def log(self) -> str:
        path = self.workdir / "mosquitto.log"
        return path.read_text(errors="replace")[-3000:] if path.exists() else ""
