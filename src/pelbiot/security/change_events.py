"""Callbacks fired after a committed change of someone's rights (an account edit, a logout, a
revoked key), so open live feeds re-check at once instead of at their next periodic check."""

from __future__ import annotations

import logging
from collections.abc import Callable

logger = logging.getLogger(__name__)


class ChangeListeners:
    def __init__(self) -> None:
        self._callbacks: list[Callable[[int], None]] = []

    def add(self, callback: Callable[[int], None]) -> None:
        self._callbacks.append(callback)

    def notify(self, user_id: int) -> None:
        """``user_id``: the account whose rights changed (for a key: the user who made it, 0
        for a key made by the CLI). A failing callback never undoes the committed change."""
        for callback in self._callbacks:
            try:
                callback(user_id)
            except Exception:
                logger.exception("rights-change callback failed")
