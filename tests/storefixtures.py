"""Store fixtures: a controllable clock, fresh SQLite and PostgreSQL stores, spec factories.

PostgreSQL tests each get their own schema (selected with ``search_path`` in the URL), dropped
afterwards; they skip with the reason when the server at ``BATCHRUN_TEST_PG_URL`` (default
``postgresql+psycopg://postgres@127.0.0.1:5432/test``) cannot be reached.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa

from batchrun.domain import JobSpec
from batchrun.errors import Location
from batchrun.store import Store, open_store

#: read at import time, before the autouse fixture clears BATCHRUN_* variables
PG_BASE_URL = os.environ.get("BATCHRUN_TEST_PG_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/test")

__all__ = ["FakeClock", "PG_BASE_URL", "any_store", "clock", "make_spec", "pg_url", "store", "store_at"]


class FakeClock:
    """A clock that only moves when told to; each call returns the current virtual time."""

    def __init__(self, start: datetime = datetime(2026, 1, 2, 3, 4, 5, 123456, tzinfo=UTC)) -> None:
        self.current = start

    def __call__(self) -> datetime:
        return self.current

    def advance(self, seconds: float = 1.0) -> datetime:
        self.current += timedelta(seconds=seconds)
        return self.current


@pytest.fixture
def clock() -> FakeClock:
    """A virtual UTC clock for the store."""
    return FakeClock()


@pytest.fixture
def store_at(clock: FakeClock) -> Iterator[Callable[[str], Store]]:
    """Open stores at given URLs with the test clock; all closed at teardown."""
    opened: list[Store] = []

    def open_(url: str) -> Store:
        store = open_store(url, now=clock)
        opened.append(store)
        return store

    yield open_
    for store in opened:
        store.close()


@pytest.fixture
def store(tmp_path: Path, store_at: Callable[[str], Store]) -> Store:
    """A fresh, migrated SQLite store in the test's temporary directory."""
    return store_at(f"sqlite:///{tmp_path / 'db' / 'test.batchrun.db'}")


@pytest.fixture
def pg_url() -> Iterator[str]:
    """A URL for a fresh, empty PostgreSQL schema that is dropped after the test."""
    admin = sa.create_engine(PG_BASE_URL, connect_args={"connect_timeout": 3})
    try:
        with admin.connect():
            pass
    except Exception as error:  # any failure to connect means: no server for this run
        admin.dispose()
        pytest.skip(f"PostgreSQL not reachable at {sa.make_url(PG_BASE_URL).render_as_string(hide_password=True)}: "
                    f"{str(error).splitlines()[0]}")
    schema = f"batchrun_test_{uuid.uuid4().hex[:12]}"
    with admin.begin() as connection:
        connection.exec_driver_sql(f'CREATE SCHEMA "{schema}"')
    url = sa.make_url(PG_BASE_URL).update_query_dict({"options": f"-csearch_path={schema}"})
    try:
        yield url.render_as_string(hide_password=False)
    finally:
        with admin.begin() as connection:
            connection.exec_driver_sql(f'DROP SCHEMA "{schema}" CASCADE')
        admin.dispose()


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def any_store(request: pytest.FixtureRequest, tmp_path: Path, store_at: Callable[[str], Store]) -> Store:
    """A fresh store on each backend (PostgreSQL skipped with a reason when unavailable)."""
    if request.param == "sqlite":
        return store_at(f"sqlite:///{tmp_path / 'any.batchrun.db'}")
    return store_at(request.getfixturevalue("pg_url"))


@pytest.fixture
def make_spec() -> Callable[..., JobSpec]:
    """Build a JobSpec for key ``key``; ``prompt`` and ``output_name`` change its identity."""

    def make(key: str, prompt: str | None = None, *, output_name: str | None = None, **input: Any) -> JobSpec:
        body = {"prompt": prompt if prompt is not None else f"prompt for {key}", "duration": 5, **input}
        return JobSpec(
            key=key,
            model="kling/kling-3.0/pro/text-to-video",
            input=body,
            take=1,
            output_name=output_name or f"{key}.mp4",
            location=Location("manifest.yaml", 1),
        )

    return make
