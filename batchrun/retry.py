"""When to retry a failed request, as a pure value; tenacity only runs the decision.

``RetryPolicy.decide(error, attempt, elapsed, rng=...)`` answers "how many seconds to wait before
trying again, or None to give up". Transient failures (``TransientApiError`` including
``RateLimitedError``, ``TransientDownloadError``, httpx transport errors and timeouts) are retried
with exponential backoff and full jitter, capped; a server's ``Retry-After`` (a ``retry_after``
attribute on any transient error: a 429, but also a 503 or any 5xx, from the API or a file host)
is honoured, capped at ``retry_after_cap``. Everything else is given up at once.

``RetryPolicy.retrying(sleep=...)`` builds a ``tenacity.AsyncRetrying`` whose ``retry``/``wait``/
``stop`` all come from one ``decide`` call per failure, so the jitter drawn is the one slept.
Inject ``sleep`` (and ``rng``) to test with virtual time and assert the recorded intervals.

Deciding whether a failure is *safe* to retry (a submit whose answer was lost is not) is the
caller's job: it raises a non-transient error for those, and the policy then gives up.
"""

from __future__ import annotations

import math
import random
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

import httpx
import tenacity

from batchrun.errors import TransientApiError, TransientDownloadError

#: httpx transport errors that are our bug or a bad configuration, never worth retrying
_NOT_TRANSIENT_TRANSPORT = (httpx.UnsupportedProtocol, httpx.LocalProtocolError)

_default_rng = random.Random()


def is_transient(error: BaseException) -> bool:
    """True when trying the same request again later may succeed."""
    if isinstance(error, (TransientApiError, TransientDownloadError)):
        return True
    if isinstance(error, _NOT_TRANSIENT_TRANSPORT):
        return False
    return isinstance(error, (httpx.TransportError, TimeoutError, ConnectionError))


def _retry_after(error: BaseException) -> float | None:
    """The seconds a server asked us to wait (any transient error may carry ``retry_after``)."""
    value = getattr(error, "retry_after", None)
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    return float(value) if math.isfinite(value) and value >= 0 else None


@dataclass(frozen=True)
class RetryPolicy:
    """Exponential backoff with full jitter for transient failures; give up on anything else."""

    max_attempts: int = 6  #: attempts in total, the first one included
    base: float = 1.0  #: ceiling of the first wait, in seconds
    cap: float = 60.0  #: ceiling of any computed backoff wait
    max_elapsed: float | None = 600.0  #: give up rather than wait past this many seconds in all
    jitter: bool = True  #: full jitter (uniform 0..ceiling); False waits the ceiling exactly
    retry_after_cap: float = 120.0  #: never wait longer than this for a server's Retry-After

    def __post_init__(self) -> None:
        if self.max_attempts < 1:
            raise ValueError("max_attempts must be at least 1")
        if self.base < 0 or self.cap < 0 or self.retry_after_cap < 0:
            raise ValueError("waits must not be negative")

    def backoff_ceiling(self, attempt: int) -> float:
        """The largest wait after the ``attempt``-th failure (1-based): base * 2**(attempt-1), capped."""
        exponent = max(attempt - 1, 0)
        if exponent > 62:  # avoid float overflow; the cap applies long before
            return self.cap
        return min(self.cap, self.base * (2**exponent))

    def decide(
        self,
        error: BaseException,
        attempt: int,
        elapsed: float,
        *,
        rng: random.Random | None = None,
    ) -> float | None:
        """Seconds to wait before attempt ``attempt + 1``, or None to give up.

        ``attempt`` is the 1-based number of the attempt that just failed; ``elapsed`` the seconds
        since the first attempt started.
        """
        if not is_transient(error):
            return None
        if attempt >= self.max_attempts:
            return None
        retry_after = _retry_after(error)
        if retry_after is not None:
            wait = min(float(retry_after), self.retry_after_cap)
        else:
            ceiling = self.backoff_ceiling(attempt)
            wait = (rng or _default_rng).uniform(0.0, ceiling) if self.jitter else ceiling
        if self.max_elapsed is not None and elapsed + wait > self.max_elapsed:
            return None
        return wait

    def retrying(
        self,
        *,
        sleep: Callable[[float], Awaitable[Any]],
        rng: random.Random | None = None,
    ) -> tenacity.AsyncRetrying:
        """A tenacity runner for this policy; the last error is re-raised as is when it gives up."""
        driver = _Driver(self, rng)
        return tenacity.AsyncRetrying(
            retry=driver.retry,
            wait=driver.wait,
            stop=driver.stop,
            sleep=sleep,
            reraise=True,
        )


class _Driver:
    """Calls ``decide`` once per failure and hands the answer to tenacity's retry, wait and stop.

    Elapsed time is the larger of tenacity's wall-clock time and the sum of the waits it asked
    for, so it is right both with a real ``sleep`` and with an injected one that does not sleep.
    """

    def __init__(self, policy: RetryPolicy, rng: random.Random | None) -> None:
        self.policy = policy
        self.rng = rng
        self.decision: float | None = None

    def retry(self, state: tenacity.RetryCallState) -> bool:
        outcome = state.outcome
        if outcome is None or not outcome.failed:
            return False
        error = outcome.exception()
        assert error is not None
        elapsed = max(state.seconds_since_start or 0.0, state.idle_for)
        self.decision = self.policy.decide(error, state.attempt_number, elapsed, rng=self.rng)
        return self.decision is not None

    def wait(self, state: tenacity.RetryCallState) -> float:
        return self.decision or 0.0

    def stop(self, state: tenacity.RetryCallState) -> bool:
        return self.decision is None


NO_RETRY = RetryPolicy(max_attempts=1)
