"""A private Mosquitto per test session or per test, on a free port, with raised queue limits."""

from __future__ import annotations

import signal
import subprocess
from collections.abc import Sequence
from pathlib import Path

import pytest

from tests.support.mosquitto_process import MosquittoProcess, find_mosquitto
from tests.support.waiting import wait_for


def mosquitto_binary() -> str:
    path = find_mosquitto()
    if path is None:
        pytest.skip("mosquitto is not installed (make test installs it with apt-get)")
    return path


class Mosquitto(MosquittoProcess):
    """Start/stop/restart keep the same port and persistence file, like a real broker restart."""

    def __init__(
        self, workdir: Path, port: int | None = None, extra_settings: Sequence[str] = ()
    ) -> None:
        super().__init__(
            workdir,
            port=port,
            max_queued=1_000_000,
            max_inflight=0,
            settings=[
                "persistence true",
                f"persistence_location {workdir}/",
                "autosave_interval 1",
                "persistent_client_expiration 1d",
                # Later lines win: e.g. `allow_anonymous false`, password_file, acl_file.
                *extra_settings,
            ],
        )

    def binary(self) -> str:
        return mosquitto_binary()

    def restart(self) -> None:
        self.stop()
        self.start()

    def reload(self, timeout: float = 10.0) -> None:
        """SIGHUP: Mosquitto re-reads its password and ACL files (and drops clients whose
        credentials no longer hold). Returns once its log says it reloaded."""
        assert self.proc is not None, "not running"
        before = self.log_text().count("Reloading config")
        self.proc.send_signal(signal.SIGHUP)
        wait_for(lambda: self.log_text().count("Reloading config") > before, timeout, "a reload")

    def log_text(self) -> str:
        path = self.workdir / "mosquitto.log"
        return path.read_text(errors="replace") if path.exists() else ""


def pub_command(port: int, topic: str, message: str, *extra: str, qos: int = 1) -> list[str]:
    """A ``mosquitto_pub`` command line for one message to a broker on loopback."""
    return [
        "mosquitto_pub",
        "-h",
        "127.0.0.1",
        "-p",
        str(port),
        "-q",
        str(qos),
        "-t",
        topic,
        "-m",
        message,
        *extra,
    ]


def mosquitto_pub(broker: Mosquitto, topic: str, message: str, qos: int = 1) -> None:
    subprocess.run(pub_command(broker.port, topic, message, qos=qos), check=True, timeout=10)
