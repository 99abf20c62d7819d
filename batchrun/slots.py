"""The in-flight cap: how many jobs this runner may have submitted and unfinished at once.

The cap starts at ``--concurrency``. A service that enforces a lower limit of its own answers
429 to a submit while our jobs run; ``limit_to`` then holds the cap at what the service has, and
after ``hold`` seconds without another refusal each accepted submit opens one more slot again,
up to the configured cap (one probe costs at most one more 429 per hold).
"""

from __future__ import annotations

import anyio


class Slots:
    """The in-flight cap. Resumed or taken-over jobs take a slot without waiting, even past the cap."""

    def __init__(self, cap: int) -> None:
        self.ceiling = cap  # the configured cap
        self.cap = cap  # the cap now: lower while the service refuses more
        self.used = 0
        self.closed = False
        self._changed = anyio.Event()
        self._grow_after = 0.0  # monotonic time before which the cap is not raised again

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

    def limit_to(self, in_flight: int, *, now: float, hold: float) -> bool:
        """The service refused one more job while ``in_flight`` of ours run: cap at that (at least
        one) and do not raise it for ``hold`` seconds. True when the cap went down."""
        lowered = max(1, min(self.cap, in_flight))
        self._grow_after = now + hold
        if lowered >= self.cap:
            return False
        self.cap = lowered
        return True

    def accepted(self, *, now: float) -> None:
        """The service accepted a submit: past the hold, open one more slot (up to the ceiling)."""
        if self.cap < self.ceiling and now >= self._grow_after:
            self.cap += 1
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
