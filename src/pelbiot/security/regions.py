"""Panel id -> region, cached briefly: the lookup behind region scoping on every request.

Every method may read the store (when the cache is older than ``_TTL_S``): call them from a
worker thread, never from the event loop (the live feed computes ``visible_panels`` off-loop).
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable

from pelbiot.security.permissions import Principal

_TTL_S = 2.0


class PanelDirectory:
    def __init__(
        self, load: Callable[[], dict[str, str | None]], clock: Callable[[], float] = time.monotonic
    ) -> None:
        self._load = load
        self._clock = clock
        self._regions: dict[str, str | None] = {}
        self._loaded_at = float("-inf")
        self._invalidations = 0
        self._lock = threading.Lock()

    def invalidate(self, *_args: object) -> None:
        with self._lock:
            self._loaded_at = float("-inf")
            self._invalidations += 1

    def _current(self) -> dict[str, str | None]:
        with self._lock:
            if self._clock() - self._loaded_at < _TTL_S:
                return self._regions
            invalidations = self._invalidations
        regions = self._load()
        with self._lock:
            # A change committed while this load ran may be missing from it: keep it for this
            # caller, but as stale (the next call loads again), never as fresh for _TTL_S.
            if self._invalidations == invalidations:
                self._regions, self._loaded_at = regions, self._clock()
        return regions

    def region(self, panel_id: str) -> str | None:
        return self._current().get(panel_id)

    def visible(self, principal: Principal | None, panel_id: str) -> bool:
        """Whether the caller may see this panel (everyone unscoped sees every panel)."""
        if principal is None or not principal.scoped:
            return True
        return principal.sees_panel(panel_id, self.region(panel_id))

    def visible_panels(self, principal: Principal | None) -> frozenset[str] | None:
        """The panels a caller may see now; None means every panel (unscoped callers)."""
        if principal is None or not principal.scoped:
            return None
        if principal.regions is None and principal.panel_id is not None:
            return frozenset({principal.panel_id})  # a key pinned to one panel: no lookup
        return frozenset(
            panel_id
            for panel_id, region in self._current().items()
            if principal.sees_panel(panel_id, region)
        )
