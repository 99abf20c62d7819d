"""Time, injectable: logic takes a Clock instead of calling time/datetime/anyio.sleep directly."""

from __future__ import annotations

import time
from dataclasses import dataclass
from datetime import UTC, datetime

import anyio


def utcnow() -> datetime:
    return datetime.now(UTC)


@dataclass(frozen=True)
class Clock:
    """Wall time for records, monotonic time for scheduling, and the sleep to use."""

    def now(self) -> datetime:
        return utcnow()

    def monotonic(self) -> float:
        return time.monotonic()

    async def sleep(self, seconds: float) -> None:
        await anyio.sleep(seconds)


SYSTEM_CLOCK = Clock()
