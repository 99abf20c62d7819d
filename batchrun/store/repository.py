"""The Store: the only place in batchrun that speaks SQL.

Workers and the CLI call named methods (``apply_plan``, ``begin_submit``, ``record_submission``,
``mark_done`` ...) and get frozen domain values back (``Job``, ``Event``); they never see a
Session or a row. Every write is one short transaction that records its own history: a state
change updates the job *and* appends an event, or does neither.

Hot paths use SQLAlchemy Core (executemany in pages, no ORM unit of work). One ``Store`` is used
from one thread at a time.
"""

from __future__ import annotations

from collections.abc import Callable, Collection, Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from datetime import datetime
from itertools import islice
from typing import Any

import sqlalchemy as sa
from sqlalchemy.dialects.postgresql import insert as postgresql_insert
from sqlalchemy.engine import Connection, Engine

from batchrun.domain import Event, Job, JobSpec
from batchrun.errors import BatchrunError
from batchrun.overview import CampaignStats, ErrorGroup, InFlight
from batchrun.states import TERMINAL, JobState, can_transition
from batchrun.store.dberrors import translate_errors
from batchrun.store.leases import Leases
from batchrun.store.models import campaigns, events, jobs
from batchrun.store.planning import PAGE, Active, PlanCounts, Tally, new_row
from batchrun.store.rows import CampaignRecord, to_campaign, to_event, to_job
from batchrun.store.types import UTCDateTime, utcnow

_WRITE = "batchrun_write"  # same execution option as engine.WRITE (BEGIN IMMEDIATE on SQLite)
#: columns ``transition(**fields)`` may not set: identity, plan and state are not the caller's
_PROTECTED = frozenset({"id", "campaign_id", "key", "revision", "state", "created_at", "updated_at", "fingerprint"})
NOT_TERMINAL = frozenset(JobState) - TERMINAL


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


def _states(value: JobState | Collection[JobState]) -> frozenset[JobState]:
    if isinstance(value, str):
        return frozenset({JobState(value)})
    return frozenset(JobState(s) for s in value)


