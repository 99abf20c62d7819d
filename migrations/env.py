"""Alembic environment for batchrun.

batchrun runs this itself (``batchrun.store.engine.migrate``) with an open connection in
``config.attributes["connection"]``; no alembic.ini is needed at run time. For development,
``alembic -c migrations/alembic.ini -x url=sqlite:///scratch.db revision --autogenerate -m ...``
works too.
"""

from __future__ import annotations

from alembic import context
from sqlalchemy import create_engine

from batchrun.store.models import metadata

config = context.config


def _configure_and_run(connection) -> None:  # type: ignore[no-untyped-def]
    context.configure(
        connection=connection,
        target_metadata=metadata,
        render_as_batch=connection.dialect.name == "sqlite",  # SQLite cannot ALTER most things
        compare_type=True,
    )
    with context.begin_transaction():
        context.run_migrations()


def run_migrations_online() -> None:
    connection = config.attributes.get("connection")
    if connection is not None:
        _configure_and_run(connection)
        return
    url = context.get_x_argument(as_dictionary=True).get("url") or config.get_main_option("sqlalchemy.url")
    if not url:
        raise SystemExit("give a database: alembic -x url=sqlite:///path.db ...")
    engine = create_engine(url)
    with engine.connect() as connection:
        _configure_and_run(connection)
    engine.dispose()


if context.is_offline_mode():
    context.configure(url=config.get_main_option("sqlalchemy.url"), target_metadata=metadata, literal_binds=True)
    with context.begin_transaction():
        context.run_migrations()
else:
    run_migrations_online()
