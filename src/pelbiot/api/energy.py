"""Energy per panel over the site's calendar day, from the cumulative kWh counter."""

from __future__ import annotations

from datetime import datetime

from fastapi import APIRouter
from pydantic import BaseModel

from pelbiot.api.deps import MaybePrincipalDep, RuntimeDep

router = APIRouter(prefix="/energy", tags=["energy"])


class PanelEnergy(BaseModel):
    panel_id: str
    kwh: float


@router.get(
    "/today",
    response_model=list[PanelEnergy],
    summary="kWh since local midnight per panel (counter difference)",
)
def energy_today(runtime: RuntimeDep, principal: MaybePrincipalDep) -> list[PanelEnergy]:
    zone = runtime.settings.zone
    midnight = datetime.now(zone).replace(hour=0, minute=0, second=0, microsecond=0)
    start_ms = int(midnight.timestamp() * 1000)
    return [
        PanelEnergy(panel_id=pid, kwh=round(kwh, 3))
        for pid, kwh in sorted(runtime.store.counter_increase("energy", start_ms).items())
        if runtime.directory.visible(principal, pid)
    ]
