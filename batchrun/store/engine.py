"""Opening a batchrun database: URL resolution, engines, SQLite pragmas, migration on open.

Everything that can go wrong when opening a database becomes one clear ``DatabaseError`` line
that names the database (passwords hidden): not a database, a foreign database, a schema newer
than this batchrun, an unreachable server, an unknown URL scheme.
"""

from __future__ import annotations

import os
import stat
from collections.abc import Callable
from datetime import datetime
from importlib.resources import files
from pathlib import Path
from typing import Any

import sqlalchemy as sa
from alembic import command
from alembic.config import Config
from alembic.script import ScriptDirectory
from sqlalchemy import event
from sqlalchemy.engine import URL, Connection, Engine
from sqlalchemy.pool import StaticPool

from batchrun.errors import DatabaseError
from batchrun.store.models import APPLICATION, meta
from batchrun.store.dberrors import translate_errors
from batchrun.store.repository import Store
from batchrun.store.types import utcnow

SQLITE_HEADER = b"SQLite format 3\x00"
#: how long a SQLite write waits for another writer: a `plan` of a large edited manifest holds
#: the write lock for seconds (12 s for 120,000 jobs), and a run's writes must outwait it
BUSY_TIMEOUT_MS = 60_000
#: execution option that makes a SQLite transaction take the write lock up front
WRITE = "batchrun_write"
_PG_MIGRATION_LOCK = 0x62617463  # "batc": one migrator at a time per server


def resolve_db_url(db: str | None, manifest_path: Path | None) -> str:
    """The database URL for ``--db`` (``None``: a SQLite file next to the manifest)."""
    if db is None:
        if manifest_path is None:
            raise DatabaseError("no database given and no manifest to put one next to; pass --db")
        path = Path(manifest_path).absolute()
        return _sqlite_url(path.with_name(path.stem + ".batchrun.db"))
    in_memory = db.strip() == ":memory:" or (db.startswith("sqlite:") and _sqlite_database(db) in ("", ":memory:"))
    if in_memory:
        raise DatabaseError(f"--db {db}: an in-memory database forgets every job when batchrun exits, and "
                            "the next run would pay for them all again; give a file (--db runs.db)")
    if "://" in db:
        return db
    return _sqlite_url(Path(db).expanduser().absolute())


def _sqlite_database(url: str) -> str | None:
    """The database part of a SQLite URL ("" for none); None when it is no URL at all."""
    try:
        return sa.make_url(url).database or ""
    except sa.exc.ArgumentError:
        return None


def _sqlite_url(path: Path) -> str:
    """The URL of a SQLite file, escaped: a `?` or `%41` in a folder name is part of the path, not
    a query string or an escape (pasted raw, `what?/x.db` would open `what`)."""
    return URL.create("sqlite", database=str(path)).render_as_string(hide_password=False)


def migrations_path() -> str:
    """Where the shipped migrations are (inside the installed package, wherever that is)."""
    return str(files("batchrun.migrations"))


def alembic_config(connection: Connection | None = None) -> Config:
    """An alembic config for the shipped migrations, optionally bound to an open connection."""
    config = Config()
    config.set_main_option("script_location", migrations_path())
    if connection is not None:
        config.attributes["connection"] = connection
    return config


def head_revision() -> str:
    """The newest schema revision this batchrun knows."""
    head = ScriptDirectory.from_config(alembic_config()).get_current_head()
    assert head is not None
    return head


def describe(url: str | URL) -> str:
    """A database named for messages: the file for SQLite, the URL without password otherwise."""
    url = sa.make_url(url)
    if url.get_backend_name() == "sqlite" and url.database not in (None, "", ":memory:"):
        return str(url.database)
    return url.render_as_string(hide_password=True)


def open_store(url: str, *, now: Callable[[], datetime] = utcnow) -> Store:
    """Open (creating and migrating as needed) the batchrun database at ``url``."""
    engine = create_engine(url)
    label = describe(engine.url)
    try:
        with translate_errors(label):
            migrate(engine, label)
    except BaseException:
        engine.dispose()
        raise
    return Store(engine, now=now, label=label)


def create_engine(url: str) -> Engine:
    """An engine for ``url`` with batchrun's connection settings (no connection made yet)."""
    try:
        parsed = sa.make_url(url)
        parsed.port  # noqa: B018 - a port that is not a number is only found when read
        if "\0" in (parsed.database or ""):  # written as such, or as `%00`
            raise ValueError("NUL in the database name")
    except (sa.exc.ArgumentError, ValueError):
        raise DatabaseError(f"not a database URL: {url!r} (use a file path, sqlite:///path or postgresql+psycopg://...)") from None
    backend = parsed.get_backend_name()
    label = describe(parsed)
    try:
        if backend == "sqlite":
            return _sqlite_engine(parsed)
        if backend == "postgresql":
            if parsed.drivername == "postgresql":
                parsed = parsed.set(drivername="postgresql+psycopg")
            return sa.create_engine(
                parsed, pool_pre_ping=True, pool_size=5, max_overflow=5, connect_args={"connect_timeout": 10}
            )
    except (sa.exc.NoSuchModuleError, ImportError) as error:
        raise DatabaseError(f"{label}: database driver not available ({error}); for PostgreSQL install batchrun[postgres]") from None
    raise DatabaseError(f"{label}: unknown database URL scheme {parsed.drivername!r}; use sqlite:///path or postgresql+psycopg://...")


