"""Mosquitto's password file and ACL file for PELBIOT's devices (pure text, plus atomic writes).

A device is an MQTT username that may publish only under its own panels' topics
(``topic write <prefix>/<panel>/#``); PELBIOT's ingest user reads every panel. Mosquitto's
password file takes PBKDF2-SHA512 hashes, ``$7$<iterations>$<base64 salt>$<base64 hash>``
(what ``mosquitto_passwd`` writes: a 12-byte salt and a 64-byte digest), so the device registry
stores exactly that and the embedded broker verifies the same string.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import os
import re
import secrets
import tempfile
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

from pelbiot.decode.payloads import PANEL_RE
from pelbiot.errors import InvalidInputError

# Device passwords PELBIOT generates carry ~190 random bits, so iterations add little for them;
# Mosquitto hashes on every CONNECT in its single thread, and a reconnect storm of thousands of
# meters must not stall it. 1,000 is ten times mosquitto_passwd's default of 101.
HASH_ITERATIONS = 1_000
_SALT_BYTES = 12
_DIGEST_BYTES = 64

# MQTT usernames and panel ids end up in line-based files (``user NAME``, ``NAME:hash``) and in
# topic filters: no separators, whitespace, wildcards or ``:``. Panel ids follow the decoder's
# ``PANEL_RE``: a device may be given exactly the panels a topic can name.
NAME_RE = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.\-]{0,63}")


@dataclass(frozen=True)
class DeviceCredential:
    """What a broker needs of one enabled device."""

    name: str
    password_hash: str
    panels: tuple[str, ...]


def check_name(name: str) -> str:
    if not NAME_RE.fullmatch(name):
        raise InvalidInputError(
            "a device name is 1-64 letters, digits, '.', '_' or '-', starting with a letter "
            "or digit (it is the MQTT username)",
            details={"name": name[:80]},
        )
    return name


def check_panels(panels: Iterable[str]) -> tuple[str, ...]:
    unique = tuple(sorted(set(panels)))
    bad = [p for p in unique if not PANEL_RE.fullmatch(p)]
    if not unique or bad:
        raise InvalidInputError(
            "a device needs at least one panel id (letters, digits, '.', '_', '-')",
            details={"panels": [p[:80] for p in bad]},
        )
    return unique


def mosquitto_hash(
    password: str, *, iterations: int = HASH_ITERATIONS, salt: bytes | None = None
) -> str:
    """The ``$7$`` PBKDF2-SHA512 hash Mosquitto's ``password_file`` accepts."""
    salt = salt if salt is not None else secrets.token_bytes(_SALT_BYTES)
    digest = hashlib.pbkdf2_hmac("sha512", password.encode(), salt, iterations, _DIGEST_BYTES)
    salt_b64 = base64.b64encode(salt).decode()
    return f"$7${iterations}${salt_b64}${base64.b64encode(digest).decode()}"


def verify_mosquitto_hash(password: str, stored: str) -> bool:
    """True when ``password`` matches a ``$7$`` hash (constant-time compare)."""
    parts = stored.split("$")
    if len(parts) != 5 or parts[0] or parts[1] != "7" or not parts[2].isdigit():
        return False
    iterations = int(parts[2])
    if not 1 <= iterations <= 10_000_000:
        return False
    try:
        salt = base64.b64decode(parts[3], validate=True)
        expected = base64.b64decode(parts[4], validate=True)
    except (binascii.Error, ValueError):
        return False
    got = hashlib.pbkdf2_hmac("sha512", password.encode(), salt, iterations, len(expected))
    return hmac.compare_digest(got, expected)


HEADER = (
    "# Written by PELBIOT (pelbiot device ...). Do not edit: every device change rewrites it.\n"
)


def render_password_file(
    devices: Sequence[DeviceCredential], *, ingest: tuple[str, str] | None
) -> str:
    """``name:hash`` lines: PELBIOT's ingest user (``(username, hash)``) and every device."""
    lines = [HEADER.rstrip("\n")]
    if ingest is not None:
        lines.append(f"{ingest[0]}:{ingest[1]}")
    lines.extend(f"{d.name}:{d.password_hash}" for d in devices)
    return "\n".join(lines) + "\n"


def render_acl(
    devices: Sequence[DeviceCredential],
    *,
    prefix: str,
    ingest_user: str | None,
    shared_group: str | None = None,
) -> str:
    """Mosquitto ``acl_file`` text. No line before the first ``user``: anonymous clients (if a
    listener allows them at all) may do nothing."""
    out = [HEADER.rstrip("\n"), ""]
    if ingest_user:
        # readwrite, not read: the seed-compatible POST /api/mqtt/publish publishes through
        # PELBIOT's own connection (PELBIOT checks the caller's panels there).
        out += [f"user {ingest_user}", f"topic readwrite {prefix}/#"]
        if shared_group:
            out.append(f"topic read $share/{shared_group}/{prefix}/#")
        out.append("")
    for device in devices:
        out.append(f"user {device.name}")
        out.extend(f"topic write {prefix}/{panel}/#" for panel in device.panels)
        out.append("")
    return "\n".join(out)


def read_password_entry(path: Path, username: str) -> str | None:
    """The hash a password file holds for ``username`` (None: no file or no entry)."""
    try:
        text = path.read_text()
    except FileNotFoundError:
        return None
    for line in text.splitlines():
        name, sep, stored = line.partition(":")
        if sep and name == username and not line.startswith("#"):
            return stored.strip()
    return None


def write_atomically(path: Path, text: str, mode: int) -> None:
    """Write a temp file in the same directory, fsync, then rename over ``path``: Mosquitto
    reloading at any moment sees the old file or the new one, never half of one."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    try:
        os.fchmod(fd, mode)
        with os.fdopen(fd, "w") as handle:
            handle.write(text)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
