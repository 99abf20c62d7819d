"""Several runners on one campaign: claims, leases and the campaign-wide in-flight cap.

A runner never works on a job it has not claimed. Claiming sets ``runner_id`` and a lease
(``lease_expires_at``); the runner renews all its leases with one UPDATE per heartbeat. When a
runner dies its leases run out and any other runner takes its jobs over: jobs with a request id
are polled (never resubmitted), jobs in ``downloading`` are downloaded, and jobs caught in
``submitting`` follow the ``--on-unknown-submit`` policy of the runner that finds them.

The cap: ``claim_pending`` locks the campaign row (``SELECT ... FOR UPDATE`` on PostgreSQL; on
SQLite one writer at a time already serialises it), counts the campaign's jobs in flight (every
job RunComfy may be working on for us, whoever submitted it, plus pending jobs claimed under a
live lease, which are about to be), and claims at most ``cap - in_flight`` pending rows with
``FOR UPDATE SKIP LOCKED``, in short transactions. All runners together therefore never have
more than ``cap`` jobs submitted-and-unfinished at RunComfy.
"""

from __future__ import annotations

from collections.abc import Collection
from datetime import datetime, timedelta
from typing import TYPE_CHECKING

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from batchrun.domain import Job
from batchrun.states import JobState
from batchrun.store.models import campaigns, events, jobs
from batchrun.store.rows import to_job

if TYPE_CHECKING:  # pragma: no cover
    from batchrun.store.repository import Store

#: jobs RunComfy has (or may have) for us whatever their lease says
_AT_RUNCOMFY = (JobState.QUEUED.value, JobState.RUNNING.value)
#: states a runner holds a lease on while it works on them
_LEASED = (
    JobState.PENDING.value,
    JobState.SUBMITTING.value,
    JobState.QUEUED.value,
    JobState.RUNNING.value,
    JobState.DOWNLOADING.value,
)


