"""The in-flight cap: how many jobs this runner may have submitted and unfinished at once.

The cap starts at ``--concurrency``. A service that enforces a lower limit of its own answers
429 to a submit while our jobs run; ``limit_to`` then holds the cap at what the service has.
``hold`` seconds later one more slot opens (a probe, whether or not a job finished); while the
service accepts, each accepted submit opens one more, up to the configured cap. A probe that is
refused holds the cap again: a real limit costs at most one more 429 per hold.
"""

from __future__ import annotations

import time
from collections.abc import Callable

import anyio


class Slots:
    """The in-flight cap. Resumed or taken-over jobs take a slot without waiting, even past the cap."""

    def __init__(self, cap: int, *, monotonic: Callable[[], float] = time.monotonic) -> None:
        self.ceiling = cap  # the configured cap
        self.cap = cap  # the cap now: lower while the service refuses more
        self.used = 0
        self.closed = False
        self._changed = anyio.Event()
        self._monotonic = monotonic
        self._hold = 0.0
        self._probe_at = 0.0  # monotonic time of the next probe while the cap is lowered
        self._probing = False  # a probe is out: each accepted submit opens one more slot

    def take(self) -> None:
        self.used += 1

    async def acquire(self) -> bool:
        """Wait for a free slot; False once the slots are closed (submitting stopped)."""
        while self.used >= self.cap and not self.closed:
            if self.cap >= self.ceiling:
                await self.changed()
                continue
            wait = self._probe_at - self._monotonic()
            if wait > 0:
                await self.changed(timeout=wait)
                continue
            self.cap += 1  # the hold is over: try one more than the service took
            self._probing = True
            self._probe_at = self._monotonic() + self._hold
        if self.closed:
            return False
        self.used += 1
        return True

    def release(self) -> None:
        self.used -= 1
        self.notify()

    def limit_to(self, in_flight: int, *, hold: float) -> bool:
        """The service refused one more job while ``in_flight`` of ours run: cap at that (at least
        one), and probe again ``hold`` seconds from now. True when the cap went down."""
        lowered = max(1, min(self.cap, in_flight))
        self._hold = hold
        self._probe_at = self._monotonic() + hold
        self._probing = False
        if lowered >= self.cap:
            return False
        self.cap = lowered
        return True

    def accepted(self) -> None:
        """The service accepted a submit: while probing, open one more slot (up to the ceiling)."""
        if self._probing and self.cap < self.ceiling:
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
