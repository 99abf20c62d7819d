"""PostgreSQL specifics: the same database contract on a server, and clear errors when it is not there."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone

import pytest
import sqlalchemy as sa

from batchrun.errors import DatabaseError
from batchrun.store import open_store
from batchrun.store.models import jobs

pytestmark = pytest.mark.postgres


def test_unreachable_server_is_one_line_without_password() -> None:
    """An unreachable PostgreSQL server is a one-line DatabaseError that hides the password."""
    with pytest.raises(DatabaseError) as caught:
        open_store("postgresql+psycopg://batch:s3cret@127.0.0.1:1/nowhere")
    message = str(caught.value)
    assert message.startswith("postgresql+psycopg://batch:***@127.0.0.1:1/nowhere: cannot use the database:")
    assert "s3cret" not in message and "\n" not in message


def test_plain_postgresql_scheme_uses_psycopg(pg_url: str) -> None:
    """postgresql:// URLs work without naming the driver."""
    store = open_store(pg_url.replace("postgresql+psycopg://", "postgresql://"))
    try:
        assert store.engine.dialect.driver == "psycopg"
    finally:
        store.close()


def test_foreign_schema_is_refused(pg_url: str) -> None:
    """A PostgreSQL schema that holds another application's tables is refused untouched."""
    engine = sa.create_engine(pg_url)
    with engine.begin() as connection:
        connection.exec_driver_sql("CREATE TABLE invoices (id int)")
    with pytest.raises(DatabaseError, match="is not a batchrun database"):
        open_store(pg_url)
    with engine.connect() as connection:
        assert sa.inspect(connection).get_table_names() == ["invoices"]
    engine.dispose()


def test_timestamps_are_utc_and_comparable_with_sqlite(pg_url: str, make_spec) -> None:  # type: ignore[no-untyped-def]
    """Times given in any timezone come back as the same instant in UTC, stored as timestamptz."""
    paris = timezone(timedelta(hours=1))
    now = datetime(2026, 3, 1, 13, 0, 0, 250000, tzinfo=paris)
    store = open_store(pg_url, now=lambda: now)
    try:
        cid = store.ensure_campaign("c", manifest_path="m", output_dir="o", settings={}).id
        store.apply_plan(cid, [make_spec("a")])
        job = store.get_job_by_key(cid, "a")
        assert job is not None and job.created_at == now and job.created_at.tzinfo == UTC
        assert job.created_at.hour == 12
        with store.engine.connect() as connection:
            column = next(c for c in sa.inspect(connection).get_columns("jobs") if c["name"] == "created_at")
            assert column["type"].timezone is True
            assert connection.execute(sa.select(jobs.c.created_at)).scalar() == now
    finally:
        store.close()


def test_second_store_on_a_migrated_schema_shares_its_data(pg_url: str) -> None:
    """A second batchrun opening an already migrated server database sees the same data."""
    first = open_store(pg_url)
    second = open_store(pg_url)
    try:
        first.ensure_campaign("c", manifest_path="m", output_dir="o", settings={})
        assert [c.name for c in second.list_campaigns()] == ["c"]
    finally:
        first.close()
        second.close()
