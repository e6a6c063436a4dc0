"""A private Mosquitto per test session or per test, on a free port, with raised queue limits."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

from tests.support.mosquitto_process import MosquittoProcess, find_mosquitto


def mosquitto_binary() -> str:
    path = find_mosquitto()
    if path is None:
        pytest.skip("mosquitto is not installed (make test installs it with apt-get)")
    return path


class Mosquitto(MosquittoProcess):
    """Start/stop/restart keep the same port and persistence file, like a real broker restart."""

    def __init__(self, workdir: Path, port: int | None = None) -> None:
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
            ],
        )

    def binary(self) -> str:
        return mosquitto_binary()

    def restart(self) -> None:
        self.stop()
        self.start()


def mosquitto_pub(broker: Mosquitto, topic: str, message: str, qos: int = 1) -> None:
    subprocess.run(
        [
            "mosquitto_pub",
            "-h",
            "127.0.0.1",
            "-p",
            str(broker.port),
            "-q",
            str(qos),
            "-t",
            topic,
            "-m",
            message,
        ],
        check=True,
        timeout=10,
    )