class Leases:
    """Mixed into ``Store``: everything about who works on which job."""

    def in_flight(self: Store, campaign_id: int) -> int:
        """Jobs counted against the campaign-wide cap right now."""
        with self._read() as c:
            return self._in_flight(c, campaign_id, self._now())

    def _in_flight(self: Store, c: Connection, campaign_id: int, now: datetime) -> int:
        return int(c.execute(_IN_FLIGHT, {
            "flight_campaign": campaign_id, "now": now, "at_runcomfy": list(_AT_RUNCOMFY),
            "submitting": JobState.SUBMITTING.value, "pending": JobState.PENDING.value,
        }).scalar_one())

    def claim_pending(
        self: Store,
        campaign_id: int,
        runner_id: str,
        *,
        limit: int,
        cap: int,
        lease_seconds: float,
        exclude: Collection[int] = (),
    ) -> list[Job]:
        """Claim up to ``limit`` pending jobs (oldest first) without the campaign passing ``cap`` in flight."""
        if limit <= 0:
            return []
        now = self._now()
        with self._write() as c:
            if c.dialect.name == "postgresql":
                # serialise claimers of this campaign: the count below must not go stale before the
                # UPDATE (SQLite's write transaction, BEGIN IMMEDIATE, serialises them already)
                c.execute(_LOCK_CAMPAIGN, {"campaign_id": campaign_id})
            room = min(limit, cap - self._in_flight(c, campaign_id, now))
            if room <= 0:
                return []
            statement = _CLAIM if not exclude else _claim_statement(exclude)
            rows = c.execute(statement, {
                "claim_campaign": campaign_id, "pending": JobState.PENDING.value, "now": now, "room": room,
                "claim_runner": runner_id, "lease_until": now + timedelta(seconds=lease_seconds),
            }).all()
            return sorted((to_job(r) for r in rows), key=lambda job: job.id)

    def unclaim(self: Store, job_ids: Collection[int], runner_id: str) -> None:
        """Give back claimed jobs this runner will not submit after all (they stay pending)."""
        if not job_ids:
            return
        with self._write() as c:
            c.execute(
                sa.update(jobs)
                .where(jobs.c.id.in_(list(job_ids)), jobs.c.runner_id == runner_id,
                       jobs.c.state == JobState.PENDING.value)
                .values(runner_id=None, lease_expires_at=None)
            )

    def renew_leases(self: Store, runner_id: str, *, lease_seconds: float) -> int:
        """Extend every lease this runner holds (one statement per heartbeat); returns how many."""
        now = self._now()
        with self._write() as c:
            result = c.execute(
                sa.update(jobs)
                .where(jobs.c.runner_id == runner_id, jobs.c.state.in_(_LEASED))
                .values(lease_expires_at=now + timedelta(seconds=lease_seconds))
            )
            return int(result.rowcount or 0)

    def take_over(
        self: Store,
        campaign_id: int,
        runner_id: str,
        *,
        lease_seconds: float,
        states: Collection[JobState],
        force: bool = False,
        include_unowned: bool = True,
        limit: int = 10_000,
    ) -> list[Job]:
        """Take the campaign's jobs in ``states`` whose lease ran out (or that nobody holds).

        ``force`` takes them whatever their lease says: for a runner that knows it is alone (it
        holds the SQLite run lock), so a restart after kill -9 does not wait for old leases.
        ``include_unowned`` also takes jobs nobody holds (held submissions, rows from before
        leases): a runner does that when it starts, not at every heartbeat.
        The jobs of superseded revisions are included: RunComfy still works on them.
        """
        now = self._now()
        with self._write() as c:
            owner = sa.or_(jobs.c.runner_id.is_(None), jobs.c.runner_id != runner_id)
            if force:
                owner = sa.true()  # alone on the database: everything left over is ours now
            elif not include_unowned:
                owner = sa.and_(jobs.c.runner_id.is_not(None), jobs.c.runner_id != runner_id)
            query = sa.select(jobs.c.id).where(
                jobs.c.campaign_id == campaign_id,
                jobs.c.state.in_([JobState(s).value for s in states]),
                owner,
            )
            if not force:
                query = query.where(sa.or_(jobs.c.lease_expires_at.is_(None), jobs.c.lease_expires_at <= now))
            ids = [r[0] for r in c.execute(query.order_by(jobs.c.id).limit(limit).with_for_update(skip_locked=True))]
            if not ids:
                return []
            previous = dict(c.execute(sa.select(jobs.c.id, jobs.c.runner_id).where(jobs.c.id.in_(ids))).all())
            c.execute(
                sa.update(jobs)
                .where(jobs.c.id.in_(ids))
                .values(runner_id=runner_id, lease_expires_at=now + timedelta(seconds=lease_seconds))
            )
            moved = [
                {"job_id": job_id, "at": now, "kind": "taken_over", "from_state": None, "to_state": None,
                 "detail": {"from_runner": previous[job_id], "by_runner": runner_id}}
                for job_id in ids
                if previous.get(job_id) is not None
            ]
            if moved:
                c.execute(sa.insert(events), moved)
            return [to_job(r) for r in c.execute(sa.select(jobs).where(jobs.c.id.in_(ids)).order_by(jobs.c.id))]

    def release_claims(self: Store, campaign_id: int) -> int:
        """Drop every claim on the campaign's pending jobs (for a runner alone on the database:
        claims left by a crashed run would otherwise hold capacity until their leases ran out)."""
        with self._write() as c:
            result = c.execute(
                sa.update(jobs)
                .where(jobs.c.campaign_id == campaign_id, jobs.c.state == JobState.PENDING.value,
                       jobs.c.runner_id.is_not(None))
                .values(runner_id=None, lease_expires_at=None)
            )
            return int(result.rowcount or 0)

    def release(self: Store, job_id: int) -> None:
        """Nobody holds this job any more (a held submission: it must not keep a lease, or count)."""
        with self._write() as c:
            c.execute(sa.update(jobs).where(jobs.c.id == job_id).values(runner_id=None, lease_expires_at=None))

    def has_pending(
        self: Store, campaign_id: int, *, besides: str | None = None, exclude: Collection[int] = ()
    ) -> bool:
        """Whether an active job of the campaign is pending, other than those ``besides`` has claimed
        under a live lease and the ids in ``exclude``."""
        query = sa.select(jobs.c.id).where(
            jobs.c.campaign_id == campaign_id, jobs.c.superseded_at.is_(None), jobs.c.state == JobState.PENDING.value
        )
        if besides is not None:
            query = query.where(
                sa.or_(jobs.c.runner_id.is_(None), jobs.c.runner_id != besides, jobs.c.lease_expires_at <= self._now())
            )
        if exclude:
            query = query.where(jobs.c.id.not_in(list(exclude)))
        with self._read() as c:
            return c.execute(query.limit(1)).first() is not None

    def release_runner(self: Store, runner_id: str) -> None:
        """On a clean exit: give back claimed pending jobs and drop this runner's leases."""
        with self._write() as c:
            c.execute(
                sa.update(jobs)
                .where(jobs.c.runner_id == runner_id, jobs.c.state == JobState.PENDING.value)
                .values(runner_id=None, lease_expires_at=None)
            )
            c.execute(
                sa.update(jobs)
                .where(jobs.c.runner_id == runner_id)
                .values(lease_expires_at=self._now())
            )

    def unfinished_elsewhere(self: Store, campaign_id: int, runner_id: str) -> int:
        """Jobs other runners hold under a live lease (a survivor waits for them: their runner may die)."""
        now = self._now()
        with self._read() as c:
            return int(
                c.execute(
                    sa.select(sa.func.count()).where(
                        jobs.c.campaign_id == campaign_id,
                        jobs.c.runner_id.is_not(None),
                        jobs.c.runner_id != runner_id,
                        jobs.c.lease_expires_at > now,
                        jobs.c.state.in_(_LEASED),
                    )
                ).scalar_one()
            )


