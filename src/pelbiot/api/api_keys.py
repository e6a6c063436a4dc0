"""API keys: create (the key is shown once), list, revoke."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Path, Request, Response, status
from pydantic import BaseModel, ConfigDict, Field, field_validator

from pelbiot.api.deps import MAX_ROW_ID, PrincipalDep, RuntimeDep, client_address
from pelbiot.api.timefmt import iso

router = APIRouter(prefix="/api-keys", tags=["api-keys"])

_LATEST_EXPIRY = datetime(2200, 1, 1)  # compared with the wall-clock part only


class KeyCreate(BaseModel):
    model_config = ConfigDict(extra="forbid")

    name: str = Field(min_length=1, max_length=100)
    scopes: list[Literal["ingest", "read", "admin"]] = Field(min_length=1, max_length=3)
    panel_id: str | None = Field(
        None, pattern=r"^[A-Za-z0-9][A-Za-z0-9_.\-]{0,63}$", description="restrict to one panel"
    )
    region: str | None = Field(
        None,
        min_length=1,
        max_length=100,
        pattern=r"\S",
        description="restrict to one region (leave out for every region; never empty)",
    )
    expires_at: datetime | None = Field(
        None, description="ISO 8601 with offset, before 2200; leave out for no expiry"
    )

    @field_validator("expires_at")
    @classmethod
    def _bounded(cls, value: datetime | None) -> datetime | None:
        # Far dates overflowed when shown in the site zone (year 10000): a 500, now a 422.
        if value is not None and value.replace(tzinfo=None) >= _LATEST_EXPIRY:
            raise ValueError("expires_at must be before 2200-01-01; leave it out for no expiry")
        return value


class KeyPublic(BaseModel):
    id: int
    name: str
    prefix: str
    scopes: list[str]
    panel_id: str | None
    region: str | None
    expires_at: str | None
    revoked_at: str | None
    last_used_at: str | None
    created_at: str
    created_by: str
    active: bool
    suspended: bool = Field(
        description="its creator's account is disabled: refused until it is enabled again"
    )


class KeyCreated(KeyPublic):
    key: str = Field(description="the API key; shown this once, store it now")


def _public(runtime: RuntimeDep, row: dict[str, Any]) -> dict[str, Any]:
    zone = runtime.settings.zone

    def t(ms: int | None) -> str | None:
        return iso(ms, zone) if ms else None

    return {
        "id": row["id"],
        "name": row["name"],
        "prefix": row["prefix"],
        "scopes": row["scopes"],
        "panel_id": row["panel_id"],
        "region": row["region"],
        "expires_at": t(row["expires_ms"]),
        "revoked_at": t(row["revoked_ms"]),
        "last_used_at": t(row["last_used_ms"]),
        "created_at": iso(row["created_ms"], zone),
        "created_by": row["created_by"],
        "active": row["active"],
        "suspended": row["suspended"],
    }


@router.get("", response_model=list[KeyPublic], summary="List API keys (never the secret)")
def list_keys(runtime: RuntimeDep) -> list[KeyPublic]:
    return [KeyPublic(**_public(runtime, k)) for k in runtime.api_keys.all()]


@router.post("", response_model=KeyCreated, status_code=201, summary="Create an API key")
def create_key(
    request: Request, runtime: RuntimeDep, principal: PrincipalDep, body: KeyCreate
) -> KeyCreated:
    expires_ms = None
    if body.expires_at is not None:
        stamp = body.expires_at
        if stamp.tzinfo is None:
            stamp = stamp.replace(tzinfo=runtime.settings.zone)
        expires_ms = int(stamp.timestamp() * 1000)
    row, key = runtime.api_keys.create(
        name=body.name,
        scopes=list(body.scopes),
        actor=principal,
        panel_id=body.panel_id,
        region=body.region,
        expires_ms=expires_ms,
        address=client_address(request),
    )
    return KeyCreated(**_public(runtime, row), key=key)


@router.delete("/{key_id}", status_code=status.HTTP_204_NO_CONTENT, summary="Revoke a key")
def revoke_key(
    request: Request,
    runtime: RuntimeDep,
    principal: PrincipalDep,
    key_id: Annotated[int, Path(ge=1, le=MAX_ROW_ID)],
) -> Response:
    runtime.api_keys.revoke(key_id, actor=principal, address=client_address(request))
    return Response(status_code=status.HTTP_204_NO_CONTENT)
