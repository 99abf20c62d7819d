"""The schema migrations: shipped inside the package, and producing exactly the ORM metadata."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest
import sqlalchemy as sa
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory

import batchrun.migrations
from batchrun.errors import DatabaseError
from batchrun.store import open_store
from batchrun.store.engine import alembic_config, head_revision, migrations_path
from batchrun.store.models import metadata


def _diff(engine: sa.Engine) -> list[object]:
    with engine.connect() as connection:
        return compare_metadata(MigrationContext.configure(connection, opts={"compare_type": True}), metadata)


def test_blank_sqlite_upgrade_matches_models(tmp_path: Path) -> None:
    """Opening a blank SQLite file migrates it to exactly the schema the code expects."""
    store = open_store(f"sqlite:///{tmp_path / 'blank.db'}")
    try:
        assert _diff(store.engine) == []
    finally:
        store.close()


@pytest.mark.postgres
def test_blank_postgres_upgrade_matches_models(pg_url: str) -> None:
    """Opening a blank PostgreSQL schema migrates it to exactly the schema the code expects."""
    store = open_store(pg_url)
    try:
        assert _diff(store.engine) == []
        with store.engine.connect() as connection:
            assert connection.exec_driver_sql("SELECT version_num FROM alembic_version").scalar() == head_revision()
    finally:
        store.close()


def test_migrations_are_found_inside_the_package() -> None:
    """The migrations are located through the installed package, not the current checkout layout."""
    where = Path(migrations_path())
    assert where == Path(batchrun.migrations.__file__).resolve().parent
    assert (where / "env.py").is_file()
    assert (where / "versions" / "0001_create_schema.py").is_file()


def test_revisions_are_numbered_and_named() -> None:
    """Each revision file is NNNN_name.py with revision id NNNN, in one straight line."""
    script = ScriptDirectory.from_config(alembic_config())
    revisions = list(script.walk_revisions())
    assert len(script.get_heads()) == 1
    for revision in revisions:
        name = Path(revision.path).name
        assert re.fullmatch(r"\d{4}_[a-z0-9_]+\.py", name), name
        assert name.startswith(revision.revision + "_")
    assert head_revision() == max(r.revision for r in revisions)


@pytest.mark.slow
def test_migrations_work_from_another_directory(tmp_path: Path) -> None:
    """batchrun can create its database whatever the current directory is."""
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    code = (
        "import sys; from batchrun.store import open_store; "
        "s = open_store(sys.argv[1]); print(len(s.list_campaigns())); s.close()"
    )
    result = subprocess.run(
        [sys.executable, "-c", code, f"sqlite:///{tmp_path / 'x.db'}"],
        cwd=elsewhere, capture_output=True, text=True, check=False, timeout=60,
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "0"


def test_newer_schema_revision_is_refused(tmp_path: Path) -> None:
    """A database written by a newer batchrun is refused with an upgrade hint, not damaged."""
    path = tmp_path / "newer.db"
    open_store(f"sqlite:///{path}").close()
    engine = sa.create_engine(f"sqlite:///{path}")
    with engine.begin() as connection:
        connection.exec_driver_sql("UPDATE alembic_version SET version_num = '0099'")
    engine.dispose()
    with pytest.raises(DatabaseError) as caught:
        open_store(f"sqlite:///{path}")
    assert str(caught.value) == f"{path}: was written by a newer batchrun (revision 0099); upgrade batchrun"
    engine = sa.create_engine(f"sqlite:///{path}")
    with engine.connect() as connection:
        assert connection.exec_driver_sql("SELECT version_num FROM alembic_version").scalar() == "0099"
    engine.dispose()


def test_reopening_does_not_migrate_again(tmp_path: Path) -> None:
    """Opening an up-to-date database leaves its schema and data as they were."""
    url = f"sqlite:///{tmp_path / 'again.db'}"
    first = open_store(url)
    first.ensure_campaign("c", manifest_path="m.yaml", output_dir="out", settings={})
    first.close()
    second = open_store(url)
    try:
        assert [c.name for c in second.list_campaigns()] == ["c"]
        assert _diff(second.engine) == []
    finally:
        second.close()


def test_a_database_from_the_first_release_is_upgraded_on_open(tmp_path: Path) -> None:
    """A 0001 database (before the lease index) gains the index on open and keeps its campaigns."""
    from alembic import command

    path = tmp_path / "old.db"
    url = f"sqlite:///{path}"
    store = open_store(url)
    store.ensure_campaign("kept", manifest_path="m.yaml", output_dir="out", settings={})
    store.close()
    config = alembic_config()
    engine = sa.create_engine(url)
    with engine.begin() as connection:
        config.attributes["connection"] = connection
        command.downgrade(config, "0001")
    with engine.connect() as connection:
        assert "ix_jobs_campaign_id_state_lease" not in {i["name"] for i in sa.inspect(connection).get_indexes("jobs")}
    engine.dispose()
    reopened = open_store(url)
    try:
        assert [c.name for c in reopened.list_campaigns()] == ["kept"]
        assert _diff(reopened.engine) == []
    finally:
        reopened.close()


def test_a_database_before_the_shared_spend_starts_from_what_its_jobs_record(tmp_path: Path, make_spec) -> None:
    """A 0002 database gains each campaign's committed spend, summed from its jobs' costs and attempts."""
    from alembic import command

    url = f"sqlite:///{tmp_path / 'spent.db'}"
    store = open_store(url)
    campaign = store.ensure_campaign("spent", manifest_path="m.yaml", output_dir="out", settings={})
    store.apply_plan(campaign.id, [make_spec("a"), make_spec("b"), make_spec("c")], cost=lambda spec: 0.75)
    first, second, _ = store.pending_jobs(campaign.id, limit=3)
    store.begin_submit(first.id)
    store.reset_to_pending(first.id, "lost answer")
    store.begin_submit(first.id)  # two attempts
    store.begin_submit(second.id)
    store.close()
    engine = sa.create_engine(url)
    with engine.begin() as connection:
        config = alembic_config()
        config.attributes["connection"] = connection
        command.downgrade(config, "0002")
    engine.dispose()
    reopened = open_store(url)
    try:
        assert reopened.committed_cost(campaign.id) == pytest.approx(3 * 0.75)
        assert _diff(reopened.engine) == []
    finally:
        reopened.close()
