"""One `batchrun run` per campaign database: the second one is told who holds it.

SQLite: an exclusive ``flock`` on ``<database>.lock``; the kernel releases it when the holder
exits, however it exits (``kill -9`` included), so a stale lock file never blocks anyone. The
file records who holds it (pid, host, start time, command) for the message the next one prints.

PostgreSQL: a session-level advisory lock per campaign, held on its own connection (released
when that connection closes, including when the process dies).
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import socket
import sys
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import sqlalchemy as sa
from sqlalchemy.engine import Engine

from batchrun.errors import DatabaseBusyError

try:
    import fcntl
except ImportError:  # pragma: no cover - Windows: no advisory file locks; run without one
    fcntl = None  # type: ignore[assignment]


def _holder_text() -> str:
    return json.dumps(
        {
            "pid": os.getpid(),
            "host": socket.gethostname(),
            "since": datetime.now(UTC).isoformat(timespec="seconds"),
            "command": " ".join(Path(sys.argv[0]).name.split() + sys.argv[1:])[:300],
        }
    )


def _describe_holder(text: str) -> str:
    try:
        holder = json.loads(text)
        return f"pid {holder['pid']} on {holder['host']}, since {holder['since']}"
    except (ValueError, KeyError, TypeError):
        return "another process"


@contextlib.contextmanager
def sqlite_run_lock(database: Path) -> Iterator[None]:
    """Hold ``<database>.lock`` exclusively, or raise DatabaseBusyError naming the holder."""
    if fcntl is None:  # pragma: no cover
        yield
        return
    path = database.with_name(database.name + ".lock")
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o600)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = os.pread(fd, 4096, 0).decode("utf-8", "replace")
            raise DatabaseBusyError(
                f"{database} is in use by another `batchrun run` ({_describe_holder(holder)}); "
                "wait for it to finish or stop it (Ctrl-C) first"
            ) from None
        os.ftruncate(fd, 0)
        os.pwrite(fd, _holder_text().encode(), 0)
        yield
        os.ftruncate(fd, 0)
    finally:
        os.close(fd)  # releases the flock


@contextlib.contextmanager
def postgres_run_lock(engine: Engine, campaign: str) -> Iterator[None]:
    """Hold a session advisory lock for ``campaign`` on a dedicated connection."""
    key = int.from_bytes(hashlib.sha256(f"batchrun:{campaign}".encode()).digest()[:8], "big", signed=True)
    with engine.connect() as connection:
        got = connection.execute(sa.text("SELECT pg_try_advisory_lock(:k)"), {"k": key}).scalar_one()
        if not got:
            raise DatabaseBusyError(
                f"campaign {campaign!r} is being run by another `batchrun run` on this PostgreSQL database"
            )
        try:
            yield
        finally:
            with contextlib.suppress(Exception):
                connection.execute(sa.text("SELECT pg_advisory_unlock(:k)"), {"k": key})


@contextlib.contextmanager
def run_lock(engine: Engine, campaign: str) -> Iterator[None]:
    """The lock `batchrun run` holds for as long as it works on ``campaign``."""
    url = engine.url
    if url.get_backend_name() == "sqlite" and url.database and url.database != ":memory:":
        with sqlite_run_lock(Path(url.database)):
            yield
    elif url.get_backend_name() == "postgresql":
        with postgres_run_lock(engine, campaign):
            yield
    else:  # pragma: no cover - in-memory databases are private to the process anyway
        yield
