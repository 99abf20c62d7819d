"""What ``status``, ``cancel``, ``retry``, ``export`` and ``report`` read (a ``Store`` mixin):
campaign counts and money, error groups, paged iteration, lookups by key, bulk cancel."""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Sequence
from datetime import datetime
from itertools import islice
from typing import TYPE_CHECKING

import sqlalchemy as sa

from batchrun.domain import Job
from batchrun.overview import CampaignStats, ErrorGroup, InFlight
from batchrun.states import JobState, can_transition
from batchrun.store.models import events, jobs
from batchrun.store.rows import to_job
from batchrun.store.types import UTCDateTime

if TYPE_CHECKING:  # pragma: no cover
    from batchrun.store.repository import Store


class Reporting:
    """Mixed into ``Store``: the reads behind the reporting commands, and bulk cancel."""

    def campaign_stats(self: Store, campaign_id: int, *, since: datetime) -> CampaignStats:
        """Counts, money and timing of the campaign's active jobs; ``since`` starts the recent window."""
        active = (jobs.c.campaign_id == campaign_id, self._active)
        done = jobs.c.state == JobState.DONE.value
        working = [s.value for s in (JobState.SUBMITTING, JobState.QUEUED, JobState.RUNNING, JobState.DOWNLOADING)]
        in_flight_since = sa.func.coalesce(jobs.c.submitted_at, jobs.c.updated_at)
        counts = self.count_by_state(campaign_id)
        spent = self.committed_cost(campaign_id)
        with self._read() as c:
            remaining, done_recent, first, last = c.execute(
                sa.select(
                    sa.func.coalesce(
                        sa.func.sum(sa.case((jobs.c.state == JobState.PENDING.value, jobs.c.estimated_cost))), 0.0
                    ),
                    sa.func.count().filter(done, jobs.c.finished_at >= sa.literal(since, UTCDateTime())),
                    sa.func.min(jobs.c.submitted_at),
                    sa.func.max(jobs.c.finished_at).filter(done),
                ).where(*active)
            ).one()
            oldest = c.execute(
                sa.select(jobs.c.key, jobs.c.state, in_flight_since.label("since"))
                .where(*active, jobs.c.state.in_(working))
                .order_by(in_flight_since, jobs.c.id)
                .limit(1)
            ).first()
        # aggregates bypass the column type: normalise them like every other datetime
        to_dt = UTCDateTime().process_result_value
        return CampaignStats(
            counts=counts,
            spent=spent,
            remaining=float(remaining),
            done_recent=int(done_recent),
            since=since,
            first_submitted_at=to_dt(first, None),
            last_finished_at=to_dt(last, None),
            oldest_in_flight=None if oldest is None else InFlight(oldest.key, JobState(oldest.state), oldest.since),
        )

    def error_groups(self: Store, campaign_id: int, *, limit: int = 10, examples: int = 3) -> list[ErrorGroup]:
        """Failed active jobs grouped by error message, most frequent first, with a few keys each."""
        failed = (jobs.c.campaign_id == campaign_id, self._active, jobs.c.state == JobState.FAILED.value)
        count = sa.func.count().label("n")
        newest = sa.func.max(jobs.c.finished_at).label("newest")
        to_dt = UTCDateTime().process_result_value
        groups: list[ErrorGroup] = []
        with self._read() as c:
            rows = c.execute(
                sa.select(jobs.c.error, count, newest)
                .where(*failed)
                .group_by(jobs.c.error)
                .order_by(count.desc(), newest.desc())
                .limit(limit)
            ).all()
            for error, n, last in rows:
                match = jobs.c.error.is_(None) if error is None else jobs.c.error == error
                keys = c.execute(
                    sa.select(jobs.c.key).where(*failed, match).order_by(jobs.c.id).limit(examples)
                ).scalars()
                groups.append(ErrorGroup(error or "(no message)", int(n), tuple(keys), to_dt(last, None)))
        return groups

    def iter_jobs(
        self,
        campaign_id: int,
        *,
        include_superseded: bool = False,
        states: Iterable[JobState] | None = None,
        page: int = 1000,
    ) -> Iterator[Job]:
        """Every job of the campaign (in ``states``, when given) in id order, ``page`` rows per
        short transaction.

        Memory stays flat however many jobs there are; jobs changed while iterating are seen as
        they are when their page is read.
        """
        wanted = None if states is None else [JobState(state).value for state in states]
        after = 0
        while True:
            with self._read() as c:
                # SQLite without statistics would take the (campaign_id, state) index and sort the
                # whole campaign for every page; `+ 0` leaves it the id range of the primary key
                campaign = jobs.c.campaign_id + 0 if c.dialect.name == "sqlite" else jobs.c.campaign_id
                query = sa.select(jobs).where(campaign == campaign_id, jobs.c.id > after)
                if not include_superseded:
                    query = query.where(self._active)
                if wanted is not None:
                    query = query.where(jobs.c.state.in_(wanted))
                batch = [to_job(r) for r in c.execute(query.order_by(jobs.c.id).limit(page))]
            yield from batch
            if len(batch) < page:
                return
            after = batch[-1].id

    def output_names(self: Store, campaign_id: int) -> set[str]:
        """The file name of every active job of the campaign (what it writes in its output folder)."""
        with self._read() as c:
            return set(
                c.execute(sa.select(jobs.c.output_name).where(jobs.c.campaign_id == campaign_id, self._active)).scalars()
            )

    def superseded_ids(self: Store, campaign_id: int) -> set[int]:
        """Ids of the campaign's superseded revisions (rows kept when a job was edited)."""
        with self._read() as c:
            return set(
                c.execute(
                    sa.select(jobs.c.id).where(jobs.c.campaign_id == campaign_id, jobs.c.superseded_at.is_not(None))
                ).scalars()
            )

    def jobs_by_keys(self: Store, campaign_id: int, keys: Iterable[str]) -> dict[str, Job]:
        """The active revision of each of ``keys`` that exists (unknown keys are simply absent)."""
        found: dict[str, Job] = {}
        wanted = iter(dict.fromkeys(keys))
        with self._read() as c:
            while chunk := list(islice(wanted, 500)):
                rows = c.execute(
                    sa.select(jobs).where(jobs.c.campaign_id == campaign_id, self._active, jobs.c.key.in_(chunk))
                )
                for row in rows:
                    job = to_job(row)
                    found[job.key] = job
        return found

    def cancel_pending(self: Store, job_ids: Sequence[int], reason: str, *, page: int = 500) -> set[int]:
        """pending -> cancelled for many jobs (what ``mark_cancelled`` does to one), one UPDATE and
        one events INSERT per ``page`` ids. Returns the ids cancelled; the others were no longer
        pending (a runner took them meanwhile) and are left as they are."""
        assert can_transition(JobState.PENDING, JobState.CANCELLED)
        cancelled: set[int] = set()
        for start in range(0, len(job_ids), page):
            chunk = list(job_ids[start : start + page])
            now = self._now()
            with self._write() as c:
                moved = c.execute(
                    sa.update(jobs)
                    .where(jobs.c.id.in_(chunk), jobs.c.state == JobState.PENDING.value)
                    .values(state=JobState.CANCELLED.value, error=reason, finished_at=now, updated_at=now)
                    .returning(jobs.c.id)
                ).scalars().all()
                if moved:
                    c.execute(
                        sa.insert(events).values(
                            at=now,
                            kind="transition",
                            from_state=JobState.PENDING.value,
                            to_state=JobState.CANCELLED.value,
                            detail={"reason": reason},
                        ),
                        [{"job_id": job_id} for job_id in moved],
                    )
            cancelled.update(moved)
        return cancelled

    def job_keys(self: Store, campaign_id: int) -> list[str]:
        """Every active key of the campaign, in id order (for suggestions on a mistyped key)."""
        with self._read() as c:
            return list(
                c.execute(
                    sa.select(jobs.c.key).where(jobs.c.campaign_id == campaign_id, self._active).order_by(jobs.c.id)
                ).scalars()
            )
