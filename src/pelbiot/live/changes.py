"""A change signal: any thread says "this panel / this account changed", open live feeds wake up.

Panel edits and account changes are committed in API threads; the feeds that must re-check what
they may show wait on the event loop. ``notify`` is thread-safe and never blocks. Each change is
numbered at once, in the notifying thread (also before any feed has waited: a feed that read the
number before computing its rights must see a change made meanwhile); a feed remembers the number
it last saw, so a change that lands while it is busy re-checking is not missed, and
``changes_since`` tells it what changed, so a feed re-reads only what concerns it (an account
change wakes only that account's feeds into a database lookup).
"""

from __future__ import annotations

import asyncio
import contextlib
import threading
from collections import deque
from collections.abc import Hashable

# Changes remembered for feeds that fall behind; one further behind re-checks everything.
_REMEMBERED = 1024


class ChangeSignal:
    def __init__(self) -> None:
        self._loop: asyncio.AbstractEventLoop | None = None
        self._event: asyncio.Event | None = None
        self._recent: deque[tuple[int, Hashable]] = deque(maxlen=_REMEMBERED)
        self._lock = threading.Lock()
        self.generation = 0

    def notify(self, what: Hashable) -> None:
        """Called from any thread with what changed, e.g. ``("user", 7)``."""
        with self._lock:  # numbered here, whether or not a feed waits yet
            self.generation += 1
            self._recent.append((self.generation, what))
        # Read after numbering: a waiter binds the loop before it compares numbers, so either
        # it sees this change or its loop is seen here and woken.
        loop = self._loop
        if loop is None:
            return  # nobody has waited yet: nobody to wake
        with contextlib.suppress(RuntimeError):  # the loop is closing: nobody to wake
            loop.call_soon_threadsafe(self._wake)

    def _wake(self) -> None:
        event, self._event = self._event, None
        if event is not None:
            event.set()

    def changes_since(self, seen: int) -> set[Hashable] | None:
        """What changed after generation ``seen``; None when that is too long ago to know."""
        with self._lock:
            if seen == self.generation:
                return set()
            if not self._recent or self._recent[0][0] > seen + 1:
                return None
            return {what for number, what in self._recent if number > seen}

    async def wait(self, seen: int, period_s: float) -> bool:
        """Wait until the generation moves past ``seen`` (True) or ``period_s`` pass (False)."""
        self._loop = asyncio.get_running_loop()
        if self.generation != seen:
            return True
        if self._event is None:
            self._event = asyncio.Event()
        event = self._event
        try:
            async with asyncio.timeout(max(period_s, 0.0)):
                await event.wait()
        except TimeoutError:
            return False
        return True