def _claim_statement(exclude: Collection[int] = ()) -> sa.Update:
    """Claim the oldest ``:room`` unclaimed pending jobs in one statement, returning them.

    The inner SELECT locks its rows with SKIP LOCKED on PostgreSQL, so concurrent claimers take
    different jobs; on SQLite the write transaction is already exclusive.
    """
    candidates = (
        sa.select(jobs.c.id)
        .where(
            jobs.c.campaign_id == sa.bindparam("claim_campaign"),
            jobs.c.superseded_at.is_(None),
            jobs.c.state == sa.bindparam("pending"),
            sa.or_(jobs.c.runner_id.is_(None), jobs.c.lease_expires_at <= sa.bindparam("now")),
            *([jobs.c.id.not_in(list(exclude))] if exclude else []),
        )
        .order_by(jobs.c.id)
        .limit(sa.bindparam("room", type_=sa.Integer))
        .with_for_update(skip_locked=True)
    )
    return (
        sa.update(jobs)
        .where(jobs.c.id.in_(candidates.scalar_subquery()))
        .values(runner_id=sa.bindparam("claim_runner"), lease_expires_at=sa.bindparam("lease_until"))
        .returning(*jobs.c)
    )


#: built once: building the statement cost more than running it
_CLAIM = _claim_statement()
_LOCK_CAMPAIGN = sa.select(campaigns.c.id).where(campaigns.c.id == sa.bindparam("campaign_id")).with_for_update()


def _count(*where: sa.ColumnElement[bool]) -> sa.ScalarSelect[int]:
    return sa.select(sa.func.count()).select_from(jobs).where(
        jobs.c.campaign_id == sa.bindparam("flight_campaign"), *where
    ).scalar_subquery()


#: The campaign's jobs counted against the cap, as three counts that each read one range of
#: ``ix_jobs_campaign_id_state(_lease)``: every job RunComfy has (or may have) for us; submits
#: under way under a live lease (a held one, whose lease ran out, may or may not be at RunComfy:
#: it is reported and no longer counted, or the campaign would stall on it); pending jobs claimed
#: under a live lease, about to be submitted. One OR over the three read every job of the
#: campaign instead, on every claim.
_IN_FLIGHT = sa.select(
    _count(jobs.c.state.in_(sa.bindparam("at_runcomfy", expanding=True)))
    + _count(jobs.c.state == sa.bindparam("submitting"), jobs.c.lease_expires_at > sa.bindparam("now"))
    + _count(jobs.c.state == sa.bindparam("pending"), jobs.c.lease_expires_at > sa.bindparam("now"),
             jobs.c.runner_id.is_not(None))
)