class Store(Leases):
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

    # -- planning -----------------------------------------------------------------------

    def _load_active(self, c: Connection, campaign_id: int) -> dict[str, Active]:
        query = sa.select(
            jobs.c.key, jobs.c.id, jobs.c.revision, jobs.c.fingerprint, jobs.c.output_name, jobs.c.state
        ).where(jobs.c.campaign_id == campaign_id, self._active)
        return {
            key: Active(id_, revision, fp, name, JobState(state))
            for key, id_, revision, fp, name, state in c.execute(query)
        }

    def preview_plan(self, campaign_id: int, specs: Iterable[JobSpec]) -> PlanCounts:
        """What ``apply_plan`` would do, without writing anything."""
        with self._read() as c:
            active = self._load_active(c, campaign_id)
        tally = Tally(len(active))
        for spec in specs:
            tally.count(spec, active.get(spec.key))
        return tally.result()

    def apply_plan(
        self,
        campaign_id: int,
        specs: Iterable[JobSpec],
        *,
        cost: Callable[[JobSpec], float | None] = lambda spec: None,
    ) -> PlanCounts:
        """Insert new jobs and new revisions of changed ones, all or nothing; never deletes.

        A changed job keeps its old row (``superseded_at`` set); a pending old row is cancelled,
        an in-flight or done one keeps its state so what was paid for is still finished and kept.
        """
        now = self._now()
        with self._write() as c:
            # runners started together plan the same campaign: one at a time (PostgreSQL; SQLite's
            # BEGIN IMMEDIATE already serialises), so the second finds the first one's rows
            c.execute(sa.select(campaigns.c.id).where(campaigns.c.id == campaign_id).with_for_update())
            active = self._load_active(c, campaign_id)
            tally = Tally(len(active))
            iterator = iter(specs)
            while page := list(islice(iterator, PAGE)):
                new_rows: list[dict[str, Any]] = []
                supersedes: dict[str, int] = {}
                superseded: list[tuple[Active, int]] = []
                for spec in page:
                    old = active.get(spec.key)
                    kind = tally.count(spec, old)
                    if kind == "unchanged":
                        continue
                    revision = 1
                    if kind == "changed":
                        assert old is not None
                        revision = old.revision + 1
                        superseded.append((old, revision))
                        supersedes[spec.key] = old.id
                    new_rows.append(new_row(spec, revision, cost(spec)))
                if superseded:
                    self._supersede(c, superseded, now)
                if new_rows:
                    inserted = _insert_new_jobs(c, campaign_id, new_rows, now)
                    self._insert_planned_events(c, inserted, supersedes, now)
        return tally.result()

    @staticmethod
    def _insert_planned_events(
        c: Connection, inserted: Sequence[tuple[int, str]], supersedes: Mapping[str, int], now: datetime
    ) -> None:
        """One "planned" event per inserted row; a new revision's names the row it supersedes."""
        fresh = [job_id for job_id, key in inserted if key not in supersedes]
        if fresh:  # one INSERT ... SELECT per page: no per-row parameter processing
            c.execute(
                sa.insert(events).from_select(
                    ["job_id", "at", "kind", "from_state", "to_state", "detail"],
                    sa.select(
                        jobs.c.id,
                        sa.literal(now, UTCDateTime()),
                        sa.literal("planned"),
                        sa.null(),
                        sa.literal(JobState.PENDING.value),
                        sa.literal("{}"),
                    ).where(jobs.c.id.in_(fresh)),
                )
            )
        revised = [(job_id, key) for job_id, key in inserted if key in supersedes]
        if revised:
            c.execute(
                sa.insert(events).values(at=now, kind="planned", from_state=None, to_state=JobState.PENDING.value),
                [{"job_id": job_id, "detail": {"supersedes": supersedes[key]}} for job_id, key in revised],
            )

    def _supersede(self, c: Connection, rows: list[tuple[Active, int]], now: datetime) -> None:
        """Mark old revisions superseded (one executemany); pending ones are cancelled too."""
        bind = sa.bindparam
        keep = [(old.id, revision) for old, revision in rows if old.state is not JobState.PENDING]
        cancel = [
            {"old_id": old.id, "reason": f"superseded by revision {revision}"}
            for old, revision in rows
            if old.state is JobState.PENDING
        ]
        if keep:  # in flight or finished: it keeps its state, so what was paid for is still collected
            c.execute(
                sa.update(jobs).where(jobs.c.id == bind("old_id")).values(superseded_at=now, updated_at=now),
                [{"old_id": old_id} for old_id, _ in keep],
            )
            c.execute(
                sa.insert(events).values(at=now, kind="superseded", from_state=None, to_state=None),
                [{"job_id": old_id, "detail": {"by_revision": revision}} for old_id, revision in keep],
            )
        if cancel:
            result = c.execute(
                sa.update(jobs)
                .where(jobs.c.id == bind("old_id"), jobs.c.state == JobState.PENDING.value)
                .values(
                    superseded_at=now,
                    updated_at=now,
                    finished_at=now,
                    state=JobState.CANCELLED.value,
                    error=bind("reason", type_=sa.Text()),
                ),
                cancel,
            )
            if result.rowcount != len(cancel):  # a runner moved one since we read it: plan again
                raise StaleJobError(cancel[0]["old_id"], {JobState.PENDING}, None)
            c.execute(
                sa.insert(events),
                [
                    {
                        "job_id": item["old_id"],
                        "at": now,
                        "kind": "transition",
                        "from_state": JobState.PENDING.value,
                        "to_state": JobState.CANCELLED.value,
                        "detail": {"reason": item["reason"]},
                    }
                    for item in cancel
                ],
            )

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

        Each attempt counts, even one RunComfy refused or one resubmitted after a lost answer:
        a budget checked against this (``begin_submit``) is never exceeded.
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

    def apply_transitions(
        self,
        items: Sequence[
            tuple[int, JobState | Collection[JobState], JobState, Mapping[str, Any] | None, Mapping[str, Any] | None]
        ],
    ) -> list[Job | None]:
        """Several transitions ``(job_id, expected, new, fields, detail)`` in one transaction.

        Returns, per item, the updated ``Job`` or ``None`` when it was stale (skipped). An illegal
        move raises ``ValueError`` and writes nothing at all.
        """
        results: list[Job | None] = []
        with self._write() as c:
            for job_id, expected, new, fields, detail in items:
                try:
                    results.append(self._transition(c, job_id, expected, new, detail, dict(fields or {})))
                except StaleJobError:
                    results.append(None)
        return results

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


    # -- reporting (status, cancel, retry, export) ------------------------------------------

    def campaign_stats(self, campaign_id: int, *, since: datetime) -> CampaignStats:
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

    def error_groups(self, campaign_id: int, *, limit: int = 10, examples: int = 3) -> list[ErrorGroup]:
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

    def superseded_ids(self, campaign_id: int) -> set[int]:
        """Ids of the campaign's superseded revisions (rows kept when a job was edited)."""
        with self._read() as c:
            return set(
                c.execute(
                    sa.select(jobs.c.id).where(jobs.c.campaign_id == campaign_id, jobs.c.superseded_at.is_not(None))
                ).scalars()
            )

    def jobs_by_keys(self, campaign_id: int, keys: Iterable[str]) -> dict[str, Job]:
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

    def cancel_pending(self, job_ids: Sequence[int], reason: str, *, page: int = 500) -> set[int]:
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

    def job_keys(self, campaign_id: int) -> list[str]:
        """Every active key of the campaign, in id order (for suggestions on a mistyped key)."""
        with self._read() as c:
            return list(
                c.execute(
                    sa.select(jobs.c.key).where(jobs.c.campaign_id == campaign_id, self._active).order_by(jobs.c.id)
                ).scalars()
            )


