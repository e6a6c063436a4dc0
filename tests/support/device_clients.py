"""Devices as a broker sees them: ``mosquitto_pub`` with a username and password."""

from __future__ import annotations

import subprocess


def publish_as(
    port: int, topic: str, message: str, user: str | None = None, password: str | None = None
) -> int:
    """Publish one QoS 1 message over MQTT 3.1.1 (which amqtt speaks too); return
    mosquitto_pub's exit code: 0 sent and acknowledged, 5 refused (bad credentials or not
    authorised). A broker drops a publish its ACL forbids but still acknowledges it."""
    creds = ["-u", user, "-P", password or ""] if user else []
    done = subprocess.run(
        [
            "mosquitto_pub",
            "-h",
            "127.0.0.1",
            "-p",
            str(port),
            "-V",
            "mqttv311",
            "-q",
            "1",
            "-t",
            topic,
            "-m",
            message,
            *creds,
        ],
        capture_output=True,
        timeout=10,
        check=False,
    )
    return done.returncode
