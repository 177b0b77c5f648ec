"""The local PostgreSQL the tests use: skipped only when unreachable and CI is not "true"."""

from __future__ import annotations

import os
import uuid

import pytest
import sqlalchemy as sa

from billing_pipeline.ledger.ledger import Ledger

PG_URL = os.environ.get("BILLING_TEST_PG_URL", "postgresql+psycopg2://postgres@127.0.0.1:5432/test")
PG = {"host": "127.0.0.1", "port": "5432", "user": "postgres"}  # the Dagster instance's database


def postgres_ledger() -> tuple[Ledger, sa.Engine, str]:
    """A ledger in a throwaway schema (not migrated), the admin engine and the schema's name; the
    caller drops the schema with ``drop_schema``."""
    admin = sa.create_engine(PG_URL)
    try:
        with admin.connect():
            pass
    except sa.exc.OperationalError as error:
        admin.dispose()
        if os.environ.get("CI") == "true":
            raise
        pytest.skip(f"PostgreSQL unreachable: {error.orig}")
    schema = f"ledger_test_{uuid.uuid4().hex[:12]}"
    with admin.begin() as conn:
        conn.execute(sa.text(f'CREATE SCHEMA "{schema}"'))
    ledger = Ledger(PG_URL, connect_args={"options": f"-csearch_path={schema}"})
    return ledger, admin, schema


def drop_schema(ledger: Ledger, admin: sa.Engine, schema: str) -> None:
    """Undo ``postgres_ledger``."""
    ledger.engine.dispose()
    with admin.begin() as conn:
        conn.execute(sa.text(f'DROP SCHEMA "{schema}" CASCADE'))
    admin.dispose()