def _sqlite_engine(url: URL) -> Engine:
    database = url.database
    if database in (None, "", ":memory:"):
        engine = sa.create_engine(url, poolclass=StaticPool, connect_args={"check_same_thread": False})
    else:
        path = Path(database).expanduser()
        _prepare_sqlite_file(path)
        engine = sa.create_engine(
            url.set(database=str(path)),
            pool_size=2,
            max_overflow=2,
            connect_args={"timeout": BUSY_TIMEOUT_MS / 1000, "check_same_thread": False},
        )

    @event.listens_for(engine, "connect")
    def _on_connect(dbapi_connection: Any, _record: Any) -> None:
        # we issue BEGIN ourselves (below) so SQLite transactions mean what SQLAlchemy says
        dbapi_connection.isolation_level = None
        cursor = dbapi_connection.cursor()
        try:
            cursor.execute(f"PRAGMA busy_timeout = {BUSY_TIMEOUT_MS}")
            cursor.execute("PRAGMA foreign_keys = ON")
            if database not in (None, "", ":memory:"):
                cursor.execute("PRAGMA journal_mode = WAL")
            cursor.execute("PRAGMA synchronous = NORMAL")
        finally:
            cursor.close()

    @event.listens_for(engine, "begin")
    def _on_begin(connection: Connection) -> None:
        # writers take the lock up front so a read-then-write never dies with SQLITE_BUSY halfway
        immediate = connection.get_execution_options().get(WRITE, False)
        connection.exec_driver_sql("BEGIN IMMEDIATE" if immediate else "BEGIN")

    return engine


def _prepare_sqlite_file(path: Path) -> None:
    """Create the database file user-only (and its directory, 0700) unless it exists."""
    label = str(path)
    try:
        is_dir = path.is_dir()
    except OSError as error:  # e.g. a folder on the way we may not enter
        raise DatabaseError(f"{label}: cannot use the database: {error.strerror or error}") from None
    if is_dir:
        raise DatabaseError(f"{label}: is a directory, not a database file")
    parent = path.parent
    try:
        if not parent.exists():
            parent.mkdir(mode=0o700, parents=True)
        fd = os.open(path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, stat.S_IRUSR | stat.S_IWUSR)
        os.close(fd)
    except FileExistsError:
        _check_sqlite_header(path)
    except OSError as error:
        raise DatabaseError(f"{label}: cannot create the database: {error.strerror or error}") from None


def _check_sqlite_header(path: Path) -> None:
    try:
        with path.open("rb") as handle:
            header = handle.read(len(SQLITE_HEADER))
    except OSError as error:
        raise DatabaseError(f"{path}: cannot read the database: {error.strerror or error}") from None
    if header and header != SQLITE_HEADER:
        raise DatabaseError(f"{path}: file is not a database (not a SQLite file)")


def migrate(engine: Engine, label: str) -> None:
    """Bring the database to the newest schema, refusing foreign or newer databases."""
    script = ScriptDirectory.from_config(alembic_config())
    with engine.connect() as connection:
        connection.execution_options(**{WRITE: True})
        with connection.begin():
            if connection.dialect.name == "postgresql":
                connection.execute(sa.select(sa.func.pg_advisory_xact_lock(_PG_MIGRATION_LOCK)))
            current = _current_revision(connection, label)
            if current is not None:
                try:
                    known = script.get_revision(current)
                except Exception:  # alembic raises several kinds for an unknown id
                    known = None
                if known is None:
                    raise DatabaseError(
                        f"{label}: was written by a newer batchrun (revision {current}); upgrade batchrun"
                    )
            if current != script.get_current_head():
                command.upgrade(alembic_config(connection), "head")


def _current_revision(connection: Connection, label: str) -> str | None:
    """The schema revision of a batchrun database, None when blank; refuse anything else."""
    tables = set(sa.inspect(connection).get_table_names())
    if not tables:
        return None
    if meta.name not in tables:
        sample = ", ".join(sorted(tables)[:5])
        raise DatabaseError(f"{label}: is not a batchrun database (it holds other tables: {sample})")
    application = connection.execute(sa.select(meta.c.value).where(meta.c.key == "application")).scalar()
    if application != APPLICATION:
        raise DatabaseError(f"{label}: is not a batchrun database (application {application!r})")
    if "alembic_version" not in tables:
        raise DatabaseError(f"{label}: batchrun database without a schema revision; it cannot be used")
    versions = connection.execute(sa.text("SELECT version_num FROM alembic_version")).scalars().all()
    if len(versions) != 1:
        raise DatabaseError(f"{label}: batchrun database with an ambiguous schema revision {versions}")
    return str(versions[0])
