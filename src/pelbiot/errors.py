"""PELBIOT's exception tree. One handler in ``app.py`` maps it to HTTP.

PelbiotError                 500 internal
+-- ConfigError              a setting is missing or invalid (stops the start)
+-- NotFoundError            404 not_found
+-- ConflictError            409 conflict
+-- InvalidInputError        422 invalid_input
+-- ServiceUnavailableError  503 unavailable (broker or database down)
"""

from __future__ import annotations

from typing import Any


class PelbiotError(Exception):
    status_code = 500
    code = "internal"

    def __init__(self, message: str, *, details: Any = None) -> None:
        super().__init__(message)
        self.message = message
        self.details = details


class ConfigError(PelbiotError):
    code = "config"


class NotFoundError(PelbiotError):
    status_code = 404
    code = "not_found"


class ConflictError(PelbiotError):
    status_code = 409
    code = "conflict"


class InvalidInputError(PelbiotError):
    status_code = 422
    code = "invalid_input"


class UnauthorizedError(PelbiotError):
    status_code = 401
    code = "unauthorized"


class ForbiddenError(PelbiotError):
    status_code = 403
    code = "forbidden"


class RateLimitedError(PelbiotError):
    status_code = 429
    code = "rate_limited"

    def __init__(self, message: str, *, retry_after: float) -> None:
        super().__init__(message, details={"retry_after_s": round(retry_after, 1)})
        self.retry_after = retry_after


class ServiceUnavailableError(PelbiotError):
    status_code = 503
    code = "unavailable"
