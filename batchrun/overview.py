"""What ``batchrun status`` says about a campaign: throughput, ETA, errors. Pure: no I/O.

The store gathers the raw numbers (``CampaignStats``, ``ErrorGroup``) in a few aggregate queries;
``Overview`` turns them into rates and an ETA against a given ``now``, so tests pin the clock.

- *recent throughput*: jobs done per minute over the last ``window`` (15 minutes by default), or
  over the time since the first submission when the campaign is younger than that;
- *overall throughput*: jobs done per minute from the first submission to the last finish;
- *ETA*: jobs not finished yet / the recent rate (the overall rate when nothing finished lately).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from batchrun.states import TERMINAL, JobState

#: how far back "recent" throughput looks
WINDOW = timedelta(minutes=15)
#: states of a job RunComfy (or the downloader) is still working on
WORKING = frozenset({JobState.SUBMITTING, JobState.QUEUED, JobState.RUNNING, JobState.DOWNLOADING})


@dataclass(frozen=True)
class InFlight:
    """A job still being worked on, and since when (submitted, or the submit began)."""

    key: str
    state: JobState
    since: datetime


@dataclass(frozen=True)
class ErrorGroup:
    """Failed jobs that share one error message."""

    message: str
    count: int
    examples: tuple[str, ...]  #: a few of their keys
    last_at: datetime | None = None  #: when the newest of them failed


@dataclass(frozen=True)
class CampaignStats:
    """The raw numbers of one campaign's active (not superseded) jobs, as the store counts them."""

    counts: Mapping[JobState, int]
    spent: float  #: estimated USD of every submission attempt (``Store.committed_cost``)
    remaining: float  #: estimated USD of the pending jobs
    done_recent: int  #: done jobs that finished at or after ``since``
    since: datetime  #: start of the recent window the store counted from
    first_submitted_at: datetime | None = None
    last_finished_at: datetime | None = None
    oldest_in_flight: InFlight | None = None


def per_minute(count: int, seconds: float) -> float | None:
    """``count`` per minute over ``seconds``; None when the span is empty."""
    return count * 60.0 / seconds if seconds > 0 else None


@dataclass(frozen=True)
class Overview:
    """A campaign's status at ``now``: counts, money, throughput, ETA, oldest job, errors."""

    name: str
    stats: CampaignStats
    now: datetime
    errors: tuple[ErrorGroup, ...] = field(default_factory=tuple)

    @property
    def total(self) -> int:
        return sum(self.stats.counts.values())

    def count(self, state: JobState) -> int:
        return self.stats.counts.get(state, 0)

    @property
    def left(self) -> int:
        """Jobs not finished yet (pending or being worked on)."""
        return sum(n for state, n in self.stats.counts.items() if state not in TERMINAL)

    @property
    def in_flight(self) -> int:
        return sum(self.count(state) for state in WORKING)

    @property
    def recent_rate(self) -> float | None:
        """Done jobs per minute over the recent window (shorter when the campaign is younger)."""
        stats = self.stats
        start = stats.since
        if stats.first_submitted_at is not None and stats.first_submitted_at > start:
            start = stats.first_submitted_at
        if stats.first_submitted_at is None:
            return None
        return per_minute(stats.done_recent, (self.now - start).total_seconds())

    @property
    def overall_rate(self) -> float | None:
        """Done jobs per minute from the first submission to the last finish."""
        first, last = self.stats.first_submitted_at, self.stats.last_finished_at
        if first is None or last is None:
            return None
        return per_minute(self.count(JobState.DONE), (last - first).total_seconds())

    @property
    def eta_seconds(self) -> float | None:
        """Seconds until every job is finished at the recent (else overall) rate; 0 when finished."""
        if self.left == 0:
            return 0.0
        rate = self.recent_rate or self.overall_rate
        return self.left / rate * 60.0 if rate else None

    @property
    def eta(self) -> datetime | None:
        seconds = self.eta_seconds
        return None if seconds is None else self.now + timedelta(seconds=seconds)


def duration_text(seconds: float | None) -> str:
    """``1h 05m``, ``4m 10s``, ``12s``; ``n/a`` when unknown."""
    if seconds is None:
        return "n/a"
    seconds = int(round(seconds))
    hours, rest = divmod(seconds, 3600)
    minutes, secs = divmod(rest, 60)
    if hours:
        return f"{hours}h {minutes:02d}m"
    if minutes:
        return f"{minutes}m {secs:02d}s"
    return f"{secs}s"


def rate_text(rate: float | None) -> str:
    return "n/a" if rate is None else f"{rate:.1f}/min"


def _round(value: float | None, digits: int = 3) -> float | None:
    return None if value is None else round(value, digits)


def _iso(value: datetime | None) -> str | None:
    return None if value is None else value.isoformat()


def overview_json(overview: Overview) -> dict[str, Any]:
    """The machine-readable form of an overview (``status --json``)."""
    stats = overview.stats
    oldest = stats.oldest_in_flight
    return {
        "campaign": overview.name,
        "at": _iso(overview.now),
        "total": overview.total,
        "counts": {state.value: overview.count(state) for state in JobState},
        "spent_usd": round(stats.spent, 4),
        "remaining_usd": round(stats.remaining, 4),
        "throughput_per_minute": {"recent": _round(overview.recent_rate), "overall": _round(overview.overall_rate)},
        "recent_window_start": _iso(stats.since),
        "eta_seconds": _round(overview.eta_seconds, 1),
        "eta": _iso(overview.eta),
        "oldest_in_flight": None
        if oldest is None
        else {
            "key": oldest.key,
            "state": oldest.state.value,
            "since": _iso(oldest.since),
            "age_seconds": round((overview.now - oldest.since).total_seconds(), 1),
        },
        "errors": [
            {"message": g.message, "count": g.count, "examples": list(g.examples), "last_at": _iso(g.last_at)}
            for g in overview.errors
        ],
    }
