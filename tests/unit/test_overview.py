"""Status arithmetic: throughput, ETA and the JSON form, against a pinned clock."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from batchrun.overview import (
    WINDOW,
    CampaignStats,
    ErrorGroup,
    InFlight,
    Overview,
    duration_text,
    overview_json,
    per_minute,
)
from batchrun.states import JobState

NOW = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)


def stats(**kwargs) -> CampaignStats:
    counts = dict.fromkeys(JobState, 0)
    counts.update(kwargs.pop("counts", {}))
    base = {"spent": 0.0, "remaining": 0.0, "done_recent": 0, "since": NOW - WINDOW}
    return CampaignStats(counts=counts, **{**base, **kwargs})


def test_recent_rate_counts_done_jobs_over_the_last_fifteen_minutes():
    """30 jobs finished in the last 15 minutes of a long campaign is 2 per minute."""
    o = Overview("c", stats(counts={JobState.DONE: 100}, done_recent=30, first_submitted_at=NOW - timedelta(hours=2),
                            last_finished_at=NOW), NOW)
    assert o.recent_rate == 2.0


def test_a_young_campaign_measures_from_its_first_submission():
    """A campaign started 5 minutes ago with 10 done runs at 2/min, not 10/15."""
    o = Overview("c", stats(counts={JobState.DONE: 10}, done_recent=10, first_submitted_at=NOW - timedelta(minutes=5),
                            last_finished_at=NOW), NOW)
    assert o.recent_rate == 2.0


def test_overall_rate_spans_first_submission_to_last_finish():
    """Overall throughput is done jobs over the time from the first submit to the last finish."""
    first = NOW - timedelta(hours=1)
    o = Overview("c", stats(counts={JobState.DONE: 120}, first_submitted_at=first, last_finished_at=first + timedelta(minutes=30)), NOW)
    assert o.overall_rate == 4.0


def test_eta_divides_unfinished_jobs_by_the_recent_rate():
    """60 unfinished jobs at 2 done per minute finish in 30 minutes."""
    o = Overview("c", stats(counts={JobState.DONE: 30, JobState.PENDING: 50, JobState.RUNNING: 10}, done_recent=30,
                            first_submitted_at=NOW - timedelta(hours=1), last_finished_at=NOW), NOW)
    assert o.left == 60 and o.in_flight == 10
    assert o.eta_seconds == 1800.0 and o.eta == NOW + timedelta(minutes=30)


def test_eta_falls_back_to_the_overall_rate_then_to_unknown():
    """Nothing finished lately: the overall rate predicts; nothing finished ever: no ETA."""
    first = NOW - timedelta(hours=2)
    idle = Overview("c", stats(counts={JobState.DONE: 60, JobState.PENDING: 60}, first_submitted_at=first,
                               last_finished_at=first + timedelta(minutes=60)), NOW)
    assert idle.recent_rate == 0.0 and idle.eta_seconds == 3600.0
    fresh = Overview("c", stats(counts={JobState.PENDING: 5}), NOW)
    assert fresh.recent_rate is None and fresh.eta_seconds is None and fresh.eta is None


def test_a_finished_campaign_has_eta_zero():
    """When every job is done, failed or cancelled there is nothing left to wait for."""
    o = Overview("c", stats(counts={JobState.DONE: 3, JobState.FAILED: 1, JobState.CANCELLED: 2}), NOW)
    assert o.left == 0 and o.eta_seconds == 0.0


def test_per_minute_and_durations_read_well():
    """Rates need a non-empty span; durations print as 1h 05m, 4m 10s, 12s."""
    assert per_minute(5, 0) is None and per_minute(5, 150) == 2.0
    assert [duration_text(s) for s in (3900, 250, 12, None)] == ["1h 05m", "4m 10s", "12s", "n/a"]


def test_json_carries_every_number_status_shows():
    """`status --json` holds counts, money, rates, ETA, the oldest job in flight and error groups."""
    oldest = InFlight("shot-t1", JobState.QUEUED, NOW - timedelta(minutes=7))
    group = ErrorGroup("boom", 2, ("a-t1", "b-t1"), NOW)
    o = Overview("c", stats(counts={JobState.DONE: 1, JobState.QUEUED: 1, JobState.FAILED: 2}, spent=1.5,
                            remaining=0.25, done_recent=1, first_submitted_at=NOW - timedelta(minutes=10),
                            last_finished_at=NOW, oldest_in_flight=oldest), NOW, (group,))
    data = overview_json(o)
    assert data["counts"]["done"] == 1 and data["total"] == 4
    assert data["spent_usd"] == 1.5 and data["remaining_usd"] == 0.25
    assert data["throughput_per_minute"]["recent"] == 0.1
    assert data["oldest_in_flight"] == {"key": "shot-t1", "state": "queued", "since": oldest.since.isoformat(),
                                        "age_seconds": 420.0}
    assert data["errors"] == [{"message": "boom", "count": 2, "examples": ["a-t1", "b-t1"], "last_at": NOW.isoformat()}]
