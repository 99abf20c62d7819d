"""The store: opening databases safely, idempotent planning, and recorded state transitions."""

from __future__ import annotations

import json
import os
import sqlite3
import stat
from collections.abc import Callable, Iterator
from datetime import datetime, timedelta
from pathlib import Path

import pytest
import sqlalchemy as sa
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from batchrun.domain import JobSpec
from batchrun.errors import BatchrunError, DatabaseBusyError, DatabaseError
from batchrun.states import JobState
from batchrun.store import StaleJobError, Store, open_store, resolve_db_url
from batchrun.store.models import jobs
from storefixtures import FakeClock

Spec = Callable[..., JobSpec]


# -- resolving and opening --------------------------------------------------------------------


def test_resolve_db_url(tmp_path: Path) -> None:
    """--db: none means a file beside the manifest; URLs pass through; paths become sqlite URLs."""
    manifest = tmp_path / "shots.yaml"
    assert resolve_db_url(None, manifest) == f"sqlite:///{tmp_path / 'shots.batchrun.db'}"
    assert resolve_db_url("postgresql+psycopg://u:p@h/db", manifest) == "postgresql+psycopg://u:p@h/db"
    assert resolve_db_url("rel/x.db", None) == f"sqlite:///{Path.cwd() / 'rel' / 'x.db'}"


def test_a_question_mark_or_percent_in_a_folder_name_is_part_of_the_database_path(tmp_path: Path) -> None:
    """`what?/demo.yaml` keeps its database at `what?/demo.batchrun.db`: the path is escaped in the
    URL, not cut at the `?` (which opened `what`, a file in the parent folder) or decoded (`%41`)."""
    root = tmp_path / "root"
    for folder in ("what?", "v%41", "a b#c"):
        (root / folder).mkdir(parents=True)
        url = resolve_db_url(None, root / folder / "demo.yaml")
        with open_store(url) as store:
            assert store.get_campaign("x") is None
        assert (root / folder / "demo.batchrun.db").is_file()
        url = resolve_db_url(str(root / folder / "runs?.db"), None)
        with open_store(url):
            pass
        assert (root / folder / "runs?.db").is_file()
    assert sorted(p.name for p in root.iterdir()) == ["a b#c", "v%41", "what?"]


@pytest.mark.parametrize("db", ["sqlite://", "sqlite:///:memory:", ":memory:"])
def test_an_in_memory_database_is_refused(db: str) -> None:
    """A database that forgets its jobs when batchrun exits would make the next run pay for every
    job again: --db of an in-memory SQLite is a one-line error."""
    with pytest.raises(DatabaseError, match="in-memory database forgets every job"):
        resolve_db_url(db, None)


def test_new_database_file_is_private_and_in_wal_mode(tmp_path: Path) -> None:
    """A new database (and its new directory) is readable by its owner only and uses WAL."""
    path = tmp_path / "new" / "dir" / "c.batchrun.db"
    store = open_store(f"sqlite:///{path}")
    try:
        assert stat.S_IMODE(path.stat().st_mode) == 0o600
        assert stat.S_IMODE(path.parent.stat().st_mode) == 0o700
        with store.engine.connect() as connection:
            assert connection.exec_driver_sql("PRAGMA journal_mode").scalar() == "wal"
            assert connection.exec_driver_sql("PRAGMA foreign_keys").scalar() == 1
            assert connection.exec_driver_sql("PRAGMA synchronous").scalar() == 1  # NORMAL
            assert connection.exec_driver_sql("PRAGMA busy_timeout").scalar() >= 5000
    finally:
        store.close()


def test_corrupt_file_is_refused_naming_it(tmp_path: Path) -> None:
    """A file of random bytes gives one DatabaseError line naming it, and is left untouched."""
    path = tmp_path / "garbage.db"
    data = os.urandom(4096)
    path.write_bytes(data)
    with pytest.raises(DatabaseError) as caught:
        open_store(f"sqlite:///{path}")
    assert str(caught.value) == f"{path}: file is not a database (not a SQLite file)"
    assert path.read_bytes() == data


