"""User administration: list, create, edit role/regions/disabled, unlock, reset password."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Path, Request, Response, status
from pydantic import BaseModel, ConfigDict, Field

from pelbiot.api.deps import MAX_ROW_ID, PrincipalDep, RuntimeDep, client_address
from pelbiot.api.timefmt import iso
from pelbiot.security.permissions import Role

router = APIRouter(prefix="/users", tags=["users"])

# An empty region name once meant "unrestricted" for keys: refused everywhere (422).
Region = Annotated[str, Field(min_length=1, max_length=100, pattern=r"\S")]
UserId = Annotated[int, Path(ge=1, le=MAX_ROW_ID)]


class UserCreate(BaseModel):
    model_config = ConfigDict(extra="forbid")

    username: str = Field(min_length=2, max_length=64)
    password: str = Field(min_length=1, max_length=256)
    role: Role
    regions: list[Region] | None = Field(
        None, max_length=100, description="limit an operator or viewer to these regions"
    )


class UserUpdate(BaseModel):
    model_config = ConfigDict(extra="forbid")

    role: Role | None = None
    regions: list[Region] | None = Field(None, max_length=100)
    disabled: bool | None = None


class PasswordReset(BaseModel):
    new_password: str = Field(min_length=1, max_length=256)


class UserPublic(BaseModel):
    id: int
    username: str
    role: Role
    regions: list[str] | None
    disabled: bool
    locked: bool
    failed_logins: int
    password_expired: bool
    created_at: str
    updated_at: str


def _public(runtime: RuntimeDep, row: dict[str, Any]) -> UserPublic:
    zone = runtime.settings.zone
    return UserPublic(
        **{k: row[k] for k in ("id", "username", "role", "regions", "disabled", "locked")},
        failed_logins=row["failed_logins"],
        password_expired=row["password_expired"],
        created_at=iso(row["created_ms"], zone),
        updated_at=iso(row["updated_ms"], zone),
    )


@router.get("", response_model=list[UserPublic], summary="List users")
def list_users(runtime: RuntimeDep) -> list[UserPublic]:
    return [_public(runtime, u) for u in runtime.users.all()]


@router.post("", response_model=UserPublic, status_code=201, summary="Create a user")
def create_user(
    request: Request, runtime: RuntimeDep, principal: PrincipalDep, body: UserCreate
) -> UserPublic:
    row = runtime.users.create(
        body.username,
        body.password,
        body.role,
        regions=body.regions,
        actor=principal,
        address=client_address(request),
    )
    return _public(runtime, row)


@router.get("/{user_id}", response_model=UserPublic, summary="One user")
def get_user(runtime: RuntimeDep, user_id: UserId) -> UserPublic:
    return _public(runtime, runtime.users.get(user_id))


@router.patch("/{user_id}", response_model=UserPublic, summary="Change role, regions, disabled")
def update_user(
    request: Request,
    runtime: RuntimeDep,
    principal: PrincipalDep,
    user_id: UserId,
    body: UserUpdate,
) -> UserPublic:
    row = runtime.users.update(
        user_id,
        body.model_dump(exclude_unset=True),
        actor=principal,
        address=client_address(request),
    )
    return _public(runtime, row)


@router.post("/{user_id}/unlock", status_code=status.HTTP_204_NO_CONTENT, summary="Unlock")
def unlock_user(
    request: Request, runtime: RuntimeDep, principal: PrincipalDep, user_id: UserId
) -> Response:
    runtime.users.unlock(user_id, actor=principal, address=client_address(request))
    return Response(status_code=status.HTTP_204_NO_CONTENT)


@router.post(
    "/{user_id}/password", status_code=status.HTTP_204_NO_CONTENT, summary="Reset a password"
)
def reset_password(
    request: Request,
    runtime: RuntimeDep,
    principal: PrincipalDep,
    user_id: UserId,
    body: PasswordReset,
) -> Response:
    runtime.users.set_password(
        user_id, body.new_password, actor=principal, address=client_address(request)
    )
    return Response(status_code=status.HTTP_204_NO_CONTENT)