_INSERT_EVENT = sa.insert(events)
_STATE_OF = sa.select(jobs.c.state).where(jobs.c.id == sa.bindparam("match_id"))
_STATE_OF_FOR_UPDATE = _STATE_OF.with_for_update()
_COMMITTED = sa.select(campaigns.c.committed_usd).where(campaigns.c.id == sa.bindparam("campaign"))
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


#: placeholders of the drivers whose executemany the plan's insert calls directly
_PLACEHOLDERS = {"qmark": "?", "format": "%s", "pyformat": "%s"}


def _insert_new_jobs(
    c: Connection, campaign_id: int, new_rows: Sequence[Mapping[str, Any]], now: datetime
) -> list[tuple[int, str]]:
    """Insert one page of planned jobs; returns each new row's (id, key).

    One driver-level ``executemany``: every value still goes through its column's own bind
    processor (the stored text is exactly what SQLAlchemy writes: canonical JSON, its datetime
    format), but not through SQLAlchemy's per-row statement machinery, which was 75 of the
    110 us per row on a slow core (benchmark d.). The ids are read back by key and revision.
    A driver with another placeholder style takes the portable ``INSERT ... RETURNING``.
    """
    shared = {"campaign_id": campaign_id, "state": JobState.PENDING.value, "attempts": 0, "result_urls": [],
              "created_at": now, "updated_at": now}
    placeholder = _PLACEHOLDERS.get(c.dialect.paramstyle)
    if placeholder is None:  # pragma: no cover - SQLite and psycopg both have one above
        statement = sa.insert(jobs).values(**shared).returning(jobs.c.id, jobs.c.key)
        return [(job_id, key) for job_id, key in c.execute(statement, list(new_rows))]
    def processor(name: str) -> Callable[[Any], Any]:
        return jobs.c[name].type.bind_processor(c.dialect) or (lambda value: value)

    names = list(new_rows[0])
    processors = [processor(name) for name in names]
    tail = tuple(processor(name)(value) for name, value in shared.items())
    params = [tuple(process(row[name]) for name, process in zip(names, processors, strict=True)) + tail
              for row in new_rows]
    quote = c.dialect.identifier_preparer.quote
    columns = ", ".join(quote(name) for name in [*names, *shared])
    values = ", ".join([placeholder] * (len(names) + len(shared)))
    c.exec_driver_sql(f"INSERT INTO {quote(jobs.name)} ({columns}) VALUES ({values})", params)
    revision = {row["key"]: row["revision"] for row in new_rows}
    found = c.execute(
        sa.select(jobs.c.id, jobs.c.key, jobs.c.revision).where(
            jobs.c.campaign_id == campaign_id, jobs.c.key.in_(list(revision))
        )
    )
    return [(job_id, key) for job_id, key, rev in found if revision[key] == rev]
