"""The Store: the only place in batchrun that speaks SQL.

Workers and the CLI call named methods (``apply_plan``, ``begin_submit``, ``record_submission``,
``mark_done`` ...) and get frozen domain values back (``Job``, ``Event``); they never see a
Session or a row. Every write is one short transaction that records its own history: a state
change updates the job *and* appends an event, or does neither.

Hot paths use SQLAlchemy Core (executemany in pages, no ORM unit of work). One ``Store`` is used
from one thread at a time.

This module holds campaigns, queries and transitions; the ``Store`` mixes in the rest, one
module each: ``plan_writer`` (``apply_plan``), ``leases`` (claims, leases and the in-flight cap)
and ``reporting`` (what ``status``, ``cancel``, ``export`` and ``report`` read).
"""

from __future__ import annotations

from collections.abc import Callable, Collection, Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from datetime import datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.dialects.postgresql import insert as postgresql_insert
from sqlalchemy.engine import Connection, Engine

from batchrun.domain import Event, Job
from batchrun.states import TERMINAL, JobState, can_transition
from batchrun.store.dberrors import translate_errors
from batchrun.store.errors import BudgetReachedError, StaleJobError
from batchrun.store.leases import Leases
from batchrun.store.plan_writer import PlanWriter
from batchrun.store.models import campaigns, events, jobs
from batchrun.store.reporting import Reporting
from batchrun.store.rows import CampaignRecord, to_campaign, to_event, to_job
from batchrun.store.types import UTCDateTime, utcnow

_WRITE = "batchrun_write"  # same execution option as engine.WRITE (BEGIN IMMEDIATE on SQLite)
#: columns ``transition(**fields)`` may not set: identity, plan and state are not the caller's
_PROTECTED = frozenset({"id", "campaign_id", "key", "revision", "state", "created_at", "updated_at", "fingerprint"})
NOT_TERMINAL = frozenset(JobState) - TERMINAL


def _states(value: JobState | Collection[JobState]) -> frozenset[JobState]:
    if isinstance(value, str):
        return frozenset({JobState(value)})
    return frozenset(JobState(s) for s in value)


