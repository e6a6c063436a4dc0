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

REDACTED = "[redacted]"

_QUERY_SECRET = re.compile(
    r"(?i)(?<![A-Za-z0-9_])((?:access_|refresh_)?token|api_?key|key|password|secret)=[^&\s\"'#]+"
)
_API_KEY = re.compile(r"pbk_[0-9a-f]{12}_[A-Za-z0-9_\-]+")
_BEARER_PROTOCOL = re.compile(r"(?i)bearer\.[A-Za-z0-9_\-.~+/=]+")

# Loggers whose records may carry a request line; the root handlers cover everything else.
_LOGGERS = ("uvicorn", "uvicorn.error", "uvicorn.access")


def redact(text: str) -> str:
    """``text`` with secret query values, API keys and bearer subprotocols replaced."""
    if "=" in text:
        text = _QUERY_SECRET.sub(lambda m: f"{m.group(1)}={REDACTED}", text)
    if "pbk_" in text:
        text = _API_KEY.sub("pbk_" + REDACTED, text)
    if "earer." in text or "EARER." in text:
        text = _BEARER_PROTOCOL.sub("bearer." + REDACTED, text)
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
