"""Writing a plan into the store (a ``Store`` mixin): new jobs, new revisions of changed ones.

What to write is decided by the pure helpers of ``batchrun.store.planning``; this module only
speaks SQL, one page of rows per statement.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping, Sequence
from datetime import datetime
from itertools import islice
from typing import TYPE_CHECKING, Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from batchrun.domain import JobSpec
from batchrun.states import JobState
from batchrun.store.errors import StaleJobError
from batchrun.store.models import campaigns, events, jobs
from batchrun.store.planning import PAGE, Active, PlanCounts, Tally, new_row
from batchrun.store.types import UTCDateTime

if TYPE_CHECKING:  # pragma: no cover
    from batchrun.store.repository import Store


class PlanWriter:
    """Mixed into ``Store``: ``preview_plan`` and ``apply_plan``."""

    def _load_active(self: Store, c: Connection, campaign_id: int) -> dict[str, Active]:
        query = sa.select(
            jobs.c.key, jobs.c.id, jobs.c.revision, jobs.c.fingerprint, jobs.c.output_name, jobs.c.state,
            jobs.c.output_path, jobs.c.size,
        ).where(jobs.c.campaign_id == campaign_id, self._active)
        return {
            key: Active(id_, revision, fp, name, JobState(state), path, size)
            for key, id_, revision, fp, name, state, path, size in c.execute(query)
        }

    def preview_plan(self: Store, campaign_id: int, specs: Iterable[JobSpec]) -> PlanCounts:
        """What ``apply_plan`` would do, without writing anything."""
        with self._read() as c:
            active = self._load_active(c, campaign_id)
        tally = Tally(len(active))
        for spec in specs:
            tally.count(spec, active.get(spec.key))
        return tally.result(removed=len(_removable(tally.unlisted(active))))

    def apply_plan(
        self,
        campaign_id: int,
        specs: Iterable[JobSpec],
        *,
        cost: Callable[[JobSpec], float | None] = lambda spec: None,
    ) -> PlanCounts:
        """Insert new jobs and new revisions of changed ones, all or nothing; never deletes.

        A job whose input is unchanged but whose output name changed (a new ``filename``
        template, a ``takes`` change that adds ``-t1``) keeps its row and takes the new name:
        it is not generated, nor paid for, again; ``PlanCounts.moves`` lists the done ones, whose
        files the caller moves.

        A changed job keeps its old row (``superseded_at`` set); a pending old row is cancelled,
        an in-flight or done one keeps its state so what was paid for is still finished and kept.
        A pending job the manifest no longer lists is cancelled and retired the same way (it
        would otherwise be submitted and paid for); if its key comes back, it comes back as a
        new revision. In-flight and done jobs the manifest no longer lists are left as they are.
        """
        now = self._now()
        with self._write() as c:
            # runners started together plan the same campaign: one at a time (PostgreSQL; SQLite's
            # BEGIN IMMEDIATE already serialises), so the second finds the first one's rows
            c.execute(sa.select(campaigns.c.id).where(campaigns.c.id == campaign_id).with_for_update())
            active = self._load_active(c, campaign_id)
            retired = self._last_retired_revisions(c, campaign_id)
            tally = Tally(len(active))
            iterator = iter(specs)
            while page := list(islice(iterator, PAGE)):
                new_rows: list[dict[str, Any]] = []
                supersedes: dict[str, int] = {}
                superseded: list[tuple[Active, int]] = []
                renamed: list[tuple[Active, str]] = []
                for spec in page:
                    old = active.get(spec.key)
                    kind = tally.count(spec, old)
                    if kind == "unchanged":
                        continue
                    if kind == "renamed":
                        assert old is not None
                        renamed.append((old, spec.output_name))
                        continue
                    revision = retired.get(spec.key, 0) + 1
                    if kind == "changed":
                        assert old is not None
                        revision = old.revision + 1
                        superseded.append((old, revision))
                        supersedes[spec.key] = old.id
                    new_rows.append(new_row(spec, revision, cost(spec)))
                if renamed:
                    self._rename(c, renamed, now)
                if superseded:
                    self._supersede(c, superseded, now)
                if new_rows:
                    inserted = _insert_new_jobs(c, campaign_id, new_rows, now)
                    self._insert_planned_events(c, inserted, supersedes, now)
            removed = _removable(tally.unlisted(active))
            self._retire_pending(c, [(row.id, "removed from the manifest") for row in removed], now)
        return tally.result(removed=len(removed))

    @staticmethod
    def _last_retired_revisions(c: Connection, campaign_id: int) -> dict[str, int]:
        """The last revision of each key that has no active row (every revision of it retired)."""
        rows = c.execute(
            sa.select(jobs.c.key, sa.func.max(jobs.c.revision))
            .where(jobs.c.campaign_id == campaign_id, jobs.c.superseded_at.is_not(None))
            .group_by(jobs.c.key)
        )
        return {key: int(revision) for key, revision in rows}

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

    @staticmethod
    def _rename(c: Connection, rows: list[tuple[Active, str]], now: datetime) -> None:
        """Give jobs whose input is unchanged their new output name, whatever their state (one
        executemany): a pending or in-flight job downloads under it, a done one keeps its row."""
        bind = sa.bindparam
        c.execute(
            sa.update(jobs).where(jobs.c.id == bind("old_id")).values(output_name=bind("new_name"), updated_at=now),
            [{"old_id": old.id, "new_name": name} for old, name in rows],
        )
        c.execute(
            sa.insert(events).values(at=now, kind="renamed", from_state=None, to_state=None),
            [{"job_id": old.id, "detail": {"from": old.output_name, "to": name}} for old, name in rows],
        )

    def _supersede(self: Store, c: Connection, rows: list[tuple[Active, int]], now: datetime) -> None:
        """Mark old revisions superseded (one executemany); pending ones are cancelled too."""
        bind = sa.bindparam
        keep = [(old.id, revision) for old, revision in rows if old.state is not JobState.PENDING]
        cancel = [(old.id, f"superseded by revision {revision}") for old, revision in rows if old.state is JobState.PENDING]
        if keep:  # in flight or finished: it keeps its state, so what was paid for is still collected
            c.execute(
                sa.update(jobs).where(jobs.c.id == bind("old_id")).values(superseded_at=now, updated_at=now),
                [{"old_id": old_id} for old_id, _ in keep],
            )
            c.execute(
                sa.insert(events).values(at=now, kind="superseded", from_state=None, to_state=None),
                [{"job_id": old_id, "detail": {"by_revision": revision}} for old_id, revision in keep],
            )
        self._retire_pending(c, cancel, now)

    @staticmethod
    def _retire_pending(c: Connection, cancel: Sequence[tuple[int, str]], now: datetime) -> None:
        """pending -> cancelled and superseded (one executemany), each with its reason."""
        if not cancel:
            return
        bind = sa.bindparam
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
            [{"old_id": old_id, "reason": reason} for old_id, reason in cancel],
        )
        if result.rowcount != len(cancel):  # a runner moved one since we read it: plan again
            raise StaleJobError(cancel[0][0], {JobState.PENDING}, None)
        c.execute(
            sa.insert(events),
            [
                {
                    "job_id": old_id,
                    "at": now,
                    "kind": "transition",
                    "from_state": JobState.PENDING.value,
                    "to_state": JobState.CANCELLED.value,
                    "detail": {"reason": reason},
                }
                for old_id, reason in cancel
            ],
        )


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


def _removable(rows: Iterable[Active]) -> list[Active]:
    """Of the rows the manifest no longer lists, those never sent: they are cancelled, not submitted."""
    return [row for row in rows if row.state is JobState.PENDING]
