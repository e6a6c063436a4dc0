"""`pelbiot serve` as a real subprocess, for tests that kill, signal or restart it."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import httpx

from pelbiot.ingest.broker import free_port


class ServerProcess:
    def __init__(self, workdir: Path, env: dict[str, str], *, command: str = "serve") -> None:
        self.workdir = workdir
        self.port = int(env.get("PELBIOT_HTTP_PORT") or free_port())
        self.env = {**os.environ, **env, "PELBIOT_HTTP_PORT": str(self.port)}
        self.command = command
        self.proc: subprocess.Popen[bytes] | None = None
        self.log_path = workdir / f"server-{self.port}.log"
        workdir.mkdir(parents=True, exist_ok=True)

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self, *, wait: float = 30) -> None:
        log = self.log_path.open("ab")
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "pelbiot", self.command],
            cwd=self.workdir,
            env=self.env,
            stdout=log,
            stderr=subprocess.STDOUT,
        )
        log.close()
        deadline = time.monotonic() + wait
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"server exited early:\n{self.log()}")
            try:
                if httpx.get(f"{self.base_url}/health", timeout=1).status_code in (200, 503):
                    return
            except httpx.HTTPError:
                pass
            time.sleep(0.1)
        raise RuntimeError(f"server did not answer /health:\n{self.log()}")

    def create_user(self, username: str, password: str, role: str, *regions: str) -> None:
        """`pelbiot user create` against this server's database, as an operator would."""
        args = [
            sys.executable,
            "-m",
            "pelbiot",
            "user",
            "create",
            username,
            "--role",
            role,
            "--password-stdin",
        ]
        for region in regions:
            args += ["--region", region]
        subprocess.run(
            args,
            input=password + "\n",
            text=True,
            cwd=self.workdir,
            env=self.env,
            check=True,
            capture_output=True,
            timeout=60,
        )

    def client(self, username: str, password: str) -> httpx.Client:
        """An HTTP client logged in with a bearer token."""
        token = httpx.post(
            f"{self.base_url}/api/v1/auth/login",
            json={"username": username, "password": password},
            timeout=10,
        )
        token.raise_for_status()
        return httpx.Client(
            base_url=self.base_url,
            timeout=10,
            headers={"Authorization": f"Bearer {token.json()['access_token']}"},
        )

    def signal(self, sig: signal.Signals) -> None:
        assert self.proc is not None
        self.proc.send_signal(sig)

    def kill(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(timeout=10)

    def wait(self, timeout: float) -> int:
        assert self.proc is not None
        return self.proc.wait(timeout=timeout)

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(timeout=5)

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")[-5000:] if self.log_path.exists() else ""
