"""Shared dependencies: the runtime, and ``authorize``, the one gate every API route passes.

``authorize`` finds who is asking (API key header, bearer token, session cookie, or the
WebSocket's ``bearer.<token>`` subprotocol or ``?token=``), looks the route up in
``permissions.ROUTES`` (fail closed: a route without a rule is refused), checks the permission
and the rate limits, and leaves the caller in ``request.state.principal``. Cookie-authenticated
writes must carry the CSRF header. It also refuses NUL characters anywhere in the request (see
``_refuse_nul``).

``SECURITY_SCHEMES`` and ``security_requirements`` describe the same credentials in the OpenAPI
document (``/docs`` shows them behind its Authorize button); which operations need them comes from
``permissions.ROUTES``, like the gate itself.
"""

from __future__ import annotations

import copy
from typing import Annotated, Any

import orjson
from fastapi import Depends, Request, WebSocketException
from starlette.concurrency import run_in_threadpool
from starlette.requests import HTTPConnection
from starlette.status import WS_1008_POLICY_VIOLATION

from pelbiot.errors import (
    ForbiddenError,
    InvalidInputError,
    PelbiotError,
    RateLimitedError,
    UnauthorizedError,
)
from pelbiot.runtime import Runtime
from pelbiot.security.api_keys import looks_like_key
from pelbiot.security.permissions import (
    ANONYMOUS_VIEWER,
    PUBLIC,
    ROUTES,
    SCOPE_PERMISSIONS,
    Perm,
    Principal,
    route_template,
)

# The largest integers both databases store: row ids are INTEGER (32 bit on PostgreSQL),
# timestamps and offsets 64 bit. Parameters are bounded by them so an absurd value is a 422, not
# an overflow deep in the driver.
MAX_ROW_ID = 2**31 - 1
MAX_INT64 = 2**63 - 1

ACCESS_COOKIE = "pelbiot_access"
REFRESH_COOKIE = "pelbiot_refresh"
CSRF_COOKIE = "pelbiot_csrf"
CSRF_HEADER = "x-csrf-token"
_UNSAFE = frozenset({"POST", "PUT", "PATCH", "DELETE"})
# Public writes that still act on the cookie's session, so need the CSRF header with it.
_CSRF_PUBLIC = frozenset({"/api/v1/auth/logout"})
CSRF_REFUSED = "missing or wrong CSRF token (send the X-CSRF-Token header)"
_MISSING = object()


def get_runtime(request: Request) -> Runtime:
    runtime: Runtime = request.app.state.runtime
    return runtime


RuntimeDep = Annotated[Runtime, Depends(get_runtime)]


def client_address(connection: HTTPConnection) -> str:
    return connection.client.host if connection.client else "unknown"


def _route_key(connection: HTTPConnection) -> tuple[str, str]:
    method = "WS" if connection.scope["type"] == "websocket" else connection.scope["method"]
    path = connection.url.path
    return method, route_template(method, path) or path


def identify(connection: HTTPConnection, runtime: Runtime) -> tuple[Principal | None, bool]:
    """(principal or None, whether it came from the session cookie)."""
    key = connection.headers.get("x-api-key")
    if key:
        return runtime.api_keys.principal(key.strip()), False
    auth = connection.headers.get("authorization", "")
    scheme, _, token = auth.partition(" ")
    if scheme.lower() == "bearer" and token.strip():
        token = token.strip()
        if looks_like_key(token):
            return runtime.api_keys.principal(token), False
        return runtime.sessions.principal_from_access_token(token), False
    if connection.scope["type"] == "websocket":
        # Browsers cannot set headers on a WebSocket: the token rides in the offered
        # subprotocols ("bearer.<token>"), never in the URL. `?token=` stays for other clients
        # but lands in access logs and proxies (discouraged, docs/security.md).
        query_token = _subprotocol_token(connection) or connection.query_params.get("token")
        if query_token:
            if looks_like_key(query_token):
                return runtime.api_keys.principal(query_token), False
            return runtime.sessions.principal_from_access_token(query_token), False
    cookie = connection.cookies.get(ACCESS_COOKIE)
    if cookie:
        return runtime.sessions.principal_from_access_token(cookie), True
    return None, False


_BEARER_PROTOCOL = "bearer."


def _subprotocol_token(connection: HTTPConnection) -> str | None:
    """The token a WebSocket client offered as the subprotocol ``bearer.<token>``."""
    for offered in connection.scope.get("subprotocols") or ():
        if offered.startswith(_BEARER_PROTOCOL) and len(offered) > len(_BEARER_PROTOCOL):
            return str(offered[len(_BEARER_PROTOCOL) :])
    return None


