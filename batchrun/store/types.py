"""Column types that behave the same on SQLite and PostgreSQL, and the store's default clock.

* ``UTCDateTime``: timezone-aware UTC in, timezone-aware UTC out. PostgreSQL keeps it in a
  ``timestamptz``; SQLite keeps the UTC wall time as fixed-width ISO text (so text order is time
  order) and we put the ``UTC`` tzinfo back on the way out. A naive datetime is a bug and is
  refused rather than guessed at.
* ``JSONText``: any JSON value stored as canonical text (sorted keys), identical on both backends
  and byte-for-byte stable, so a fingerprint or an export never depends on the database.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import DateTime, Dialect, Text
from sqlalchemy.types import TypeDecorator

from batchrun.domain import canonical_json


def utcnow() -> datetime:
    """The store's default clock: the current time, timezone-aware, in UTC."""
    return datetime.now(UTC)


class UTCDateTime(TypeDecorator[datetime]):
    """A timezone-aware UTC timestamp on every backend."""

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None or value.utcoffset() is None:
            raise ValueError(f"naive datetime {value!r} given to the store; use an aware UTC time")
        value = value.astimezone(UTC)
        if dialect.name == "sqlite":
            return value.replace(tzinfo=None)
        return value

    def process_result_value(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            return value.replace(tzinfo=UTC)
        return value.astimezone(UTC)


class JSONText(TypeDecorator[Any]):
    """A JSON value kept as canonical text."""

    impl = Text
    cache_ok = True

    def process_bind_param(self, value: Any, dialect: Dialect) -> str | None:
        if value is None:
            return None
        return canonical_json(value)

    def process_result_value(self, value: str | None, dialect: Dialect) -> Any:
        if value is None:
            return None
        return json.loads(value)