def test_damaged_sqlite_file_is_refused(tmp_path: Path) -> None:
    """A SQLite header over garbage pages is still reported as not a database, not a traceback."""
    path = tmp_path / "damaged.db"
    path.write_bytes(b"SQLite format 3\x00" + os.urandom(8192))
    with pytest.raises(DatabaseError) as caught:
        open_store(f"sqlite:///{path}")
    assert str(path) in str(caught.value)
    assert "\n" not in str(caught.value)


def test_foreign_sqlite_database_is_refused(tmp_path: Path) -> None:
    """Pointing --db at some other application's SQLite file refuses it and changes nothing."""
    path = tmp_path / "other.db"
    with sqlite3.connect(path) as connection:
        connection.execute("CREATE TABLE songs (id INTEGER PRIMARY KEY, title TEXT)")
    with pytest.raises(DatabaseError) as caught:
        open_store(f"sqlite:///{path}")
    assert str(caught.value) == f"{path}: is not a batchrun database (it holds other tables: songs)"
    with sqlite3.connect(path) as connection:
        tables = {r[0] for r in connection.execute("SELECT name FROM sqlite_master WHERE type='table'")}
    assert tables == {"songs"}


@pytest.mark.parametrize(
    "url",
    ["mysql://user:secret@localhost/db", "nonsense", "sqlite:///{tmp}", "postgresql+psycopg://u:hunter2@127.0.0.1:1/x"],
)
def test_open_errors_are_one_line_user_errors(tmp_path: Path, url: str) -> None:
    """Unusable database URLs fail with a one-line DatabaseError that never shows a password."""
    url = url.format(tmp=tmp_path)  # the temporary directory itself: not a file
    with pytest.raises(BatchrunError) as caught:
        open_store(url)
    error = caught.value
    assert isinstance(error, DatabaseError)
    assert error.exit_code == 2
    assert "\n" not in str(error)
    assert "secret" not in str(error) and "hunter2" not in str(error)


