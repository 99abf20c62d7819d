"""A ``Store`` whose calls are tried again when the database fails for a moment.

A run lives for hours: in that time a PostgreSQL server restarts or drops a connection, two
transactions deadlock, a `plan` holds SQLite's write lock longer than its busy timeout. Any of
these used to end the run, and every POST then under way stayed `submitting` (in doubt,
perhaps billed). The runner talks to the store through ``RetryingStore``, which runs the same
call again (each call is one transaction, rolled back by the failure) after 0.5, 1, 2, 4, 8 and
15 s, and only then lets the error end the run. Errors that are not transient (a corrupt file,
a stale job) pass through at once.
"""

from __future__ import annotations

import functools
import time
from collections.abc import Callable
from typing import Any

from batchrun.errors import DatabaseError

#: seconds between tries of a call the database failed (30.5 s in all)
WAITS = (0.5, 1.0, 2.0, 4.0, 8.0, 15.0)


class RetryingStore:
    """Wraps a ``Store``: every method call is retried on a transient ``DatabaseError``."""

    def __init__(self, store: Any, *, waits: tuple[float, ...] = WAITS,
                 sleep: Callable[[float], Any] = time.sleep, on_retry: Callable[[str], Any] | None = None) -> None:
        self._store = store
        self._waits = waits
        self._sleep = sleep
        self._on_retry = on_retry

    def __getattr__(self, name: str) -> Any:
        value = getattr(self._store, name)
        if not callable(value) or name.startswith("__"):
            return value

        @functools.wraps(value)
        def retried(*args: Any, **kwargs: Any) -> Any:
            for wait in (*self._waits, None):
                try:
                    return value(*args, **kwargs)
                except DatabaseError as error:
                    if wait is None or not getattr(error, "transient", False):
                        raise
                    if self._on_retry is not None:
                        self._on_retry(f"{error.message}; trying again in {wait:g}s")
                    self._sleep(wait)
            raise AssertionError("unreachable")  # pragma: no cover

        setattr(self, name, retried)  # built once per method: later calls find it without __getattr__
        return retried
