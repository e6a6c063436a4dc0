"""Keys and tokens never reach the logs.

uvicorn logs every WebSocket handshake with its query string (``"WebSocket
/api/v1/live?token=..." [accepted]`` on ``uvicorn.error``) and, when enabled, every request on
``uvicorn.access``: a ``?token=`` or ``?api_key=`` there would put a working credential in the
log files. ``SecretRedactor`` rewrites such values, API keys (``pbk_...``) and WebSocket bearer
subprotocols wherever they appear in a record, keeping the record's shape (uvicorn's access
formatter unpacks its arguments).
"""

from __future__ import annotations

import logging
import re
from typing import Any
from urllib.parse import unquote_plus

REDACTED = "[redacted]"

_QUERY_SECRET = re.compile(
    r"(?i)(?<![A-Za-z0-9_])((?:access_|refresh_)?token|api_?key|key|password|secret)=[^&\s\"'#]+"
)
_API_KEY = re.compile(r"pbk_[0-9a-f]{12}_[A-Za-z0-9_\-]+")
_JWT = re.compile(r"eyJ[A-Za-z0-9_\-]+\.[A-Za-z0-9_\-]+\.[A-Za-z0-9_\-]+")
# A query string as a log line shows it; its names and values are judged once percent-decoded
# (``?tok%65n=`` is ``token`` to the server, so it must be to the redactor too).
_QUERY = re.compile(r"\?([^\s\"'#]+)")
_SECRET_NAME = re.compile(r"(?i)(?:access_|refresh_)?token|api_?key|key|password|secret")
_BEARER_PROTOCOL = re.compile(r"(?i)bearer\.[A-Za-z0-9_\-.~+/=]+")

# Loggers whose records may carry a request line; the root handlers cover everything else.
_LOGGERS = ("uvicorn", "uvicorn.error", "uvicorn.access")


def _redact_pair(pair: str) -> str:
    name, sep, value = pair.partition("=")
    if not sep:
        return pair
    decoded = unquote_plus(value)
    if (
        _SECRET_NAME.fullmatch(unquote_plus(name).strip())
        or "pbk_" in decoded
        or "bearer." in decoded.lower()
        or _JWT.search(decoded)
    ):
        return f"{name}={REDACTED}"
    return pair


def _redact_query(match: re.Match[str]) -> str:
    return "?" + "&".join(_redact_pair(pair) for pair in match.group(1).split("&"))


def redact(text: str) -> str:
    """``text`` with secret query values, API keys, JWTs and bearer subprotocols replaced."""
    if "?" in text and "=" in text:
        text = _QUERY.sub(_redact_query, text)
    if "=" in text:
        text = _QUERY_SECRET.sub(lambda m: f"{m.group(1)}={REDACTED}", text)
    if "pbk_" in text:
        text = _API_KEY.sub("pbk_" + REDACTED, text)
    if "earer." in text or "EARER." in text:
        text = _BEARER_PROTOCOL.sub("bearer." + REDACTED, text)
    if "eyJ" in text:
        text = _JWT.sub(REDACTED, text)
    return text


def _redact_arg(value: Any) -> Any:
    return redact(value) if isinstance(value, str) else value


class SecretRedactor(logging.Filter):
    """A filter that redacts; it never drops a record."""

    def filter(self, record: logging.LogRecord) -> bool:
        if isinstance(record.msg, str):
            record.msg = redact(record.msg)
        if isinstance(record.args, tuple):
            record.args = tuple(_redact_arg(a) for a in record.args)
        elif isinstance(record.args, dict):
            record.args = {k: _redact_arg(v) for k, v in record.args.items()}
        return True


def install_redaction() -> SecretRedactor:
    """Attach one redactor to uvicorn's loggers (records created there) and to the root
    logger's handlers (records propagated from anywhere). Call after handlers exist."""
    redactor = SecretRedactor()
    for name in _LOGGERS:
        logging.getLogger(name).addFilter(redactor)
    for handler in logging.getLogger().handlers:
        handler.addFilter(redactor)
    return redactor