def test_locked_database_is_a_busy_error(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """When another process holds the write lock too long, the user gets DatabaseBusyError, not a trace."""
    from batchrun.store import engine as store_engine

    monkeypatch.setattr(store_engine, "BUSY_TIMEOUT_MS", 50)
    path = tmp_path / "busy.db"
    store = open_store(f"sqlite:///{path}")
    other = sqlite3.connect(path, isolation_level=None)
    try:
        other.execute("BEGIN IMMEDIATE")
        with pytest.raises(DatabaseBusyError, match="locked by another batchrun process"):
            store.ensure_campaign("c", manifest_path="m", output_dir="o", settings={})
        assert store.list_campaigns() == []  # readers are not blocked (WAL)
    finally:
        other.close()
        store.close()


def test_naive_clock_is_refused(tmp_path: Path) -> None:
    """A clock without a timezone is a bug caught at the first write, never stored ambiguously."""
    store = open_store(f"sqlite:///{tmp_path / 'naive.db'}", now=lambda: datetime(2026, 1, 1))
    try:
        with pytest.raises(ValueError, match="timezone-aware"):
            store.ensure_campaign("c", manifest_path="m", output_dir="o", settings={})
    finally:
        store.close()


def test_store_repr_hides_password() -> None:
    """A store's repr names its database without the password."""
    engine = sa.create_engine("sqlite://")
    store = Store(engine, label=None)
    assert "sqlite://" in repr(store)
    store.close()
    url = sa.make_url("postgresql+psycopg://user:hunter2@db.example/x")
    assert "hunter2" not in repr(Store(sa.create_engine(url)))


# -- campaigns --------------------------------------------------------------------------------


def test_ensure_campaign_is_idempotent_and_updates_paths(any_store: Store, clock: FakeClock) -> None:
    """Running a campaign again finds it by name; moved manifest or output paths are recorded."""
    first = any_store.ensure_campaign("spring", manifest_path="a.yaml", output_dir="out", settings={"max": 3})
    clock.advance(10)
    again = any_store.ensure_campaign("spring", manifest_path="b.yaml", output_dir="out", settings={"max": 3})
    assert again.id == first.id
    assert again.manifest_path == "b.yaml"
    assert again.created_at == first.created_at == clock.current - timedelta(seconds=10)
    assert any_store.get_campaign("spring") == again
    assert any_store.get_campaign("autumn") is None
    assert [c.name for c in any_store.list_campaigns()] == ["spring"]


# -- planning ---------------------------------------------------------------------------------


@pytest.fixture
def campaign_id(any_store: Store) -> int:
    return any_store.ensure_campaign("c", manifest_path="m.yaml", output_dir="out", settings={}).id


def test_plan_counts_new_then_nothing_on_replan(any_store: Store, campaign_id: int, make_spec: Spec) -> None:
    """Planning the same manifest twice inserts its jobs once; the second plan writes nothing."""
    specs = [make_spec(f"k{i}") for i in range(5)]
    assert any_store.preview_plan(campaign_id, specs).new == 5
    assert any_store.count_by_state(campaign_id)[JobState.PENDING] == 0  # preview wrote nothing
    counts = any_store.apply_plan(campaign_id, iter(specs), cost=lambda spec: 0.84)
    assert (counts.new, counts.unchanged, counts.changed, counts.total) == (5, 0, 0, 5)
    again = any_store.apply_plan(campaign_id, specs, cost=lambda spec: 0.84)
    assert (again.new, again.unchanged, again.changed, again.done, again.total) == (0, 5, 0, 0, 5)
    with any_store.engine.connect() as connection:
        assert connection.execute(sa.select(sa.func.count()).select_from(jobs)).scalar() == 5
    job = any_store.get_job_by_key(campaign_id, "k3")
    assert job is not None and job.state is JobState.PENDING and job.estimated_cost == 0.84
    assert job.input == {"prompt": "prompt for k3", "duration": 5}
    assert [(e.kind, e.to_state) for e in any_store.history(job.id)] == [("planned", JobState.PENDING)]


def test_editing_one_job_supersedes_only_it(any_store: Store, campaign_id: int, make_spec: Spec) -> None:
    """Editing one prompt re-plans that job alone; the pending old revision is cancelled, kept."""
    any_store.apply_plan(campaign_id, [make_spec("a"), make_spec("b"), make_spec("c")])
    old = any_store.get_job_by_key(campaign_id, "b")
    assert old is not None
    counts = any_store.apply_plan(campaign_id, [make_spec("a"), make_spec("b", "a better prompt"), make_spec("c")])
    assert (counts.new, counts.unchanged, counts.changed, counts.superseded_keys) == (0, 2, 1, ("b",))
    new = any_store.get_job_by_key(campaign_id, "b")
    assert new is not None and new.revision == 2 and new.state is JobState.PENDING
    assert new.input["prompt"] == "a better prompt"
    kept = any_store.get_job(old.id)
    assert kept is not None and kept.state is JobState.CANCELLED
    assert kept.error == "superseded by revision 2"
    assert any_store.is_superseded(old.id) and not any_store.is_superseded(new.id)
    assert [(e.from_state, e.to_state) for e in any_store.history(old.id)][-1] == (JobState.PENDING, JobState.CANCELLED)
    assert any_store.history(new.id)[0].detail == {"supersedes": old.id}
    assert [j.id for j in any_store.pending_jobs(campaign_id, limit=10)] == sorted(
        [any_store.get_job_by_key(campaign_id, k).id for k in "abc"]  # type: ignore[union-attr]
    )
    assert any_store.count_by_state(campaign_id)[JobState.CANCELLED] == 0  # only active rows count


def test_changed_done_job_keeps_its_file_record(any_store: Store, campaign_id: int, make_spec: Spec) -> None:
    """A finished video stays done with its file fields when its manifest entry changes."""
    any_store.apply_plan(campaign_id, [make_spec("a")])
    job = _finish(any_store, any_store.get_job_by_key(campaign_id, "a").id)  # type: ignore[union-attr]
    counts = any_store.apply_plan(campaign_id, [make_spec("a")])
    assert (counts.unchanged, counts.done) == (1, 1)
    counts = any_store.apply_plan(campaign_id, [make_spec("a", "edited", output_name="renamed.mp4")])
    assert counts.changed == 1
    kept = any_store.get_job(job.id)
    assert kept is not None and kept.state is JobState.DONE
    assert (kept.output_path, kept.size, kept.sha256) == ("out/a.mp4", 10, "ab" * 32)
    assert any_store.find_by_output_path("out/a.mp4") == [kept]
    assert any_store.history(job.id)[-1].kind == "superseded"
    assert any_store.history(job.id)[-1].detail == {"by_revision": 2}
    active = any_store.get_job_by_key(campaign_id, "a")
    assert active is not None and active.revision == 2 and active.output_name == "renamed.mp4"
    moved = any_store.update_output_path(job.id, "out/a.rev1.mp4")
    assert moved.output_path == "out/a.rev1.mp4" and moved.state is JobState.DONE
    assert any_store.find_by_output_path("out/a.mp4") == []


def test_a_new_output_name_alone_renames_the_job_and_never_generates_it_again(
    any_store: Store, campaign_id: int, make_spec: Spec
) -> None:
    """Same input, new file name (a new filename template, `takes` adding -t1): the row keeps its
    state, revision and request, takes the new name, and a done one is listed for its file's move."""
    any_store.apply_plan(campaign_id, [make_spec("a"), make_spec("b")])
    done = _finish(any_store, any_store.get_job_by_key(campaign_id, "a").id)  # type: ignore[union-attr]
    pending = any_store.get_job_by_key(campaign_id, "b")
    counts = any_store.apply_plan(
        campaign_id, [make_spec("a", output_name="new-a.mp4"), make_spec("b", output_name="new-b.mp4")]
    )
    assert (counts.renamed, counts.changed, counts.new) == (2, 0, 0)
    assert [(m.job_id, m.output_path, m.new_name, m.size) for m in counts.moves] == [
        (done.id, "out/a.mp4", "new-a.mp4", 10)]
    a, b = any_store.get_job(done.id), any_store.get_job(pending.id)  # type: ignore[union-attr]
    assert (a.state, a.revision, a.output_name, a.output_path) == (JobState.DONE, 1, "new-a.mp4", "out/a.mp4")
    assert (b.state, b.revision, b.output_name) == (JobState.PENDING, 1, "new-b.mp4")
    assert any_store.history(done.id)[-1].detail == {"from": "a.mp4", "to": "new-a.mp4"}
    again = any_store.apply_plan(campaign_id, [make_spec("a", output_name="new-a.mp4"), make_spec("b", output_name="new-b.mp4")])
    assert (again.unchanged, again.renamed, again.done) == (2, 0, 1)


def test_in_flight_old_revision_stays_in_flight(any_store: Store, campaign_id: int, make_spec: Spec) -> None:
    """A job already at RunComfy keeps its state when superseded, so its paid result is collected."""
    any_store.apply_plan(campaign_id, [make_spec("a")])
    old = any_store.get_job_by_key(campaign_id, "a")
    assert old is not None
    any_store.begin_submit(old.id)
    any_store.record_submission(old.id, "req-1")
    any_store.apply_plan(campaign_id, [make_spec("a", "edited")])
    queued = any_store.jobs_in_states(campaign_id, [JobState.QUEUED])
    assert [j.id for j in queued] == [old.id]
    assert any_store.jobs_in_states(campaign_id, [JobState.QUEUED], include_superseded=False) == []


def test_jobs_dropped_from_the_manifest_are_never_submitted(any_store: Store, campaign_id: int, make_spec: Spec) -> None:
    """A dropped pending job is cancelled and retired (nothing claims it); a dropped done job is kept."""
    any_store.apply_plan(campaign_id, [make_spec("a"), make_spec("b"), make_spec("c")])
    _finish(any_store, any_store.get_job_by_key(campaign_id, "c").id)
    dropped = any_store.get_job_by_key(campaign_id, "b")
    assert any_store.preview_plan(campaign_id, [make_spec("a")]).removed == 1
    counts = any_store.apply_plan(campaign_id, [make_spec("a")])
    assert (counts.removed, counts.orphaned) == (1, 1)
    assert any_store.get_job_by_key(campaign_id, "b") is None  # no active row: not counted, not claimed
    retired = any_store.get_job(dropped.id)
    assert retired.state is JobState.CANCELLED and retired.error == "removed from the manifest"
    assert any_store.get_job_by_key(campaign_id, "c").state is JobState.DONE  # paid for: kept
    claimed = any_store.claim_pending(campaign_id, "r", limit=10, cap=10, lease_seconds=30)
    assert [job.key for job in claimed] == ["a"]


def test_a_dropped_job_that_comes_back_is_planned_as_its_next_revision(
    any_store: Store, campaign_id: int, make_spec: Spec
) -> None:
    """Listing a removed key again plans it anew (revision 2), keeping the removed row's history."""
    any_store.apply_plan(campaign_id, [make_spec("a"), make_spec("b")])
    first = any_store.get_job_by_key(campaign_id, "b")
    any_store.apply_plan(campaign_id, [make_spec("a")])
    counts = any_store.apply_plan(campaign_id, [make_spec("a"), make_spec("b")])
    assert (counts.new, counts.unchanged) == (1, 1)
    back = any_store.get_job_by_key(campaign_id, "b")
    assert back.revision == 2 and back.state is JobState.PENDING and back.id != first.id
    assert [job.revision for job in any_store.job_revisions(campaign_id, "b")] == [1, 2]


def test_apply_plan_is_all_or_nothing(any_store: Store, campaign_id: int, make_spec: Spec) -> None:
    """A plan that fails part-way (here: the manifest iterator raises) leaves the database as it was."""
    any_store.apply_plan(campaign_id, [make_spec("k0", "original")])

    def specs() -> Iterator[JobSpec]:
        yield make_spec("k0", "changed")
        for i in range(1, 2500):  # several pages already sent to the database
            yield make_spec(f"k{i}")
        raise RuntimeError("manifest reader crashed")

    with pytest.raises(RuntimeError, match="crashed"):
        any_store.apply_plan(campaign_id, specs())
    with any_store.engine.connect() as connection:
        assert connection.execute(sa.select(sa.func.count()).select_from(jobs)).scalar() == 1
    job = any_store.get_job_by_key(campaign_id, "k0")
    assert job is not None and job.revision == 1 and job.input["prompt"] == "original"
    assert len(any_store.history(job.id)) == 1


def test_duplicate_keys_in_one_plan_are_a_bug(any_store: Store, campaign_id: int, make_spec: Spec) -> None:
    """Two specs with one key in the same plan are refused before anything is written."""
    with pytest.raises(ValueError, match="twice"):
        any_store.apply_plan(campaign_id, [make_spec("a"), make_spec("a", "other")])
    assert any_store.get_job_by_key(campaign_id, "a") is None


_plans = st.lists(
    st.dictionaries(st.sampled_from("abcdef"), st.sampled_from(["p1", "p2", "p3"]), max_size=6),
    min_size=1,
    max_size=6,
)


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(plans=_plans, finish=st.sets(st.sampled_from("abcdef")))
def test_any_sequence_of_plans_keeps_one_active_row_per_key(
    store: Store, make_spec: Spec, plans: list[dict[str, str]], finish: set[str]
) -> None:
    """Whatever sequence of manifests is planned, each key listed (or dropped after it was sent)
    has exactly one active row, matching the last plan that listed it, and no row is ever lost."""
    cid = store.ensure_campaign(f"c{len(store.list_campaigns())}", manifest_path="m", output_dir="o", settings={}).id
    seen_rows: set[int] = set()
    latest: dict[str, str] = {}  # key -> prompt of the last plan listing it, for keys with an active row
    for plan in plans:
        for key in [k for k in latest if k not in plan]:  # dropped: kept only if no longer pending
            if store.get_job_by_key(cid, key).state is JobState.PENDING:
                del latest[key]
        store.apply_plan(cid, [make_spec(k, p) for k, p in sorted(plan.items())])
        latest.update(plan)
        for key in sorted(finish & set(plan)):  # some jobs get done between plans
            job = store.get_job_by_key(cid, key)
            assert job is not None
            if job.state is JobState.PENDING:
                _finish(store, job.id)
        with store.engine.connect() as connection:
            rows = connection.execute(
                sa.select(jobs.c.id, jobs.c.key, jobs.c.superseded_at, jobs.c.input).where(jobs.c.campaign_id == cid)
            ).all()
        ids = {r.id for r in rows}
        assert seen_rows <= ids
        seen_rows = ids
        active = [r for r in rows if r.superseded_at is None]
        assert sorted(r.key for r in active) == sorted(latest)
        assert {r.key: r.input["prompt"] for r in active} == latest


# -- transitions ------------------------------------------------------------------------------


def _finish(store: Store, job_id: int) -> object:
    store.begin_submit(job_id)
    store.record_submission(job_id, f"req-{job_id}")
    store.mark_running(job_id)
    store.mark_downloading(job_id, ["https://cdn.example/v.mp4"])
    job = store.get_job(job_id)
    assert job is not None
    return store.mark_done(job_id, output_path=f"out/{job.key}.mp4", size=10, sha256="ab" * 32)


def test_happy_path_records_every_step_with_clock_times(
    any_store: Store, campaign_id: int, make_spec: Spec, clock: FakeClock
) -> None:
    """A job's history lists each step in order, stamped by the store's clock, in UTC."""
    any_store.apply_plan(campaign_id, [make_spec("a")])
    job_id = any_store.get_job_by_key(campaign_id, "a").id  # type: ignore[union-attr]
    t0 = clock.current
    steps = [
        lambda: any_store.begin_submit(job_id),
        lambda: any_store.record_submission(job_id, "req-1"),
        lambda: any_store.mark_running(job_id),
        lambda: any_store.mark_downloading(job_id, ["https://cdn.example/a.mp4"]),
        lambda: any_store.mark_done(job_id, output_path="out/a.mp4", size=123, sha256="cd" * 32),
    ]
    for step in steps:
        clock.advance(1)
        step()
    job = any_store.get_job(job_id)
    assert job is not None
    assert job.state is JobState.DONE and job.attempts == 1 and job.request_id == "req-1"
    assert job.result_urls == ("https://cdn.example/a.mp4",)
    assert job.submitted_at == t0 + timedelta(seconds=2)
    assert job.started_at == t0 + timedelta(seconds=3)
    assert job.finished_at == t0 + timedelta(seconds=4)
    assert job.updated_at == t0 + timedelta(seconds=5)
    assert job.updated_at.utcoffset() == timedelta(0)
    history = any_store.history(job_id)
    assert [(e.from_state, e.to_state) for e in history] == [
        (None, JobState.PENDING),
        (JobState.PENDING, JobState.SUBMITTING),
        (JobState.SUBMITTING, JobState.QUEUED),
        (JobState.QUEUED, JobState.RUNNING),
        (JobState.RUNNING, JobState.DOWNLOADING),
        (JobState.DOWNLOADING, JobState.DONE),
    ]
    assert [e.at for e in history] == [t0 + timedelta(seconds=i) for i in range(6)]
    assert history[2].detail == {"request_id": "req-1"}


def test_stale_transition_is_refused_and_writes_nothing(any_store: Store, campaign_id: int, make_spec: Spec) -> None:
    """Moving a job from a state it is no longer in raises StaleJobError and records nothing."""
    any_store.apply_plan(campaign_id, [make_spec("a")])
    job_id = any_store.get_job_by_key(campaign_id, "a").id  # type: ignore[union-attr]
    with pytest.raises(StaleJobError) as caught:
        any_store.record_submission(job_id, "req-1")
    assert (caught.value.job_id, caught.value.expected, caught.value.actual) == (
        job_id, frozenset({JobState.SUBMITTING}), JobState.PENDING,
    )
    with pytest.raises(StaleJobError):
        any_store.mark_running(10_000)
    job = any_store.get_job(job_id)
    assert job is not None and job.state is JobState.PENDING and job.request_id is None
    assert len(any_store.history(job_id)) == 1


def test_illegal_transition_is_a_bug(any_store: Store, campaign_id: int, make_spec: Spec) -> None:
    """A move the state machine forbids raises ValueError (a programming error), writing nothing."""
    any_store.apply_plan(campaign_id, [make_spec("a")])
    job_id = any_store.get_job_by_key(campaign_id, "a").id  # type: ignore[union-attr]
    with pytest.raises(ValueError, match="illegal transition"):
        any_store.transition(job_id, JobState.PENDING, JobState.DONE)
    with pytest.raises(ValueError, match="cannot set"):
        any_store.transition(job_id, JobState.PENDING, JobState.SUBMITTING, key="other")
    assert any_store.get_job(job_id).state is JobState.PENDING  # type: ignore[union-attr]


def test_fail_then_reset_keeps_history(any_store: Store, campaign_id: int, make_spec: Spec) -> None:
    """Retrying a failed job clears its request and error but its history keeps every attempt."""
    any_store.apply_plan(campaign_id, [make_spec("a")])
    job_id = any_store.get_job_by_key(campaign_id, "a").id  # type: ignore[union-attr]
    any_store.begin_submit(job_id)
    any_store.record_submission(job_id, "req-1")
    failed = any_store.mark_failed(job_id, "RunComfy: failed")
    assert failed.state is JobState.FAILED and failed.error == "RunComfy: failed" and failed.finished_at
    with pytest.raises(StaleJobError):
        any_store.mark_failed(job_id, "again")
    any_store.record_event(job_id, "retry", {"by": "user"})
    job = any_store.reset_to_pending(job_id, "user retry")
    assert (job.state, job.request_id, job.error, job.result_urls, job.finished_at) == (
        JobState.PENDING, None, None, (), None,
    )
    assert job.attempts == 1
    again = any_store.begin_submit(job_id)
    assert again.attempts == 2
    kinds = [(e.kind, e.to_state) for e in any_store.history(job_id)]
    assert kinds == [
        ("planned", JobState.PENDING),
        ("transition", JobState.SUBMITTING),
        ("transition", JobState.QUEUED),
        ("transition", JobState.FAILED),
        ("retry", None),
        ("transition", JobState.PENDING),
        ("transition", JobState.SUBMITTING),
    ]
    assert any_store.history(job_id)[5].detail == {"reason": "user retry"}


def test_cancel_and_redownload(any_store: Store, campaign_id: int, make_spec: Spec) -> None:
    """A pending job can be cancelled; a done job whose file vanished can be downloaded again."""
    any_store.apply_plan(campaign_id, [make_spec("a"), make_spec("b")])
    a, b = (any_store.get_job_by_key(campaign_id, k).id for k in "ab")  # type: ignore[union-attr]
    assert any_store.mark_cancelled(a, "user cancelled").error == "user cancelled"
    done = _finish(any_store, b)
    first_finish = done.finished_at  # type: ignore[attr-defined]
    again = any_store.mark_downloading(b, ["https://cdn.example/v2.mp4"])
    assert again.state is JobState.DOWNLOADING and again.finished_at == first_finish


def test_pending_jobs_pages_in_id_order(any_store: Store, campaign_id: int, make_spec: Spec) -> None:
    """The runner can walk pending jobs page by page in a stable order."""
    any_store.apply_plan(campaign_id, [make_spec(f"k{i:02}") for i in range(7)])
    first = any_store.pending_jobs(campaign_id, limit=4)
    rest = any_store.pending_jobs(campaign_id, limit=4, after_id=first[-1].id)
    assert [j.key for j in first + rest] == [f"k{i:02}" for i in range(7)]
    any_store.begin_submit(first[0].id)
    counts = any_store.count_by_state(campaign_id)
    assert (counts[JobState.PENDING], counts[JobState.SUBMITTING], counts[JobState.DONE]) == (6, 1, 0)


def test_planning_many_jobs_goes_page_by_page_and_again_changes_nothing(store: Store, make_spec: Spec) -> None:
    """A plan of several pages (and a part page) stores every job once; planning it again writes nothing.
    (How long 100,000 jobs take is benchmark d., not a test: machines differ.)"""
    from batchrun.store.planning import PAGE

    total = 5 * PAGE + PAGE // 2
    cid = store.ensure_campaign("big", manifest_path="m", output_dir="o", settings={}).id
    counts = store.apply_plan(cid, (make_spec(f"shot-{i:06}-t1") for i in range(total)), cost=lambda spec: 0.84)
    assert counts.new == total
    again = store.apply_plan(cid, (make_spec(f"shot-{i:06}-t1") for i in range(total)), cost=lambda spec: 0.84)
    assert (again.new, again.unchanged, again.changed) == (0, total, 0)
    assert store.count_by_state(cid)[JobState.PENDING] == total


def test_planned_rows_are_stored_exactly_as_every_other_write(any_store: Store, campaign_id: int, make_spec: Spec) -> None:
    """The plan's bulk insert writes the same text as the rest of the store: a job planned and one
    moved by a transition compare and read back alike (SQLite compares datetimes as text)."""
    specs = [make_spec("a", "ünïcode prompt", cfg_scale=0.5), make_spec("b")]
    any_store.apply_plan(campaign_id, specs)
    (a, b) = sorted(any_store.jobs_in_states(campaign_id, [JobState.PENDING]), key=lambda job: job.key)
    assert a.input == specs[0].input and a.fingerprint == specs[0].fingerprint and a.revision == 1
    assert a.created_at == any_store._now() and a.created_at.tzinfo is not None
    with any_store.engine.connect() as c:
        stored = c.execute(sa.text("SELECT created_at, input FROM jobs WHERE key = 'a'")).one()
        written_by_sqlalchemy = c.execute(sa.text("SELECT created_at FROM campaigns WHERE id = :id"),
                                          {"id": campaign_id}).scalar_one()
    assert type(stored.created_at) is type(written_by_sqlalchemy)
    if isinstance(stored.created_at, str):  # SQLite: one text format, or ranges would compare wrong
        assert len(stored.created_at) == len(written_by_sqlalchemy)
    assert json.loads(stored.input) == specs[0].input
    assert [event.kind for event in any_store.history(a.id)] == ["planned"]
    assert [event.kind for event in any_store.history(b.id)] == ["planned"]


def test_the_run_lock_is_the_real_files_whatever_path_names_it(tmp_path: Path) -> None:
    """`run link.db` and `run real.db` are the same database: a symlink (or another path to the
    file) takes the same lock, so a second run is refused instead of writing alongside the first."""
    from batchrun.store.runlock import sqlite_run_lock

    (tmp_path / "data").mkdir()
    real = tmp_path / "data" / "real.db"
    real.touch()
    link = tmp_path / "link.db"
    link.symlink_to(real)
    with sqlite_run_lock(real):
        with pytest.raises(DatabaseBusyError, match="in use by another"):
            with sqlite_run_lock(link):
                pass
        with pytest.raises(DatabaseBusyError):
            with sqlite_run_lock(tmp_path / "data" / ".." / "data" / "real.db"):
                pass
    with sqlite_run_lock(link):  # released: the next run goes ahead
        pass
