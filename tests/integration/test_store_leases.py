"""Claims, leases and the campaign-wide cap, on SQLite and PostgreSQL."""

from __future__ import annotations

import threading

import pytest

from batchrun.states import JobState
from batchrun.store import Store, open_store


def planned(store: Store, make_spec, count: int) -> int:
    campaign = store.ensure_campaign("c", manifest_path="m.yaml", output_dir="out", settings={})
    store.apply_plan(campaign.id, [make_spec(f"job{i:03d}") for i in range(count)])
    return campaign.id


def test_claims_never_exceed_the_campaign_cap(any_store, make_spec):
    """However often runners claim, the campaign never has more than `cap` jobs claimed or in flight."""
    cid = planned(any_store, make_spec, 10)
    first = any_store.claim_pending(cid, "runner-a", limit=3, cap=4, lease_seconds=30)
    second = any_store.claim_pending(cid, "runner-b", limit=3, cap=4, lease_seconds=30)
    assert len(first) == 3 and len(second) == 1
    assert {job.id for job in first}.isdisjoint(job.id for job in second)
    assert any_store.claim_pending(cid, "runner-b", limit=3, cap=4, lease_seconds=30) == []
    assert any_store.in_flight(cid) == 4


def test_a_submitted_job_keeps_counting_until_runcomfy_is_done_with_it(any_store, make_spec):
    """Queued and running jobs count against the cap whatever their lease; finished ones free it."""
    cid = planned(any_store, make_spec, 3)
    (job,) = any_store.claim_pending(cid, "a", limit=1, cap=1, lease_seconds=5)
    any_store.begin_submit(job.id)
    any_store.record_submission(job.id, "req-1")
    any_store.now.advance(60)  # the lease ran out: the runner is gone, RunComfy still has the job
    assert any_store.claim_pending(cid, "b", limit=1, cap=1, lease_seconds=5) == []
    any_store.mark_running(job.id)
    any_store.mark_failed(job.id, "boom")
    assert len(any_store.claim_pending(cid, "b", limit=1, cap=1, lease_seconds=5)) == 1


def test_expired_claims_go_back_to_the_pool(any_store, make_spec):
    """Pending jobs claimed by a runner that died are claimed by another once the lease runs out."""
    cid = planned(any_store, make_spec, 2)
    claimed = any_store.claim_pending(cid, "dead", limit=2, cap=5, lease_seconds=10)
    assert any_store.claim_pending(cid, "alive", limit=2, cap=5, lease_seconds=10) == []
    any_store.now.advance(11)
    again = any_store.claim_pending(cid, "alive", limit=2, cap=5, lease_seconds=10)
    assert [job.id for job in again] == [job.id for job in claimed]


def test_heartbeat_keeps_leases_alive(any_store, make_spec):
    """A runner that renews its leases keeps its jobs; nobody takes them over."""
    cid = planned(any_store, make_spec, 1)
    (job,) = any_store.claim_pending(cid, "a", limit=1, cap=5, lease_seconds=10)
    any_store.begin_submit(job.id)
    any_store.record_submission(job.id, "req-1")
    for _ in range(5):
        any_store.now.advance(6)
        assert any_store.renew_leases("a", lease_seconds=10) == 1
        assert any_store.take_over(cid, "b", lease_seconds=10, states=[JobState.QUEUED]) == []


def test_take_over_moves_a_dead_runners_jobs_and_records_it(any_store, make_spec):
    """After the lease expires another runner takes the jobs, with a `taken_over` event in the history."""
    cid = planned(any_store, make_spec, 2)
    jobs = any_store.claim_pending(cid, "dead", limit=2, cap=5, lease_seconds=10)
    for job, request in zip(jobs, ("r1", "r2"), strict=True):
        any_store.begin_submit(job.id)
        any_store.record_submission(job.id, request)
    assert any_store.take_over(cid, "alive", lease_seconds=10, states=[JobState.QUEUED]) == []
    any_store.now.advance(11)
    taken = any_store.take_over(cid, "alive", lease_seconds=10, states=[JobState.QUEUED])
    assert sorted(job.request_id for job in taken) == ["r1", "r2"]
    assert any_store.take_over(cid, "third", lease_seconds=10, states=[JobState.QUEUED]) == []
    kinds = [event.kind for event in any_store.history(taken[0].id)]
    assert "taken_over" in kinds


def test_force_take_over_does_not_wait_for_old_leases(any_store, make_spec):
    """A runner alone on the database (it holds the run lock) resumes at once after a crash."""
    cid = planned(any_store, make_spec, 1)
    (job,) = any_store.claim_pending(cid, "crashed", limit=1, cap=5, lease_seconds=300)
    any_store.begin_submit(job.id)
    any_store.record_submission(job.id, "r1")
    taken = any_store.take_over(cid, "restarted", lease_seconds=30, states=[JobState.QUEUED], force=True)
    assert [j.id for j in taken] == [job.id]


def test_release_runner_gives_back_unsubmitted_claims(any_store, make_spec):
    """A runner that stops cleanly returns the pending jobs it had claimed."""
    cid = planned(any_store, make_spec, 3)
    any_store.claim_pending(cid, "a", limit=3, cap=5, lease_seconds=30)
    any_store.release_runner("a")
    assert len(any_store.claim_pending(cid, "b", limit=3, cap=5, lease_seconds=30)) == 3


@pytest.mark.postgres
def test_concurrent_claimers_on_postgres_share_the_cap_exactly(pg_url, make_spec):
    """Eight threads claiming at once on PostgreSQL: every job claimed once, never more than the cap."""
    setup = open_store(pg_url)
    cid = planned(setup, make_spec, 200)
    results: dict[str, list[int]] = {}
    errors: list[BaseException] = []

    def claimer(name: str) -> None:
        store = open_store(pg_url)
        try:
            got: list[int] = []
            for _ in range(40):
                for job in store.claim_pending(cid, name, limit=5, cap=25, lease_seconds=60):
                    store.begin_submit(job.id)
                    store.record_submission(job.id, f"{name}-{job.id}")
                    store.mark_running(job.id)
                    store.mark_failed(job.id, "done with it")  # frees the slot
                    got.append(job.id)
            results[name] = got
        except BaseException as error:  # noqa: BLE001 - surfaced below
            errors.append(error)
        finally:
            store.close()

    threads = [threading.Thread(target=claimer, args=(f"r{i}",)) for i in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert not errors, errors
    claimed = [job_id for ids in results.values() for job_id in ids]
    assert len(claimed) == len(set(claimed)) == 200
    setup.close()


def test_a_runner_alone_drops_claims_a_crashed_run_left_on_pending_jobs(any_store, make_spec):
    """After kill -9, the claims a run made on jobs it never submitted do not hold the cap."""
    cid = planned(any_store, make_spec, 5)
    any_store.claim_pending(cid, "crashed", limit=5, cap=5, lease_seconds=600)
    assert any_store.claim_pending(cid, "restarted", limit=5, cap=5, lease_seconds=60) == []
    assert any_store.release_claims(cid) == 5
    assert len(any_store.claim_pending(cid, "restarted", limit=5, cap=5, lease_seconds=60)) == 5
