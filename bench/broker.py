"""A private Mosquitto for one benchmark run: free loopback port, raised limits, own temp dir.

The process, its config and the raised limits are the tests' (the module
``tests/support/mosquitto_process.py`` says why they are raised); a benchmark's broker keeps
nothing on disk, takes its queue and in-flight limits per run, and logs errors and warnings
only.
"""

from __future__ import annotations

from pathlib import Path

from tests.support.mosquitto_process import MosquittoProcess, find_mosquitto


def mosquitto_binary() -> str:
    path = find_mosquitto()
    if path is None:
        raise SystemExit("mosquitto is not installed (`make system-deps` installs it)")
    return path


class PrivateMosquitto(MosquittoProcess):
    """``with PrivateMosquitto(...) as broker:`` runs it for the block."""

    def __init__(self, workdir: Path, *, max_queued: int, max_inflight: int = 0) -> None:
        super().__init__(
            workdir,
            max_queued=max_queued,
            max_inflight=max_inflight,
            settings=[
                "persistence false",
                "max_keepalive 3600",
                "log_type error",
                "log_type warning",
            ],
        )

    def binary(self) -> str:
        return mosquitto_binary()

    def __enter__(self) -> PrivateMosquitto:
        self.start()
        return self

    def __exit__(self, *_exc: object) -> None:
        self.stop(force=True)
