"""The demo registers its simulated transformers with names, regions and ratings, once."""

from __future__ import annotations

from collections.abc import Callable

from pelbiot.settings import Settings
from pelbiot.sim.demo_site import register_demo_panels
from pelbiot.storage.db import make_engine
from pelbiot.storage.store import Store


def test_demo_panels_are_registered_once_and_keep_edits(
    make_settings: Callable[..., Settings],
) -> None:
    settings = make_settings()
    register_demo_panels(settings, 10)
    store = Store(make_engine(settings.effective_database_url))
    panels, total = store.list_panels()
    assert total == 10
    assert all(p["kva_rating"] and p["rated_current"] and p["region"] for p in panels)
    assert len({p["name"] for p in panels}) == 10
    store.update_panel("trafo1", {"name": "Renamed"})
    register_demo_panels(settings, 10)
    assert store.get_panel("trafo1")["name"] == "Renamed"
    assert store.list_panels()[1] == 10
    store.engine.dispose()
