"""Login, token refresh, logout, who am I, change my password.

API clients use the JSON tokens (bearer access token, refresh token). Browsers get the same
tokens as cookies: HttpOnly and SameSite=Strict, plus a readable CSRF cookie whose value must be
echoed in the X-CSRF-Token header of every cookie-authenticated write, logout included. The CSRF
value is bound to the session (an HMAC of its id), so one session's value fails for another.
"""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Body, Request, Response
from pydantic import BaseModel, Field

from pelbiot.api.deps import (
    ACCESS_COOKIE,
    CSRF_COOKIE,
    CSRF_HEADER,
    CSRF_REFUSED,
    REFRESH_COOKIE,
    MaybePrincipalDep,
    PrincipalDep,
    RuntimeDep,
    client_address,
)
from pelbiot.errors import ForbiddenError, UnauthorizedError
from pelbiot.security.permissions import ROLE_PERMISSIONS, Role
from pelbiot.security.sessions import Tokens

router = APIRouter(prefix="/auth", tags=["auth"])


class LoginBody(BaseModel):
    username: str = Field(min_length=1, max_length=64)
    password: str = Field(min_length=1, max_length=256)


class RefreshBody(BaseModel):
    refresh_token: str | None = Field(None, max_length=200)


class PasswordBody(BaseModel):
    current_password: str = Field(min_length=1, max_length=256)
    new_password: str = Field(min_length=1, max_length=256)


class TokenResponse(BaseModel):
    access_token: str
    token_type: str = "bearer"  # noqa: S105 - the OAuth token type, not a secret
    expires_in: int
    refresh_token: str
    password_expired: bool = False


class Me(BaseModel):
    kind: str
    username: str
    role: str | None
    regions: list[str] | None
    permissions: list[str]
    password_expired: bool = False


def _secure(request: Request, runtime: RuntimeDep) -> bool:
    mode = runtime.settings.cookie_secure
    if mode == "auto":
        proto = request.headers.get("x-forwarded-proto", request.url.scheme)
        return proto == "https"
    return mode == "always"


def _set_cookies(request: Request, response: Response, runtime: RuntimeDep, tokens: Tokens) -> None:
    secure = _secure(request, runtime)
    refresh_age = runtime.settings.refresh_token_ttl_s
    response.set_cookie(
        ACCESS_COOKIE,
        tokens.access_token,
        max_age=refresh_age,
        httponly=True,
        secure=secure,
        samesite="strict",
        path="/",
    )
    response.set_cookie(
        REFRESH_COOKIE,
        tokens.refresh_token,
        max_age=refresh_age,
        httponly=True,
        secure=secure,
        samesite="strict",
        path="/api/v1/auth",
    )
    response.set_cookie(
        CSRF_COOKIE,
        runtime.sessions.csrf_token(tokens.session_id),
        max_age=refresh_age,
        httponly=False,
        secure=secure,
        samesite="strict",
        path="/",
    )


def _clear_cookies(response: Response) -> None:
    response.delete_cookie(ACCESS_COOKIE, path="/")
    response.delete_cookie(REFRESH_COOKIE, path="/api/v1/auth")
    response.delete_cookie(CSRF_COOKIE, path="/")


def _answer(tokens: Tokens) -> TokenResponse:
    return TokenResponse(
        access_token=tokens.access_token,
        expires_in=tokens.expires_in,
        refresh_token=tokens.refresh_token,
        password_expired=tokens.password_expired,
    )


@router.post("/login", response_model=TokenResponse, summary="Log in")
def login(
    request: Request, response: Response, runtime: RuntimeDep, body: LoginBody
) -> TokenResponse:
    tokens = runtime.sessions.login(body.username, body.password, address=client_address(request))
    _set_cookies(request, response, runtime, tokens)
    return _answer(tokens)


@router.post("/refresh", response_model=TokenResponse, summary="New access token")
def refresh(
    request: Request,
    response: Response,
    runtime: RuntimeDep,
    body: Annotated[RefreshBody | None, Body()] = None,
) -> TokenResponse:
    token = (body.refresh_token if body else None) or request.cookies.get(REFRESH_COOKIE)
    if not token:
        raise UnauthorizedError("no refresh token; log in again")
    tokens = runtime.sessions.refresh(token, address=client_address(request))
    _set_cookies(request, response, runtime, tokens)
    return _answer(tokens)


@router.post("/logout", status_code=204, summary="Log out (ends the session)")
def logout(
    request: Request,
    runtime: RuntimeDep,
    principal: MaybePrincipalDep,
    body: Annotated[RefreshBody | None, Body()] = None,
) -> Response:
    """Ends the session of the access token, or (when that has expired) of the refresh token
    in the body or the refresh cookie. The operation is public, so `/docs` does not send the
    token from its Authorize dialog here: give the refresh token in the body instead. With the
    session cookies (a browser) it needs the `X-CSRF-Token` header like every cookie write."""
    response = Response(status_code=204)
    address = client_address(request)
    if principal is not None and principal.session_id:
        runtime.sessions.logout(principal.session_id, actor=principal.name, address=address)
    else:
        token = body.refresh_token if body else None
        if not token and (token := request.cookies.get(REFRESH_COOKIE)):
            # A cookie is sent by the browser on its own: logging out with it needs the CSRF
            # header of that session, like every other cookie-authenticated write.
            session_id = token.partition(".")[0]
            if not runtime.sessions.csrf_matches(session_id, request.headers.get(CSRF_HEADER, "")):
                raise ForbiddenError(CSRF_REFUSED)
        if token:
            runtime.sessions.logout_refresh(token, address=address)
    _clear_cookies(response)
    return response


@router.get("/me", response_model=Me, summary="Who am I")
def me(runtime: RuntimeDep, principal: PrincipalDep) -> Me:
    expired = False
    if principal.user_id is not None:
        expired = runtime.users.get(principal.user_id)["password_expired"]
    perms = ROLE_PERMISSIONS[Role(principal.role)] if principal.role else principal.permissions
    return Me(
        kind=principal.kind,
        username=principal.name,
        role=principal.role.value if principal.role else None,
        regions=sorted(principal.regions) if principal.regions is not None else None,
        permissions=sorted(p.value for p in (perms & principal.permissions)),
        password_expired=expired,
    )


@router.post("/password", status_code=204, summary="Change my password")
def change_password(
    request: Request, runtime: RuntimeDep, principal: PrincipalDep, body: PasswordBody
) -> Response:
    if principal.user_id is None:
        raise UnauthorizedError("only a logged-in user has a password")
    runtime.users.set_password(
        principal.user_id,
        body.new_password,
        actor=principal,
        current_password=body.current_password,
        address=client_address(request),
    )
    return Response(status_code=204)
