"""The in-flight cap: how many jobs this runner may have submitted and unfinished at once."""

from __future__ import annotations

import anyio


class Slots:
    """The in-flight cap. Resumed or taken-over jobs take a slot without waiting, even past the cap."""

    def __init__(self, cap: int) -> None:
        self.cap = cap
        self.used = 0
        self.closed = False
        self._changed = anyio.Event()

    def take(self) -> None:
        self.used += 1

    async def acquire(self) -> bool:
        """Wait for a free slot; False once the slots are closed (submitting stopped)."""
        while self.used >= self.cap and not self.closed:
            await self.changed()
        if self.closed:
            return False
        self.used += 1
        return True

    def release(self) -> None:
        self.used -= 1
        self.notify()

    def close(self) -> None:
        """No more acquiring: wakes every waiter, whose acquire then returns False."""
        self.closed = True
        self.notify()

    def notify(self) -> None:
        """Wake whoever waits in ``changed`` (each waiter then waits on a fresh event)."""
        self._changed.set()
        self._changed = anyio.Event()

    async def changed(self, timeout: float | None = None) -> None:
        """Until the next ``notify`` (or ``timeout`` seconds)."""
        event = self._changed
        with anyio.move_on_after(timeout):
            await event.wait()
