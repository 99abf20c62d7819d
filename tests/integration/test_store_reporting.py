"""The store's reporting queries: what status, cancel, retry and export read (SQLite and PostgreSQL)."""

from __future__ import annotations

from collections.abc import Callable
from datetime import timedelta

import pytest

from batchrun.domain import JobSpec
from batchrun.overview import WINDOW
from batchrun.states import JobState
from batchrun.store import Store
from storefixtures import FakeClock

Spec = Callable[..., JobSpec]


def planned(store: Store, make_spec: Spec, keys: list[str], name: str = "camp", cost: float = 0.5) -> int:
    campaign = store.ensure_campaign(name, manifest_path=f"/m/{name}.yaml", output_dir="/o", settings={})
    store.apply_plan(campaign.id, [make_spec(k) for k in keys], cost=lambda spec: cost)
    return campaign.id


def finish(store: Store, job_id: int, request_id: str) -> None:
    store.begin_submit(job_id)
    store.record_submission(job_id, request_id)
    store.mark_downloading(job_id, ["https://files.example/x.mp4"])
    store.mark_done(job_id, output_path=f"/o/{request_id}.mp4", size=10, sha256="0" * 64)


def by_key(store: Store, campaign_id: int) -> dict[str, int]:
    return {job.key: job.id for job in store.iter_jobs(campaign_id)}


def test_campaign_stats_count_money_and_times(any_store: Store, make_spec: Spec, clock: FakeClock) -> None:
    """Stats hold counts per state, spend so far, pending cost, recent done jobs and the oldest in flight."""
    cid = planned(any_store, make_spec, [f"j{i}-t1" for i in range(6)])
    ids = by_key(any_store, cid)
    start = clock.current
    finish(any_store, ids["j0-t1"], "r0")  # finished long ago
    clock.advance(WINDOW.total_seconds() + 60)
    finish(any_store, ids["j1-t1"], "r1")  # finished recently
    any_store.begin_submit(ids["j2-t1"])
    any_store.record_submission(ids["j2-t1"], "r2")  # queued since now
    clock.advance(30)
    any_store.begin_submit(ids["j3-t1"])  # submitting, later
    any_store.mark_failed(ids["j3-t1"], "boom")
    stats = any_store.campaign_stats(cid, since=clock.current - WINDOW)
    assert stats.counts[JobState.DONE] == 2 and stats.counts[JobState.PENDING] == 2
    assert stats.counts[JobState.QUEUED] == 1 and stats.counts[JobState.FAILED] == 1
    assert stats.spent == pytest.approx(4 * 0.5) and stats.remaining == pytest.approx(2 * 0.5)
    assert stats.done_recent == 1
    assert stats.first_submitted_at == start
    assert stats.last_finished_at == start + timedelta(seconds=WINDOW.total_seconds() + 60)
    assert stats.oldest_in_flight is not None
    assert (stats.oldest_in_flight.key, stats.oldest_in_flight.state) == ("j2-t1", JobState.QUEUED)


def test_error_groups_count_failed_jobs_by_message(any_store: Store, make_spec: Spec) -> None:
    """Failures with the same message are one group, most frequent first, with example keys."""
    cid = planned(any_store, make_spec, [f"j{i}-t1" for i in range(5)])
    ids = by_key(any_store, cid)
    for key, error in (("j0-t1", "moderation"), ("j1-t1", "timeout"), ("j2-t1", "moderation"), ("j3-t1", "moderation")):
        any_store.mark_failed(ids[key], error)
    groups = any_store.error_groups(cid, examples=2)
    assert [(g.message, g.count) for g in groups] == [("moderation", 3), ("timeout", 1)]
    assert groups[0].examples == ("j0-t1", "j2-t1")


def test_iter_jobs_pages_through_every_active_job_in_id_order(any_store: Store, make_spec: Spec) -> None:
    """Export reads jobs page by page; superseded revisions only when asked."""
    cid = planned(any_store, make_spec, [f"j{i:02d}-t1" for i in range(25)])
    any_store.apply_plan(cid, [make_spec("j00-t1", "changed prompt")] + [make_spec(f"j{i:02d}-t1") for i in range(1, 25)])
    active = list(any_store.iter_jobs(cid, page=4))
    assert len(active) == 25 and [j.id for j in active] == sorted(j.id for j in active)
    everything = list(any_store.iter_jobs(cid, include_superseded=True, page=7))
    assert len(everything) == 26
    old = [j.id for j in everything if j.key == "j00-t1" and j.revision == 1]
    assert any_store.superseded_ids(cid) == set(old)
    any_store.begin_submit(active[3].id)
    cancelled = list(any_store.iter_jobs(cid, include_superseded=True, states=[JobState.CANCELLED], page=2))
    assert [j.id for j in cancelled] == old  # the superseded pending revision was cancelled
    assert [j.key for j in any_store.iter_jobs(cid, states=[JobState.SUBMITTING])] == [active[3].key]


def test_jobs_by_keys_finds_active_revisions_only(any_store: Store, make_spec: Spec) -> None:
    """Keys resolve to their active revision; unknown keys are simply absent."""
    cid = planned(any_store, make_spec, ["a-t1", "b-t1"])
    any_store.apply_plan(cid, [make_spec("a-t1", "new"), make_spec("b-t1")])
    found = any_store.jobs_by_keys(cid, ["a-t1", "zzz"])
    assert list(found) == ["a-t1"] and found["a-t1"].revision == 2
    assert any_store.job_keys(cid) == ["b-t1", "a-t1"]  # id order: the new revision of a-t1 is newer


def test_cancel_pending_skips_jobs_a_runner_took(any_store: Store, make_spec: Spec) -> None:
    """Cancelling many pending jobs is compare-and-set: a job already submitting is left alone."""
    cid = planned(any_store, make_spec, ["a-t1", "b-t1", "c-t1"])
    ids = by_key(any_store, cid)
    any_store.begin_submit(ids["b-t1"])
    moved = any_store.cancel_pending([ids["a-t1"], ids["b-t1"], ids["c-t1"]], "stop", page=2)
    assert moved == {ids["a-t1"], ids["c-t1"]}
    cancelled = any_store.get_job(ids["a-t1"])
    assert cancelled.state is JobState.CANCELLED and cancelled.error == "stop" and cancelled.finished_at is not None
    assert any_store.get_job(ids["b-t1"]).state is JobState.SUBMITTING
    assert any_store.history(ids["a-t1"])[-1].detail == {"reason": "stop"}