def _own_origin(connection: HTTPConnection, runtime: Runtime) -> bool:
    """Whether a WebSocket handshake comes from the dashboard's own origin (its host and port,
    whatever the scheme: TLS may end at a proxy) or one in ``PELBIOT_CORS_ORIGINS``. Clients
    that are not browsers send no Origin; they hold no ambient cookie of a visitor either."""
    origin = connection.headers.get("origin")
    if origin is None:
        return True
    if origin.rstrip("/") in {o.rstrip("/") for o in runtime.settings.cors_origins}:
        return True
    _scheme, _, netloc = origin.partition("://")
    host = connection.headers.get("host", "")
    return bool(host) and netloc.lower() == host.lower()


# The credentials `identify` accepts over HTTP, as OpenAPI security schemes. The WebSocket's
# `?token=` is not here: the live feed is not in the OpenAPI document.
BEARER_SCHEME = "bearerAuth"
API_KEY_SCHEME = "apiKeyHeader"
COOKIE_SCHEME = "sessionCookie"
CSRF_SCHEME = "csrfHeader"
_ANONYMOUS_NOTE = (
    " With `PELBIOT_ANONYMOUS_READ=true` the routes that need only the `read` permission also"
    " answer callers without credentials (as a viewer); everything else still answers 401."
)
SECURITY_SCHEMES: dict[str, dict[str, Any]] = {
    BEARER_SCHEME: {
        "type": "http",
        "scheme": "bearer",
        "description": (
            "`Authorization: Bearer <token>`: the `access_token` from `POST /api/v1/auth/login`"
            " (a JWT, valid `PELBIOT_ACCESS_TOKEN_TTL_S`, 15 minutes by default; renew it with"
            " `POST /api/v1/auth/refresh`) or an API key"
            " (`pbk_<prefix>_<secret>`). In the Authorize dialog of `/docs` paste only the token"
            " or key, without `Bearer `." + _ANONYMOUS_NOTE
        ),
    },
    API_KEY_SCHEME: {
        "type": "apiKey",
        "in": "header",
        "name": "X-API-Key",
        "description": (
            "`X-API-Key: pbk_<prefix>_<secret>`: an API key (for meters, gateways and scripts),"
            " shown once when an admin creates it. When present it is used instead of the"
            " `Authorization` header." + _ANONYMOUS_NOTE
        ),
    },
    COOKIE_SCHEME: {
        "type": "apiKey",
        "in": "cookie",
        "name": ACCESS_COOKIE,
        "description": (
            f"The browser session: the `{ACCESS_COOKIE}` cookie set by login and refresh (used"
            " only when neither header above is sent). The browser sends it by itself, so this"
            " page needs nothing typed in once you are logged in to the dashboard. Writes (POST,"
            f" PUT, PATCH, DELETE) made with it must also send the `{CSRF_COOKIE}` cookie's"
            " value in the `X-CSRF-Token` header." + _ANONYMOUS_NOTE
        ),
    },
    CSRF_SCHEME: {
        "type": "apiKey",
        "in": "header",
        "name": "X-CSRF-Token",
        "description": (
            f"The value of the `{CSRF_COOKIE}` cookie, required (with `{COOKIE_SCHEME}`) on"
            " writes authenticated by the session cookie; not needed with a bearer token or an"
            " API key."
        ),
    },
}


def security_requirements(
    method: str, rule: Perm | None, *, public: bool
) -> list[dict[str, list[str]]]:
    """The OpenAPI ``security`` of an operation: none for a public route, else any one of the
    credentials ``identify`` accepts (a write with the cookie also needs the CSRF header). The
    ``X-API-Key`` header is left out where no key scope grants the permission (own account)."""
    if public:
        return []
    cookie: dict[str, list[str]] = (
        {COOKIE_SCHEME: [], CSRF_SCHEME: []} if method in _UNSAFE else {COOKIE_SCHEME: []}
    )
    keys_may = rule is None or any(rule in perms for perms in SCOPE_PERMISSIONS.values())
    api_key: list[dict[str, list[str]]] = [{API_KEY_SCHEME: []}] if keys_may else []
    return [{BEARER_SCHEME: []}, *api_key, cookie]


_HTTP_METHODS = frozenset({"get", "put", "post", "delete", "options", "head", "patch", "trace"})


def document_security(openapi: dict[str, Any]) -> dict[str, Any]:
    """Add the security schemes to an OpenAPI document, and to each operation the requirement
    its ROUTES rule calls for, found as the gate finds it (``route_template``). A route without
    a rule is refused to everyone; it is documented like any route that is not public."""
    openapi.setdefault("components", {})["securitySchemes"] = copy.deepcopy(SECURITY_SCHEMES)
    for path, operations in openapi.get("paths", {}).items():
        for verb, operation in operations.items():
            if verb not in _HTTP_METHODS:
                continue
            method = verb.upper()
            template = route_template(method, path)
            rule = ROUTES.get((method, template), _MISSING) if template else _MISSING
            requirements = security_requirements(
                method, rule if isinstance(rule, Perm) else None, public=rule is PUBLIC
            )
            if requirements:
                operation["security"] = requirements
            else:
                operation.pop("security", None)
    return openapi


