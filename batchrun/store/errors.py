"""The errors the store raises about jobs (not about the database itself: see ``dberrors``)."""

from __future__ import annotations

from collections.abc import Collection

from batchrun.errors import BatchrunError
from batchrun.states import JobState


class StaleJobError(BatchrunError):
    """The job was not in the expected state (another worker or a resume moved it first)."""

    job_id: int
    expected: frozenset[JobState]
    actual: JobState | None

    def __init__(self, job_id: int, expected: Collection[JobState], actual: JobState | None) -> None:
        wanted = "|".join(sorted(expected))
        super().__init__(
            f"job {job_id} is {actual or 'missing'}, not {wanted}",
            job_id=job_id,
            expected=frozenset(expected),
            actual=actual,
        )


class BudgetReachedError(BatchrunError):
    """Submitting this job would take the campaign's committed spend past the budget."""

    job_id: int
    cost: float | None
    committed: float
    budget: float

    def __init__(self, job_id: int, *, cost: float | None, committed: float, budget: float) -> None:
        super().__init__(
            f"job {job_id} (${cost:,.2f}) would take the spend past the budget: "
            f"${committed:,.2f} committed of ${budget:,.2f}" if cost is not None else
            f"job {job_id} has no known price, so it is not submitted under a budget",
            job_id=job_id, cost=cost, committed=committed, budget=budget,
        )
