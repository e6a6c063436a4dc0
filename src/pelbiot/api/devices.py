"""Device credentials over HTTP (admins): what ``pelbiot device ...`` does, for the dashboard.

Each change rewrites Mosquitto's files when ``PELBIOT_MOSQUITTO_PASSWORD_FILE`` and
``PELBIOT_MOSQUITTO_ACL_FILE`` are set; the answer says whether they were written (the change is
kept either way), and Mosquitto still has to be reloaded. A password is in one answer only.
"""

from __future__ import annotations

import logging
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Path, Request, Response, status
from pydantic import BaseModel, ConfigDict, Field

from pelbiot.api.deps import PrincipalDep, RuntimeDep, client_address
from pelbiot.api.timefmt import iso
from pelbiot.decode.payloads import PANEL_RE
from pelbiot.errors import ConfigError
from pelbiot.security.broker_acl import NAME_RE
from pelbiot.security.broker_files import (
    configured_files,
    export_mosquitto,
    reserved_device_names,
)
from pelbiot.security.devices import PASSWORD_MAX_LENGTH, PASSWORD_MIN_LENGTH, Devices

logger = logging.getLogger(__name__)

router = APIRouter(prefix="/devices", tags=["devices"])

_NAME = f"^{NAME_RE.pattern}$"
DeviceName = Annotated[str, Path(pattern=_NAME, max_length=64, description="MQTT username")]
PanelId = Annotated[str, Field(pattern=f"^{PANEL_RE.pattern}$", max_length=64)]
Password = Annotated[str, Field(min_length=PASSWORD_MIN_LENGTH, max_length=PASSWORD_MAX_LENGTH)]
FilesState = Literal["written", "not_configured", "failed"]


class DeviceCreate(BaseModel):
    model_config = ConfigDict(extra="forbid")

    name: str = Field(pattern=_NAME, max_length=64, description="the device's MQTT username")
    panels: list[PanelId] = Field(min_length=1, max_length=500)
    password: Password | None = Field(None, description="leave out to have one generated")


class DeviceUpdate(BaseModel):
    model_config = ConfigDict(extra="forbid")

    panels: list[PanelId] | None = Field(None, min_length=1, max_length=500)
    disabled: bool | None = None


class PasswordChange(BaseModel):
    model_config = ConfigDict(extra="forbid")

    password: Password | None = Field(None, description="leave out to have one generated")


class DevicePublic(BaseModel):
    name: str
    panels: list[str]
    disabled: bool
    disabled_at: str | None
    created_at: str
    updated_at: str
    created_by: str


class BrokerFiles(BaseModel):
    mosquitto_files: FilesState = Field(
        description="whether Mosquitto's password and ACL files were rewritten (then reload it)"
    )


class DeviceChanged(DevicePublic, BrokerFiles):
    pass


class DeviceCreated(DeviceChanged):
    password: str = Field(description="the MQTT password; shown this once, store it now")


class PasswordChanged(BrokerFiles):
    password: str = Field(description="the new MQTT password; shown this once")


def _devices(runtime: RuntimeDep) -> Devices:
    return Devices(runtime.engine, runtime.audit, reserved=reserved_device_names(runtime.settings))


def _public(runtime: RuntimeDep, row: dict[str, Any]) -> dict[str, Any]:
    zone = runtime.settings.zone
    return {
        "name": row["name"],
        "panels": row["panels"],
        "disabled": row["disabled"],
        "disabled_at": iso(row["disabled_ms"], zone) if row["disabled_ms"] else None,
        "created_at": iso(row["created_ms"], zone),
        "updated_at": iso(row["updated_ms"], zone),
        "created_by": row["created_by"],
    }


def _write_files(runtime: RuntimeDep, devices: Devices) -> FilesState:
    try:
        files = configured_files(runtime.settings)
        if files is None:
            return "not_configured"
        export_mosquitto(devices, runtime.settings, *files)
    except (OSError, ConfigError):
        logger.exception("device changed, but Mosquitto's files could not be written")
        return "failed"
    return "written"


@router.get("", response_model=list[DevicePublic], summary="List devices (never a password)")
def list_devices(runtime: RuntimeDep) -> list[DevicePublic]:
    return [DevicePublic(**_public(runtime, d)) for d in _devices(runtime).all()]


@router.post("", response_model=DeviceCreated, status_code=201, summary="Create a device")
def create_device(
    request: Request, runtime: RuntimeDep, principal: PrincipalDep, body: DeviceCreate
) -> DeviceCreated:
    devices = _devices(runtime)
    row, password = devices.create(
        body.name,
        body.panels,
        password=body.password,
        actor=principal.name,
        address=client_address(request),
    )
    files = _write_files(runtime, devices)
    return DeviceCreated(**_public(runtime, row), mosquitto_files=files, password=password)


@router.patch("/{name}", response_model=DeviceChanged, summary="Change panels or disable")
def update_device(
    request: Request,
    runtime: RuntimeDep,
    principal: PrincipalDep,
    name: DeviceName,
    body: DeviceUpdate,
) -> DeviceChanged:
    devices = _devices(runtime)
    address = client_address(request)
    devices.get(name)  # 404 before anything changes
    if body.panels is not None:
        devices.set_panels(name, body.panels, actor=principal.name, address=address)
    if body.disabled is not None:
        devices.set_disabled(name, body.disabled, actor=principal.name, address=address)
    files = _write_files(runtime, devices)
    return DeviceChanged(**_public(runtime, devices.get(name)), mosquitto_files=files)


@router.post("/{name}/password", response_model=PasswordChanged, summary="New device password")
def change_password(
    request: Request,
    runtime: RuntimeDep,
    principal: PrincipalDep,
    name: DeviceName,
    body: PasswordChange,
) -> PasswordChanged:
    devices = _devices(runtime)
    password = devices.set_password(
        name, body.password, actor=principal.name, address=client_address(request)
    )
    return PasswordChanged(password=password, mosquitto_files=_write_files(runtime, devices))


@router.delete("/{name}", status_code=status.HTTP_204_NO_CONTENT, summary="Delete a device")
def delete_device(
    request: Request, runtime: RuntimeDep, principal: PrincipalDep, name: DeviceName
) -> Response:
    devices = _devices(runtime)
    devices.delete(name, actor=principal.name, address=client_address(request))
    _write_files(runtime, devices)
    return Response(status_code=status.HTTP_204_NO_CONTENT)