def _check(connection: HTTPConnection, runtime: Runtime) -> Principal | None:
    method, path = _route_key(connection)
    rule = ROUTES.get((method, path), _MISSING)
    if rule is _MISSING:
        raise ForbiddenError(f"no access rule for {method} {path}")
    limits = runtime.rate_limits
    address = client_address(connection)
    wait = limits.per_address.hit(address)
    if wait:
        raise RateLimitedError("too many requests from this address", retry_after=wait)
    try:
        principal, from_cookie = identify(connection, runtime)
    except UnauthorizedError:
        if rule is PUBLIC:
            return None  # a stale cookie must not block the login page
        raise
    if principal is not None and principal.key_id is not None:
        wait = limits.per_key.hit(str(principal.key_id))
        if wait:
            raise RateLimitedError("too many requests with this API key", retry_after=wait)
    if from_cookie and method in _UNSAFE and (rule is not PUBLIC or path in _CSRF_PUBLIC):
        # The token is bound to the session (an HMAC of its id), not merely double-submitted.
        sent = connection.headers.get(CSRF_HEADER, "")
        if principal is None or not principal.session_id:
            raise ForbiddenError(CSRF_REFUSED)
        if not runtime.sessions.csrf_matches(principal.session_id, sent):
            raise ForbiddenError(CSRF_REFUSED)
    if from_cookie and method == "WS" and not _own_origin(connection, runtime):
        # WebSockets skip CORS, and SameSite lets sibling subdomains through: without this a
        # page elsewhere could open the feed with the visitor's cookie (cross-site hijacking).
        raise ForbiddenError("the session cookie opens the live feed only from this site")
    if principal is None and runtime.settings.anonymous_read:
        principal = ANONYMOUS_VIEWER
    if rule is PUBLIC:
        return principal
    assert isinstance(rule, Perm)
    if principal is None or (principal.kind == "anonymous" and not principal.can(rule)):
        raise UnauthorizedError("log in or send an API key")  # a login would help: 401
    if not principal.can(rule):
        raise ForbiddenError(f"your account or key lacks the {rule.value!r} permission")
    return principal


def _has_nul(value: Any) -> bool:
    if isinstance(value, str):
        return "\x00" in value
    if isinstance(value, dict):
        return any(_has_nul(k) or _has_nul(v) for k, v in value.items())
    if isinstance(value, list):
        return any(_has_nul(v) for v in value)
    return False


async def _refuse_nul(connection: HTTPConnection) -> None:
    """NUL characters are refused in paths, queries and JSON bodies: PostgreSQL cannot store
    them (SQLite can), so both backends answer the same 422 instead of one of them a 500."""
    where = None
    if "\x00" in connection.url.path:
        where = "path"
    elif any(_has_nul(k) or _has_nul(v) for k, v in connection.query_params.multi_items()):
        where = "query"
    elif (
        isinstance(connection, Request)
        and connection.method in _UNSAFE
        and connection.url.path != "/api/v1/ingest"  # decoded like MQTT: refused per item
    ):
        body = await connection.body()  # already read (and size-limited) by then
        if b"\x00" in body:
            where = "body"
        elif b"\\u0000" in body:
            try:
                where = "body" if _has_nul(orjson.loads(body)) else None
            except orjson.JSONDecodeError:
                where = None  # not JSON: the route's own validation answers
    if where is not None:
        raise InvalidInputError("NUL characters are not accepted", details={"in": where})


async def authorize(connection: HTTPConnection) -> None:
    runtime: Runtime = connection.app.state.runtime
    try:
        principal = await run_in_threadpool(_check, connection, runtime)
        await _refuse_nul(connection)
    except PelbiotError as exc:
        if connection.scope["type"] == "websocket":
            raise WebSocketException(WS_1008_POLICY_VIOLATION, reason=exc.message) from None
        raise
    connection.state.principal = principal


def get_principal(request: Request) -> Principal | None:
    principal: Principal | None = getattr(request.state, "principal", None)
    return principal


def require_principal(request: Request) -> Principal:
    principal = get_principal(request)
    if principal is None:
        raise UnauthorizedError("log in or send an API key")
    return principal


PrincipalDep = Annotated[Principal, Depends(require_principal)]
MaybePrincipalDep = Annotated[Principal | None, Depends(get_principal)]
