"""One `batchrun run` per campaign database: the second one is told who holds it.

SQLite: an exclusive ``flock`` on ``<database>.lock``; the kernel releases it when the holder
exits, however it exits (``kill -9`` included), so a stale lock file never blocks anyone. The
file records who holds it (pid, host, start time, command) for the message the next one prints.

PostgreSQL: no lock; several runners cooperate on a campaign through claims and leases.
"""

from __future__ import annotations

import contextlib
import json
import os
import socket
import sys
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

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
    # the real file's lock: `run link.db` and `run /data/real.db` are the same database, and two
    # lock names would let both runs in (a symlink, or a hard path alias such as ../x/real.db)
    real = Path(os.path.realpath(database))
    path = real.with_name(real.name + ".lock")
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
def run_lock(engine: Engine) -> Iterator[bool]:
    """What `batchrun run` holds while it works; yields whether this runner is alone on the database.

    SQLite: one runner per database file (the lock above), so it is alone. PostgreSQL: several
    runners share a campaign through claims and leases (see ``store/leases.py``), so no lock.
    """
    url = engine.url
    if url.get_backend_name() == "sqlite" and url.database and url.database != ":memory:":
        with sqlite_run_lock(Path(url.database)):
            yield True
    elif url.get_backend_name() == "sqlite":  # pragma: no cover - in-memory: private to the process
        yield True
    else:
        yield False