class Store(PlanWriter, Leases, Reporting):
    """Everything batchrun reads from and writes to its database."""

    def __init__(self, engine: Engine, *, now: Callable[[], datetime] = utcnow, label: str | None = None) -> None:
        self.engine = engine
        self.now = now
        self.label = label or engine.url.render_as_string(hide_password=True)
        self._active = jobs.c.superseded_at.is_(None)

    def __repr__(self) -> str:
        return f"Store({self.label!r})"

    def close(self) -> None:
        """Release every connection."""
        self.engine.dispose()

    def __enter__(self) -> Store:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- plumbing -----------------------------------------------------------------------

    @contextmanager
    def _read(self) -> Iterator[Connection]:
        with translate_errors(self.label), self.engine.connect() as connection:
            with connection.begin():
                yield connection

    @contextmanager
    def _write(self) -> Iterator[Connection]:
        with translate_errors(self.label), self.engine.connect() as connection:
            connection.execution_options(**{_WRITE: True})
            with connection.begin():
                yield connection

    @staticmethod
    def _lock_campaign_of(c: Connection, job_id: int) -> None:
        """On PostgreSQL, lock the job's campaign row before the job's: `plan` (apply_plan) and the
        claims lock the campaign first, so a transaction that charges the campaign after moving
        a job must too, or the two deadlock. (SQLite's BEGIN IMMEDIATE already serialises.)"""
        if c.dialect.name == "postgresql":
            c.execute(_LOCK_CAMPAIGN_OF_JOB, {"match_id": job_id})

    def _now(self) -> datetime:
        value = self.now()
        if value.tzinfo is None:
            raise ValueError("the store clock must return timezone-aware datetimes")
        return value

    # -- campaigns ----------------------------------------------------------------------

    def ensure_campaign(
        self, name: str, *, manifest_path: str, output_dir: str, settings: Mapping[str, Any]
    ) -> CampaignRecord:
        """The campaign called ``name``, created or updated with the given paths and settings."""
        now = self._now()
        values = {
            "manifest_path": str(manifest_path),
            "output_dir": str(output_dir),
            "settings": dict(settings),
            "updated_at": now,
        }
        with self._write() as c:
            row = c.execute(sa.select(campaigns).where(campaigns.c.name == name)).first()
            if row is None:
                # several runners may create it at the same moment: the loser takes the winner's row
                c.execute(
                    sa.insert(campaigns).values(name=name, created_at=now, **values).prefix_with("OR IGNORE", dialect="sqlite")
                    if c.dialect.name != "postgresql"
                    else postgresql_insert(campaigns).values(name=name, created_at=now, **values).on_conflict_do_nothing()
                )
            else:
                m = row._mapping
                if any(m[k] != v for k, v in values.items() if k != "updated_at"):
                    c.execute(sa.update(campaigns).where(campaigns.c.id == m["id"]).values(**values))
            row = c.execute(sa.select(campaigns).where(campaigns.c.name == name)).one()
        return to_campaign(row)

    def get_campaign(self, name: str) -> CampaignRecord | None:
        """The campaign called ``name``, if any."""
        with self._read() as c:
            row = c.execute(sa.select(campaigns).where(campaigns.c.name == name)).first()
        return to_campaign(row) if row is not None else None

    def list_campaigns(self) -> list[CampaignRecord]:
        """Every campaign, oldest first."""
        with self._read() as c:
            return [to_campaign(r) for r in c.execute(sa.select(campaigns).order_by(campaigns.c.id))]


    # -- queries ------------------------------------------------------------------------

    def get_job(self, job_id: int) -> Job | None:
        """The job with this id (any revision), if any."""
        with self._read() as c:
            row = c.execute(sa.select(jobs).where(jobs.c.id == job_id)).first()
        return to_job(row) if row is not None else None

    def get_job_by_key(self, campaign_id: int, key: str) -> Job | None:
        """The active (newest, not superseded) revision of the job with this key."""
        with self._read() as c:
            row = c.execute(
                sa.select(jobs).where(jobs.c.campaign_id == campaign_id, jobs.c.key == key, self._active)
            ).first()
        return to_job(row) if row is not None else None

    def job_revisions(self, campaign_id: int, key: str) -> list[Job]:
        """Every revision of the job with this key, oldest first."""
        with self._read() as c:
            rows = c.execute(
                sa.select(jobs).where(jobs.c.campaign_id == campaign_id, jobs.c.key == key).order_by(jobs.c.revision)
            )
            return [to_job(r) for r in rows]

    def is_superseded(self, job_id: int) -> bool:
        """True when a newer revision of this job's key exists (the row is kept, not planned)."""
        with self._read() as c:
            value = c.execute(sa.select(jobs.c.superseded_at).where(jobs.c.id == job_id)).first()
        return value is not None and value[0] is not None

    def pending_jobs(self, campaign_id: int, *, limit: int, after_id: int = 0) -> list[Job]:
        """Active pending jobs with id > ``after_id``, in id order, at most ``limit``."""
        with self._read() as c:
            rows = c.execute(
                sa.select(jobs)
                .where(
                    jobs.c.campaign_id == campaign_id,
                    jobs.c.state == JobState.PENDING.value,
                    self._active,
                    jobs.c.id > after_id,
                )
                .order_by(jobs.c.id)
                .limit(limit)
            )
            return [to_job(r) for r in rows]

    def jobs_in_states(
        self, campaign_id: int, states: Iterable[JobState], *, include_superseded: bool = True
    ) -> list[Job]:
        """Jobs of the campaign in any of ``states``, in id order (superseded rows too by default:
        an in-flight old revision must still be finished)."""
        query = sa.select(jobs).where(
            jobs.c.campaign_id == campaign_id, jobs.c.state.in_([JobState(s).value for s in states])
        )
        if not include_superseded:
            query = query.where(self._active)
        with self._read() as c:
            return [to_job(r) for r in c.execute(query.order_by(jobs.c.id))]

    def count_by_state(self, campaign_id: int) -> dict[JobState, int]:
        """How many active jobs are in each state (every state present, zero when none)."""
        counts = dict.fromkeys(JobState, 0)
        with self._read() as c:
            rows = c.execute(
                sa.select(jobs.c.state, sa.func.count())
                .where(jobs.c.campaign_id == campaign_id, self._active)
                .group_by(jobs.c.state)
            )
            for state, n in rows:
                counts[JobState(state)] = n
        return counts

    def committed_cost(self, campaign_id: int) -> float:
        """Estimated USD of every submission attempt of the campaign (all revisions, all runners).

        Each attempt counts, one resubmitted after a lost answer included, except those RunComfy
        certainly refused (``return_unsubmitted``): a budget checked against this
        (``begin_submit``) is never exceeded.
        """
        with self._read() as c:
            total = c.execute(_COMMITTED, {"campaign": campaign_id}).scalar()
        return float(total or 0.0)

    def history(self, job_id: int) -> list[Event]:
        """Everything that happened to a job, in order."""
        with self._read() as c:
            rows = c.execute(sa.select(events).where(events.c.job_id == job_id).order_by(events.c.id))
            return [to_event(r) for r in rows]

    def find_by_output_path(self, path: str) -> list[Job]:
        """Jobs (any campaign, any revision) whose recorded output file is ``path``."""
        with self._read() as c:
            rows = c.execute(sa.select(jobs).where(jobs.c.output_path == str(path)).order_by(jobs.c.id))
            return [to_job(r) for r in rows]

    # -- transitions --------------------------------------------------------------------

    def transition(
        self,
        job_id: int,
        expected: JobState | Collection[JobState],
        new: JobState,
        *,
        detail: Mapping[str, Any] | None = None,
        **fields: Any,
    ) -> Job:
        """Move a job from one of ``expected`` to ``new``, set ``fields`` and record the event.

        Raises ``StaleJobError`` when the job is not in an expected state (nothing written) and
        ``ValueError`` for a move the state machine forbids (a bug in the caller).
        """
        with self._write() as c:
            return self._transition(c, job_id, expected, new, detail, fields)

    def _transition(
        self,
        c: Connection,
        job_id: int,
        expected: JobState | Collection[JobState],
        new: JobState,
        detail: Mapping[str, Any] | None,
        fields: Mapping[str, Any],
    ) -> Job:
        new = JobState(new)
        wanted = _states(expected)
        bad = set(fields) - set(jobs.c.keys()) | (set(fields) & _PROTECTED)
        if bad:
            raise ValueError(f"transition cannot set {sorted(bad)}")
        now = self._now()
        values = {name: (value(now) if callable(value) else value) for name, value in fields.items()}
        values.update(state=new.value, updated_at=now)
        statement, params = _guarded_update(values, now)
        if len(wanted) == 1 and can_transition(only := next(iter(wanted)), new):
            # the hot path (one expected state, a legal move): the guarded UPDATE is the check, so
            # no SELECT first; the state is only read when it matched nothing, to name it
            row = c.execute(statement, {**params, "match_id": job_id, "match_state": only.value}).first()
            if row is None:
                current = c.execute(_STATE_OF, {"match_id": job_id}).scalar()
                raise StaleJobError(job_id, wanted, JobState(current) if current is not None else None)
            self._insert_event(c, job_id, now, "transition", only, new, detail or {})
            return to_job(row)
        current = c.execute(_STATE_OF_FOR_UPDATE, {"match_id": job_id}).scalar()
        actual = JobState(current) if current is not None else None
        if actual is None or actual not in wanted:
            raise StaleJobError(job_id, wanted, actual)
        if not can_transition(actual, new):
            raise ValueError(f"illegal transition for job {job_id}: {actual} -> {new}")
        row = c.execute(statement, {**params, "match_id": job_id, "match_state": actual.value}).one()
        self._insert_event(c, job_id, now, "transition", actual, new, detail or {})
        return to_job(row)

    @staticmethod
    def _insert_event(
        c: Connection,
        job_id: int,
        at: datetime,
        kind: str,
        from_state: JobState | None,
        to_state: JobState | None,
        detail: Mapping[str, Any],
    ) -> None:
        c.execute(  # one statement for every event (parameters, not .values()): compiled once
            _INSERT_EVENT,
            {
                "job_id": job_id,
                "at": at,
                "kind": kind,
                "from_state": from_state.value if from_state else None,
                "to_state": to_state.value if to_state else None,
                "detail": dict(detail),
            },
        )

    def begin_submit(self, job_id: int, *, budget: float | None = None) -> Job:
        """pending -> submitting, before the POST: a crash from here on is resolved by resume.

        The job's estimated cost is added to the campaign's committed spend in the same
        transaction. With a ``budget`` (USD), a job whose cost would take that spend past it, or
        whose price is unknown, raises ``BudgetReachedError`` and nothing is written. The check
        and the addition are one conditional UPDATE of the campaign row, so runners sharing a
        campaign never pass the budget together.
        """
        with self._write() as c:
            self._lock_campaign_of(c, job_id)
            job = self._transition(c, job_id, JobState.PENDING, JobState.SUBMITTING, None, {"attempts": _NEXT_ATTEMPT})
            cost = job.estimated_cost
            if budget is None:
                c.execute(_CHARGE, {"campaign": job.campaign_id, "cost": cost or 0.0})
                return job
            if cost is not None and c.execute(
                _CHARGE_WITHIN, {"campaign": job.campaign_id, "cost": cost, "budget": budget + _CENT_FRACTION}
            ).first():
                return job
            committed = c.execute(_COMMITTED, {"campaign": job.campaign_id}).scalar()
            raise BudgetReachedError(job_id, cost=cost, committed=float(committed or 0.0), budget=budget)

    def record_submission(self, job_id: int, request_id: str) -> Job:
        """submitting -> queued, right after RunComfy answered with a request id."""
        return self.transition(
            job_id,
            JobState.SUBMITTING,
            JobState.QUEUED,
            detail={"request_id": request_id},
            request_id=request_id,
            submitted_at=_at_now,
        )

    def mark_running(self, job_id: int) -> Job:
        """queued -> running (RunComfy started generating: billed from here)."""
        return self.transition(job_id, JobState.QUEUED, JobState.RUNNING, started_at=_at_now)

    def mark_downloading(
        self, job_id: int, result_urls: Sequence[str], *, from_state: JobState | None = None
    ) -> Job:
        """queued|running|done (or just ``from_state``, one statement fewer) -> downloading, with
        the result URLs RunComfy gave."""
        return self.transition(
            job_id,
            from_state or {JobState.QUEUED, JobState.RUNNING, JobState.DONE},
            JobState.DOWNLOADING,
            detail={"result_urls": list(result_urls)},
            result_urls=list(result_urls),
            finished_at=_KEEP_FINISHED,
        )

    def mark_done(
        self,
        job_id: int,
        *,
        output_path: str,
        size: int,
        sha256: str,
        downloaded: Sequence[Mapping[str, Any]] = (),
    ) -> Job:
        """downloading -> done, once the file is in place and verified.

        ``downloaded``: details of "downloaded" events to record first, in the same transaction
        (one commit per finished job instead of one per file plus one).
        """
        fields = {"output_path": str(output_path), "size": size, "sha256": sha256}
        with self._write() as c:
            for detail in downloaded:
                self._insert_event(c, job_id, self._now(), "downloaded", None, None, detail)
            return self._transition(c, job_id, JobState.DOWNLOADING, JobState.DONE, dict(fields), fields)

    def mark_failed(self, job_id: int, error: str, *, from_states: Collection[JobState] | None = None) -> Job:
        """Any non-terminal state (or one of ``from_states``) -> failed, with the reason."""
        return self.transition(
            job_id,
            from_states if from_states is not None else NOT_TERMINAL,
            JobState.FAILED,
            detail={"error": error},
            error=error,
            finished_at=_at_now,
        )

    def mark_cancelled(self, job_id: int, reason: str) -> Job:
        """pending|submitting|queued|running -> cancelled, with the reason."""
        return self.transition(
            job_id,
            {JobState.PENDING, JobState.SUBMITTING, JobState.QUEUED, JobState.RUNNING},
            JobState.CANCELLED,
            detail={"reason": reason},
            error=reason,
            finished_at=_at_now,
        )

    def reset_to_pending(self, job_id: int, reason: str) -> Job:
        """submitting|failed|cancelled|done -> pending, forgetting the request and its outputs
        (the events keep them)."""
        return self.transition(
            job_id,
            {JobState.SUBMITTING, JobState.FAILED, JobState.CANCELLED, JobState.DONE},
            JobState.PENDING,
            detail={"reason": reason},
            request_id=None,
            error=None,
            result_urls=[],
            output_path=None,
            size=None,
            sha256=None,
            submitted_at=None,
            started_at=None,
            finished_at=None,
        )

    def return_unsubmitted(self, job_id: int, reason: str) -> Job:
        """submitting -> pending when RunComfy certainly did not create the job (a 429, a 5xx, a
        connection that never opened, a refused token): the cost ``begin_submit`` charged is
        taken back off the campaign's committed spend in the same transaction."""
        with self._write() as c:
            self._lock_campaign_of(c, job_id)
            job = self._transition(c, job_id, JobState.SUBMITTING, JobState.PENDING, {"reason": reason}, {})
            if job.estimated_cost:
                c.execute(_CHARGE, {"campaign": job.campaign_id, "cost": -job.estimated_cost})
            return job

    def record_event(self, job_id: int, kind: str, detail: Mapping[str, Any] | None = None) -> None:
        """Record a fact that is not a state change (a retry, a download attempt, a poll summary)."""
        with self._write() as c:
            self._insert_event(c, job_id, self._now(), kind, None, None, detail or {})

    def update_output_path(self, job_id: int, new_path: str) -> Job:
        """Record that a job's file moved (an old revision's file set aside), keeping its state."""
        now = self._now()
        with self._write() as c:
            row = c.execute(
                sa.update(jobs)
                .where(jobs.c.id == job_id)
                .values(output_path=str(new_path), updated_at=now)
                .returning(*jobs.c)
            ).first()
            if row is None:
                raise StaleJobError(job_id, frozenset(JobState), None)
            self._insert_event(c, job_id, now, "moved", None, None, {"output_path": str(new_path)})
        return to_job(row)




