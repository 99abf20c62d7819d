"""The campaign's committed spend and its budget, checked where a submission begins (SQLite and PostgreSQL)."""

from __future__ import annotations

import threading

import pytest

from batchrun.states import JobState
from batchrun.store import BudgetReachedError, Store, open_store


def planned(store: Store, make_spec, count: int, *, cost: float | None = 0.5, name: str = "c") -> list[int]:
    campaign = store.ensure_campaign(name, manifest_path="m.yaml", output_dir="out", settings={})
    store.apply_plan(campaign.id, [make_spec(f"job{i:03d}") for i in range(count)], cost=lambda spec: cost)
    return [job.id for job in store.pending_jobs(campaign.id, limit=count)]


def test_each_submission_attempt_adds_its_estimated_cost(any_store, make_spec):
    """Every POST started counts, a resubmission after a lost answer included."""
    first, second = planned(any_store, make_spec, 2, cost=0.5)
    campaign = any_store.get_job(first).campaign_id
    any_store.begin_submit(first)
    any_store.reset_to_pending(first, "the answer was lost; resubmitting")
    any_store.begin_submit(first)
    any_store.begin_submit(second)
    assert any_store.committed_cost(campaign) == pytest.approx(1.5)
    assert any_store.get_job(first).attempts == 2


def test_a_submission_refused_for_certain_gives_its_cost_back(any_store, make_spec):
    """A 429 or 5xx created nothing: the job is pending again and the budget has room for it."""
    (job_id,) = planned(any_store, make_spec, 1, cost=0.5)
    campaign = any_store.get_job(job_id).campaign_id
    any_store.begin_submit(job_id, budget=0.5)
    back = any_store.return_unsubmitted(job_id, "not submitted: HTTP 429")
    assert back.state is JobState.PENDING and any_store.committed_cost(campaign) == 0.0
    assert any_store.begin_submit(job_id, budget=0.5).state is JobState.SUBMITTING
    assert any_store.committed_cost(campaign) == pytest.approx(0.5)


def test_a_submission_past_the_budget_is_refused_and_nothing_is_written(any_store, make_spec):
    """The job that would pass the budget stays pending, its attempts and the spend unchanged."""
    ids = planned(any_store, make_spec, 3, cost=0.5)
    campaign = any_store.get_job(ids[0]).campaign_id
    any_store.begin_submit(ids[0], budget=1.0)
    any_store.begin_submit(ids[1], budget=1.0)  # exactly the budget: allowed
    with pytest.raises(BudgetReachedError) as caught:
        any_store.begin_submit(ids[2], budget=1.0)
    assert (caught.value.cost, caught.value.committed, caught.value.budget) == (0.5, pytest.approx(1.0), 1.0)
    refused = any_store.get_job(ids[2])
    assert refused.state is JobState.PENDING and refused.attempts == 0
    assert any_store.committed_cost(campaign) == pytest.approx(1.0)
    assert [e.kind for e in any_store.history(ids[2])] == ["planned"]


def test_a_job_without_a_price_is_not_submitted_under_a_budget(any_store, make_spec):
    """Unknown cost: refused under a budget, submitted (adding nothing) without one."""
    (job_id,) = planned(any_store, make_spec, 1, cost=None)
    with pytest.raises(BudgetReachedError) as caught:
        any_store.begin_submit(job_id, budget=100.0)
    assert caught.value.cost is None and "no known price" in str(caught.value)
    assert any_store.begin_submit(job_id).state is JobState.SUBMITTING
    assert any_store.committed_cost(any_store.get_job(job_id).campaign_id) == 0.0


def test_campaigns_keep_their_own_spend(any_store, make_spec):
    """One campaign's submissions do not count against another's budget."""
    (a,) = planned(any_store, make_spec, 1, cost=2.0, name="a")
    (b,) = planned(any_store, make_spec, 1, cost=2.0, name="b")
    any_store.begin_submit(a, budget=2.0)
    any_store.begin_submit(b, budget=2.0)
    assert any_store.committed_cost(any_store.get_job(b).campaign_id) == pytest.approx(2.0)


@pytest.mark.postgres
def test_runners_submitting_at_once_share_one_budget(pg_url, make_spec):
    """Eight connections beginning submissions at once: together they never pass the budget."""
    setup = open_store(pg_url)
    ids = planned(setup, make_spec, 40, cost=0.25)
    campaign = setup.get_job(ids[0]).campaign_id
    accepted: list[int] = []
    lock = threading.Lock()

    def submitter(mine: list[int]) -> None:
        store = open_store(pg_url)
        try:
            for job_id in mine:
                try:
                    store.begin_submit(job_id, budget=3.0)
                except BudgetReachedError:
                    continue
                with lock:
                    accepted.append(job_id)
        finally:
            store.close()

    threads = [threading.Thread(target=submitter, args=(ids[i::8],)) for i in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    try:
        assert len(accepted) == 12  # $3.00 / $0.25
        assert setup.committed_cost(campaign) == pytest.approx(3.0)
        assert setup.count_by_state(campaign)[JobState.SUBMITTING] == 12
    finally:
        setup.close()
