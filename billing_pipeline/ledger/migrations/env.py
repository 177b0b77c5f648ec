"""Alembic environment for the invoice ledger.

Run programmatically by ``Ledger.migrate()`` (which hands over its connection), or by the
``alembic`` command with ``-x url=...`` / ``sqlalchemy.url``.
"""

from alembic import context
from sqlalchemy import create_engine

from billing_pipeline.ledger.tables import metadata

config = context.config
connection = config.attributes.get("connection")


def _run(conn) -> None:
    context.configure(connection=conn, target_metadata=metadata, transactional_ddl=True)
    with context.begin_transaction():
        context.run_migrations()


if connection is not None:
    _run(connection)
else:
    url = context.get_x_argument(as_dictionary=True).get("url") or config.get_main_option(
        "sqlalchemy.url"
    )
    with create_engine(url).connect() as conn:
        _run(conn)