_INSERT_EVENT = sa.insert(events)
_STATE_OF = sa.select(jobs.c.state).where(jobs.c.id == sa.bindparam("match_id"))
_STATE_OF_FOR_UPDATE = _STATE_OF.with_for_update()
_COMMITTED = sa.select(campaigns.c.committed_usd).where(campaigns.c.id == sa.bindparam("campaign"))
_LOCK_CAMPAIGN_OF_JOB = (
    sa.select(campaigns.c.id)
    .where(campaigns.c.id == sa.select(jobs.c.campaign_id).where(jobs.c.id == sa.bindparam("match_id")).scalar_subquery())
    .with_for_update()
)
_CHARGE = (
    sa.update(campaigns)
    .where(campaigns.c.id == sa.bindparam("campaign"))
    .values(committed_usd=campaigns.c.committed_usd + sa.bindparam("cost", type_=sa.Float()))
)
_CHARGE_WITHIN = _CHARGE.where(
    campaigns.c.committed_usd + sa.bindparam("cost", type_=sa.Float()) <= sa.bindparam("budget", type_=sa.Float())
).returning(campaigns.c.committed_usd)
#: slack for float sums in the budget check (far below a cent)
_CENT_FRACTION = 1e-9
#: SQL values of transitions, shared so the statements using them are built once
_NEXT_ATTEMPT = jobs.c.attempts + 1
_KEEP_FINISHED = sa.func.coalesce(jobs.c.finished_at, sa.bindparam("at_now", type_=UTCDateTime()))
_UPDATES: dict[tuple[Any, ...], Any] = {}


