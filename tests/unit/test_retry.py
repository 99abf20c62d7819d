"""The retry decision (pure) and tenacity running it with an injected sleep."""

from __future__ import annotations

import random

import anyio
import httpx
import pytest
from hypothesis import given
from hypothesis import strategies as st

from batchrun.errors import (
    AuthError,
    InsufficientBalanceError,
    PermanentApiError,
    PermanentDownloadError,
    RateLimitedError,
    TransientApiError,
    TransientDownloadError,
    ValidationRejectedError,
)
from batchrun.retry import RetryPolicy, is_transient

NO_JITTER = RetryPolicy(max_attempts=6, base=1.0, cap=8.0, max_elapsed=None, jitter=False)


@pytest.mark.parametrize(
    "error",
    [
        TransientApiError("x"),
        RateLimitedError("x"),
        TransientDownloadError("x"),
        httpx.ConnectError("x"),
        httpx.ReadTimeout("x"),
        httpx.RemoteProtocolError("x"),
        TimeoutError(),
        ConnectionResetError(),
    ],
)
def test_transient_errors_are_retried(error: BaseException) -> None:
    """Network hiccups, 429s and 5xx answers are retried instead of failing the job."""
    assert is_transient(error)
    assert NO_JITTER.decide(error, 1, 0.0) == 1.0


@pytest.mark.parametrize(
    "error",
    [
        PermanentApiError("x"),
        ValidationRejectedError("x"),
        InsufficientBalanceError("x"),
        AuthError("x"),
        PermanentDownloadError("x"),
        httpx.UnsupportedProtocol("x"),
        ValueError("bug"),
    ],
)
def test_permanent_errors_are_not_retried(error: BaseException) -> None:
    """Refusals and our own bugs give up at once instead of hammering RunComfy."""
    assert NO_JITTER.decide(error, 1, 0.0) is None


def test_backoff_doubles_and_is_capped() -> None:
    """Waits grow exponentially but never beyond the cap."""
    waits = [NO_JITTER.decide(TransientApiError(), n, 0.0) for n in range(1, 6)]
    assert waits == [1.0, 2.0, 4.0, 8.0, 8.0]


def test_gives_up_after_max_attempts() -> None:
    """A job does not retry forever: max_attempts counts the first try."""
    assert NO_JITTER.decide(TransientApiError(), 5, 0.0) is not None
    assert NO_JITTER.decide(TransientApiError(), 6, 0.0) is None


def test_gives_up_when_the_wait_would_pass_max_elapsed() -> None:
    """Retrying stops once the total time budget would be exceeded."""
    policy = RetryPolicy(base=10, cap=10, max_elapsed=30, jitter=False)
    assert policy.decide(TransientApiError(), 1, 20.0) == 10
    assert policy.decide(TransientApiError(), 1, 25.0) is None


def test_retry_after_is_honoured_and_capped() -> None:
    """A server's Retry-After is obeyed, but never beyond a sane cap."""
    policy = RetryPolicy(jitter=True, retry_after_cap=120, max_elapsed=None)
    assert policy.decide(RateLimitedError(retry_after=7), 1, 0.0) == 7
    assert policy.decide(RateLimitedError(retry_after=10_000), 1, 0.0) == 120


@given(attempt=st.integers(1, 200), seed=st.integers(0, 2**32))
def test_full_jitter_stays_within_the_ceiling(attempt: int, seed: int) -> None:
    """Jittered waits are never negative and never exceed the capped backoff."""
    policy = RetryPolicy(max_attempts=1000, base=0.5, cap=30, max_elapsed=None)
    wait = policy.decide(TransientApiError(), attempt, 0.0, rng=random.Random(seed))
    assert wait is not None
    assert 0 <= wait <= policy.backoff_ceiling(attempt) <= 30


def test_tenacity_sleeps_exactly_the_decided_intervals() -> None:
    """The runner sleeps what the policy decided, then re-raises the last error unchanged."""
    slept: list[float] = []
    calls = 0

    async def record(seconds: float) -> None:
        slept.append(seconds)

    async def main() -> None:
        nonlocal calls
        policy = RetryPolicy(max_attempts=4, base=1, cap=3, max_elapsed=None, jitter=False)
        with pytest.raises(TransientApiError, match="boom"):
            async for attempt in policy.retrying(sleep=record):
                with attempt:
                    calls += 1
                    raise TransientApiError("boom")

    anyio.run(main)
    assert calls == 4
    assert slept == [1, 2, 3]


def test_tenacity_stops_at_the_first_permanent_error() -> None:
    """A permanent error after transient ones is raised without further waiting."""
    slept: list[float] = []
    errors = [TransientApiError("a"), RateLimitedError("b", retry_after=5), PermanentApiError("c")]

    async def record(seconds: float) -> None:
        slept.append(seconds)

    async def main() -> None:
        with pytest.raises(PermanentApiError, match="c"):
            async for attempt in RetryPolicy(jitter=False, max_elapsed=None).retrying(sleep=record):
                with attempt:
                    raise errors.pop(0)

    anyio.run(main)
    assert slept == [1.0, 5.0]


def test_virtual_sleeps_count_towards_max_elapsed() -> None:
    """The time budget holds even when sleep is injected and no real time passes."""
    slept: list[float] = []

    async def record(seconds: float) -> None:
        slept.append(seconds)

    async def main() -> None:
        policy = RetryPolicy(max_attempts=100, base=10, cap=10, max_elapsed=35, jitter=False)
        with pytest.raises(TransientApiError):
            async for attempt in policy.retrying(sleep=record):
                with attempt:
                    raise TransientApiError("down")

    anyio.run(main)
    assert slept == [10, 10, 10]


def test_invalid_policy_is_rejected() -> None:
    """A nonsensical policy fails loudly when built, not in the middle of a run."""
    with pytest.raises(ValueError):
        RetryPolicy(max_attempts=0)


@pytest.mark.parametrize(
    "error",
    [
        TransientApiError("503", status_code=503, retry_after=9.0),
        TransientDownloadError("503 from the CDN", retry_after=9),
        RateLimitedError("429", retry_after=9.0),
    ],
)
def test_retry_after_is_honoured_on_any_transient_error(error: BaseException) -> None:
    """A 503 (API or file host) that says when to come back is waited for exactly that long, capped."""
    assert NO_JITTER.decide(error, 1, 0.0) == 9.0
    capped = RetryPolicy(max_attempts=6, base=1.0, cap=8.0, max_elapsed=None, jitter=False, retry_after_cap=5)
    assert capped.decide(error, 1, 0.0) == 5.0
