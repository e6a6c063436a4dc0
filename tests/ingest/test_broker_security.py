"""Connecting to brokers that demand credentials, TLS and client certificates."""

from __future__ import annotations

import getpass
import shutil
import subprocess
import time
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from pelbiot.ingest.broker import free_port
from tests.support.mosquitto import mosquitto_binary, pub_command
from tests.support.waiting import wait_for

ClientFactory = Callable[..., AbstractContextManager[TestClient]]


def _openssl(*args: str, cwd: Path) -> None:
    subprocess.run(["openssl", *args], cwd=cwd, check=True, capture_output=True, timeout=60)


@pytest.fixture
def pki(tmp_path: Path) -> Path:
    """A throwaway CA with a server certificate for 127.0.0.1 and a client certificate."""
    if shutil.which("openssl") is None:
        pytest.skip("openssl is not installed")
    d = tmp_path / "pki"
    d.mkdir()
    _openssl(
        "req",
        "-x509",
        "-newkey",
        "rsa:2048",
        "-nodes",
        "-keyout",
        "ca.key",
        "-out",
        "ca.pem",
        "-days",
        "2",
        "-subj",
        "/CN=PELBIOT test CA",
        cwd=d,
    )
    (d / "san.cnf").write_text("subjectAltName=IP:127.0.0.1,DNS:localhost\n")
    for name in ("server", "client"):
        _openssl(
            "req",
            "-newkey",
            "rsa:2048",
            "-nodes",
            "-keyout",
            f"{name}.key",
            "-out",
            f"{name}.csr",
            "-subj",
            f"/CN={name}",
            cwd=d,
        )
        _openssl(
            "x509",
            "-req",
            "-in",
            f"{name}.csr",
            "-CA",
            "ca.pem",
            "-CAkey",
            "ca.key",
            "-CAcreateserial",
            "-out",
            f"{name}.pem",
            "-days",
            "2",
            "-extfile",
            "san.cnf",
            cwd=d,
        )
    return d


def _start_broker(workdir: Path, lines: list[str]) -> Iterator[int]:
    port = free_port()
    conf = workdir / "mosquitto.conf"
    conf.write_text(
        "\n".join([f"listener {port} 127.0.0.1", f"user {getpass.getuser()}", *lines, ""])
    )
    proc = subprocess.Popen(
        [mosquitto_binary(), "-c", str(conf)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    )
    time.sleep(0.5)
    assert proc.poll() is None, "mosquitto did not start"
    try:
        yield port
    finally:
        proc.terminate()
        proc.wait(timeout=10)


def _publish(port: int, topic: str, message: str, *extra: str) -> None:
    subprocess.run(pub_command(port, topic, message, *extra), check=True, timeout=10)


def test_username_and_password_from_the_url(
    make_client: ClientFactory, tmp_path: Path, prefix: str
) -> None:
    passwd = tmp_path / "passwd"
    subprocess.run(
        ["mosquitto_passwd", "-b", "-c", str(passwd), "pelbiot", "s3cr3t:@/x"],
        check=True,
        timeout=10,
    )
    passwd.chmod(0o600)
    brokers = _start_broker(tmp_path, ["allow_anonymous false", f"password_file {passwd}"])
    port = next(brokers)
    try:
        with make_client(mqtt_url=f"mqtt://pelbiot:s3cr3t%3A%40%2Fx@127.0.0.1:{port}") as client:
            wait_for(lambda: client.get("/api/v1/ingest/status").json()["broker"]["connected"], 10)
            _publish(port, f"{prefix}/trafo1/volt", "229.9", "-u", "pelbiot", "-P", "s3cr3t:@/x")
            got = wait_for(lambda: client.get("/api/v1/latest").json(), 3)
            assert got[0]["values"]["voltage"]["value"] == 229.9
        with make_client(mqtt_url=f"mqtt://pelbiot:wrong@127.0.0.1:{port}") as client:
            time.sleep(1.0)
            status = client.get("/api/v1/ingest/status").json()
            assert status["broker"]["connected"] is False
            assert client.get("/health").status_code == 503
    finally:
        next(brokers, None)


def test_mqtts_with_ca_and_client_certificate(
    make_client: ClientFactory, tmp_path: Path, pki: Path, prefix: str
) -> None:
    brokers = _start_broker(
        tmp_path,
        [
            "allow_anonymous true",
            f"cafile {pki / 'ca.pem'}",
            f"certfile {pki / 'server.pem'}",
            f"keyfile {pki / 'server.key'}",
            "require_certificate true",
        ],
    )
    port = next(brokers)
    try:
        with make_client(
            mqtt_url=f"mqtts://127.0.0.1:{port}",
            mqtt_ca_file=pki / "ca.pem",
            mqtt_cert_file=pki / "client.pem",
            mqtt_key_file=pki / "client.key",
        ) as client:
            wait_for(lambda: client.get("/api/v1/ingest/status").json()["broker"]["connected"], 10)
            _publish(
                port,
                f"{prefix}/trafo1/ampere",
                "31.5",
                "--cafile",
                str(pki / "ca.pem"),
                "--cert",
                str(pki / "client.pem"),
                "--key",
                str(pki / "client.key"),
            )
            got = wait_for(lambda: client.get("/api/v1/latest").json(), 3)
            assert got[0]["values"]["current"]["value"] == 31.5
    finally:
        next(brokers, None)
