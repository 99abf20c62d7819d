"""Driver errors about the database itself, turned into one-line user errors."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import sqlalchemy as sa

from batchrun.errors import DatabaseBusyError, DatabaseError


@contextmanager
def translate_errors(label: str) -> Iterator[None]:
    """Turn driver errors about the database itself into one-line ``DatabaseError``s."""
    try:
        yield
    except sa.exc.DBAPIError as error:
        raise database_error(label, error) from None


def database_error(label: str, error: sa.exc.DBAPIError) -> DatabaseError:
    """The one-line user error for a driver error, or re-raise when it is our bug."""
    text = str(error.orig).strip().splitlines()[0] if error.orig is not None else str(error)
    lowered = text.lower()
    if "database is locked" in lowered or "database table is locked" in lowered:
        return DatabaseBusyError(f"{label}: the database is locked by another batchrun process; try again when it ends",
                                 transient=True)
    if "file is not a database" in lowered or "malformed" in lowered or "not a database" in lowered:
        return DatabaseError(f"{label}: file is not a database (corrupt or not SQLite)")
    if isinstance(error, sa.exc.OperationalError) or error.connection_invalidated:
        # a lost connection, a server restarting, a deadlock: worth another try once it worked
        return DatabaseError(f"{label}: cannot use the database: {text}", transient=True)
    raise error
