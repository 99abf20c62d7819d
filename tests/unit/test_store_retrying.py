"""The runner's store calls outlast a database that fails for a moment (pure: a fake store)."""

from __future__ import annotations

import pytest

from batchrun.errors import DatabaseError
from batchrun.store.retrying import WAITS, RetryingStore


class _Flaky:
    """A store whose ``begin_submit`` fails ``failures`` times, then works."""

    label = "test.db"

    def __init__(self, failures: int, *, transient: bool = True) -> None:
        self.failures, self.transient, self.calls = failures, transient, 0

    def begin_submit(self, job_id: int, *, budget: float | None = None) -> tuple[int, float | None]:
        self.calls += 1
        if self.calls <= self.failures:
            raise DatabaseError("test.db: cannot use the database: server closed the connection", transient=self.transient)
        return job_id, budget


def test_a_moment_of_database_trouble_is_waited_out_and_said() -> None:
    """A dropped connection or a deadlock: the same call again after 0.5 s, 1 s... and it works."""
    slept: list[float] = []
    said: list[str] = []
    store = RetryingStore(_Flaky(2), sleep=slept.append, on_retry=said.append)
    assert store.begin_submit(7, budget=3.0) == (7, 3.0)
    assert slept == [0.5, 1.0] and len(said) == 2 and "trying again in 0.5s" in said[0]
    assert store.label == "test.db"  # plain attributes pass through


def test_lasting_trouble_ends_the_call_after_the_last_wait() -> None:
    slept: list[float] = []
    flaky = _Flaky(100)
    with pytest.raises(DatabaseError):
        RetryingStore(flaky, sleep=slept.append).begin_submit(1)
    assert slept == list(WAITS) and flaky.calls == len(WAITS) + 1


def test_an_error_that_is_no_passing_trouble_is_not_retried() -> None:
    """A corrupt file (or any error not marked transient) fails at once."""
    slept: list[float] = []
    flaky = _Flaky(1, transient=False)
    with pytest.raises(DatabaseError):
        RetryingStore(flaky, sleep=slept.append).begin_submit(1)
    assert slept == [] and flaky.calls == 1
