"""A change signal: any thread says "rights or panels changed", every open live feed wakes up.

Panel edits and account changes are committed in API threads; the feeds that must re-check what
they may show wait on the event loop. ``notify`` is thread-safe and never blocks; ``wait`` returns
at once when a change happened since the generation the waiter last saw, so a change that lands
while a feed is busy re-checking is not missed.
"""

from __future__ import annotations

import asyncio
import contextlib


class ChangeSignal:
    def __init__(self) -> None:
        self._loop: asyncio.AbstractEventLoop | None = None
        self._event: asyncio.Event | None = None
        self.generation = 0

    def notify(self, *_args: object) -> None:
        """Called from any thread (extra arguments, like the changed id, are ignored)."""
        loop = self._loop
        if loop is None:
            return  # nobody has waited yet: nobody to wake
        with contextlib.suppress(RuntimeError):  # the loop is closing: nobody to wake
            loop.call_soon_threadsafe(self._fire)

    def _fire(self) -> None:
        self.generation += 1
        event, self._event = self._event, None
        if event is not None:
            event.set()

    async def wait(self, seen: int, period_s: float) -> bool:
        """Wait until the generation moves past ``seen`` (True) or ``period_s`` pass (False)."""
        self._loop = asyncio.get_running_loop()
        if self.generation != seen:
            return True
        if self._event is None:
            self._event = asyncio.Event()
        event = self._event
        try:
            async with asyncio.timeout(period_s):
                await event.wait()
        except TimeoutError:
            return False
        return True
