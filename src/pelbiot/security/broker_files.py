"""Writing Mosquitto's password and ACL files from the device registry.

``pelbiot device export-mosquitto`` calls it, and every ``pelbiot device`` change does when
``PELBIOT_MOSQUITTO_PASSWORD_FILE`` and ``PELBIOT_MOSQUITTO_ACL_FILE`` are set. Mosquitto reads
them at start and on SIGHUP: the operator (or a systemd path unit) reloads it afterwards.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import unquote, urlsplit

from pelbiot.errors import ConfigError
from pelbiot.security.broker_acl import (
    mosquitto_hash,
    read_password_entry,
    render_acl,
    render_password_file,
    verify_mosquitto_hash,
    write_atomically,
)
from pelbiot.security.devices import Devices
from pelbiot.settings import Settings
from pelbiot.sim.demo_site import DEMO_DEVICE

logger = logging.getLogger(__name__)

# The embedded broker's ingest user when PELBIOT_MQTT_USERNAME is unset (cli/launcher.py).
EMBEDDED_INGEST_USER = "pelbiot"

PASSWORD_FILE_MODE = 0o600  # hashes only, but nobody else needs them
ACL_FILE_MODE = 0o640


@dataclass
class Export:
    password_file: Path
    acl_file: Path
    devices: int
    warnings: list[str] = field(default_factory=list)


def ingest_credentials(settings: Settings) -> tuple[str | None, str | None]:
    """PELBIOT's own broker username and password, as ingest uses them (settings, then URL)."""
    user = password = None
    if settings.mqtt_url:
        parts = urlsplit(settings.mqtt_url)
        user = unquote(parts.username) if parts.username else None
        password = unquote(parts.password) if parts.password else None
    return settings.mqtt_username or user, settings.mqtt_password or password


def reserved_device_names(settings: Settings) -> frozenset[str]:
    """Names no device may take, lower-cased: PELBIOT's own ingest user (configured, and the
    embedded broker's default) and the demo's simulator device. A device named like the ingest
    user would make every Mosquitto export fail; one named like the demo's would be re-keyed by
    the next ``pelbiot demo``."""
    user, _password = ingest_credentials(settings)
    names = {EMBEDDED_INGEST_USER, DEMO_DEVICE, *([user] if user else [])}
    return frozenset(n.lower() for n in names)


def configured_files(settings: Settings) -> tuple[Path, Path] | None:
    """The files every device change rewrites, or None when the settings name none."""
    pw, acl = settings.mosquitto_password_file, settings.mosquitto_acl_file
    if pw is None and acl is None:
        return None
    if pw is None or acl is None:
        raise ConfigError(
            "set both PELBIOT_MOSQUITTO_PASSWORD_FILE and PELBIOT_MOSQUITTO_ACL_FILE, or neither"
        )
    return pw, acl


def export_mosquitto(
    devices: Devices, settings: Settings, password_file: Path, acl_file: Path
) -> Export:
    """Render both files from the enabled devices and replace them atomically."""
    creds = devices.credentials()
    user, password = ingest_credentials(settings)
    result = Export(password_file, acl_file, len(creds))
    ingest: tuple[str, str] | None = None
    if user:
        # Keep the hash already in the file while it matches: a fresh salt on every export
        # would change the file for nothing.
        existing = read_password_entry(password_file, user)
        if password is not None:
            ingest = (
                user,
                existing
                if existing and verify_mosquitto_hash(password, existing)
                else mosquitto_hash(password),
            )
        elif existing:
            ingest = (user, existing)
        else:
            result.warnings.append(
                f"PELBIOT's ingest user {user!r} has no password in the settings or in "
                f"{password_file}: set PELBIOT_MQTT_PASSWORD and export again"
            )
    else:
        result.warnings.append(
            "no ingest user (PELBIOT_MQTT_USERNAME or the user in PELBIOT_MQTT_URL): with "
            "allow_anonymous false PELBIOT itself cannot connect"
        )
    if any(c.name == user for c in creds):
        raise ConfigError(f"device {user!r} has the name of PELBIOT's ingest user")
    write_atomically(password_file, render_password_file(creds, ingest=ingest), PASSWORD_FILE_MODE)
    acl = render_acl(
        creds,
        prefix=settings.topic_prefix,
        ingest_user=user,
        shared_group=settings.mqtt_shared_group,
    )
    write_atomically(acl_file, acl, ACL_FILE_MODE)
    logger.info("wrote %s and %s (%d devices)", password_file, acl_file, len(creds))
    return result
