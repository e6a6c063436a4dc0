"""The demo's panels: the simulator's transformers registered with names, regions and ratings,
so the dashboard shows loading and transformer pages from the first minute."""

from __future__ import annotations

import logging
import secrets

from pelbiot.errors import ConflictError, NotFoundError
from pelbiot.security.audit import AuditLog
from pelbiot.security.devices import Devices
from pelbiot.security.permissions import Role
from pelbiot.security.sessions import account_services
from pelbiot.settings import Settings
from pelbiot.sim.meter_model import make_panels
from pelbiot.storage.db import make_engine
from pelbiot.storage.migrations import upgrade
from pelbiot.storage.store import Store

logger = logging.getLogger(__name__)

_SITES = [
    ("Trafo Gedung Utama", "Jakarta Selatan", "Basement 1, Gedung A"),
    ("Trafo Workshop", "Jakarta Selatan", "Area Workshop"),
    ("Panel Pabrik 1", "Bekasi", "Line produksi 1"),
    ("Panel Pabrik 2", "Bekasi", "Line produksi 2"),
    ("Gardu Kampus Timur", "Bandung", "Gedung Rektorat"),
    ("Gardu Kampus Barat", "Bandung", "Laboratorium"),
    ("Trafo Mall", "Surabaya", "Lantai dasar"),
    ("Trafo Rumah Sakit", "Surabaya", "Ruang panel utama"),
]


def register_demo_panels(settings: Settings, count: int, seed: int | None = None) -> None:
    """Create the demo panels if they do not exist yet (an existing demo keeps its edits)."""
    engine = make_engine(settings.effective_database_url)
    try:
        upgrade(engine)
        store = Store(engine)
        for index, spec in enumerate(make_panels(count, seed)):
            name, region, location = _SITES[index % len(_SITES)]
            if index >= len(_SITES):
                name = f"{name} {index // len(_SITES) + 1}"
            try:
                store.create_panel(
                    spec.panel_id,
                    {
                        "name": name,
                        "region": region,
                        "location": location,
                        "phases": 3,
                        "nominal_voltage": 230.0,
                        "rated_current": round(spec.rated_current, 1),
                        "kva_rating": spec.rated_kva,
                        "notes": "Simulated by pelbiot demo",
                    },
                )
            except ConflictError:
                continue
    finally:
        engine.dispose()


DEMO_ADMIN = "admin"


def demo_admin_password(settings: Settings) -> str:
    """Create the demo's super admin, or give it a fresh password; return the password."""
    password = "Demo-" + secrets.token_urlsafe(12)
    engine = make_engine(settings.effective_database_url)
    try:
        upgrade(engine)
        accounts, _sessions = account_services(engine, settings, AuditLog(engine))
        try:
            user = accounts.by_name(DEMO_ADMIN)
        except NotFoundError:
            accounts.create(DEMO_ADMIN, password, Role.SUPER_ADMIN)
        else:
            accounts.set_password(user["id"], password, actor=None)
            accounts.unlock(user["id"], actor=None)
    finally:
        engine.dispose()
    return password


DEMO_DEVICE = "demo-simulator"


def demo_device_password(devices: Devices, panel_ids: list[str]) -> str:
    """The simulator's own device credentials: created (or re-keyed, re-enabled and given the
    current panels) at every demo start; the password lives only in this process."""
    try:
        devices.get(DEMO_DEVICE)
    except NotFoundError:
        return devices.create(DEMO_DEVICE, panel_ids, actor="demo")[1]
    devices.set_panels(DEMO_DEVICE, panel_ids, actor="demo")
    devices.set_disabled(DEMO_DEVICE, False, actor="demo")
    return devices.set_password(DEMO_DEVICE, actor="demo")