def _guarded_update(values: Mapping[str, Any], now: datetime) -> tuple[Any, dict[str, Any]]:
    """``UPDATE jobs SET <values> WHERE id = :match_id AND state = :match_state RETURNING *``,
    built once per shape (column names and shared SQL values) and reused: building and caching
    a statement per call cost more than executing it. Plain values travel as parameters."""
    clauses = tuple(id(v) for v in values.values() if isinstance(v, sa.ClauseElement))
    # only the shared SQL values above may be part of a key: a one-off expression's id can be reused
    cacheable = all(v is _NEXT_ATTEMPT or v is _KEEP_FINISHED for v in values.values() if isinstance(v, sa.ClauseElement))
    key = (tuple(values), clauses)
    statement = _UPDATES.get(key) if cacheable else None
    if statement is None:
        sets = {
            name: value if isinstance(value, sa.ClauseElement) else sa.bindparam(f"set_{name}", type_=jobs.c[name].type)
            for name, value in values.items()
        }
        statement = (
            sa.update(jobs)
            .where(jobs.c.id == sa.bindparam("match_id"), jobs.c.state == sa.bindparam("match_state"))
            .values(sets)
            .returning(*jobs.c)
        )
        if cacheable and len(_UPDATES) < 256:  # shapes are few
            _UPDATES[key] = statement
    params = {f"set_{name}": value for name, value in values.items() if not isinstance(value, sa.ClauseElement)}
    if any(value is _KEEP_FINISHED for value in values.values()):
        params["at_now"] = now
    return statement, params


def _at_now(now: datetime) -> datetime:
    return now
