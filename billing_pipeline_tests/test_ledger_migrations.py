"""Alembic migrations build exactly the schema the code expects, on SQLite and PostgreSQL."""

from __future__ import annotations

import pytest
import sqlalchemy as sa
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from sqlalchemy.exc import DBAPIError

from billing_pipeline.ledger.ledger import Ledger
from billing_pipeline.ledger.tables import metadata
from billing_pipeline_tests.support.ledger import document, issue_raw


def test_migrated_ledger_matches_the_schema_in_code(ledger):
    with ledger.engine.connect() as conn:
        diff = compare_metadata(MigrationContext.configure(conn), metadata)
    assert diff == []
    ledger.migrate()  # a second upgrade is a no-op
    with ledger.engine.connect() as conn:
        assert (
            conn.execute(sa.text("SELECT version_num FROM alembic_version")).scalar_one()
            == _single_head()
        )


def _single_head() -> str:
    """The one head revision (two engineers adding migrations at once must chain, not branch)."""
    from alembic.config import Config
    from alembic.script import ScriptDirectory

    from billing_pipeline.ledger.ledger import MIGRATIONS_DIR

    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS_DIR))
    heads = ScriptDirectory.from_config(config).get_heads()
    assert len(heads) == 1, f"migrations have several heads: {heads}"
    return heads[0]


def test_migrations_install_the_immutability_triggers(ledger):
    ledger.save_drafts("2026-10", [document("acme")])
    issue_raw(ledger, "acme")
    with pytest.raises(DBAPIError, match="immutable"), ledger.engine.begin() as conn:
        conn.execute(sa.text("UPDATE invoices SET series = 'X' WHERE customer_id = 'acme'"))


def test_a_ledger_made_before_migrations_is_adopted_without_losing_invoices(tmp_path):
    url = f"sqlite:///{tmp_path / 'old.db'}"
    old = Ledger(url)
    with old.engine.begin() as conn:  # the pre-migration schema = revision 0001
        from alembic import command
        from alembic.config import Config

        from billing_pipeline.ledger.ledger import MIGRATIONS_DIR

        config = Config()
        config.set_main_option("script_location", str(MIGRATIONS_DIR))
        config.attributes["connection"] = conn
        command.upgrade(config, "0001")
        conn.execute(sa.text("DROP TABLE alembic_version"))
    with old.engine.begin() as conn:
        conn.execute(
            sa.text(
                "INSERT INTO invoices (customer_id, period, kind, status, currency, subtotal_micros, "
                "tax_micros, credits_micros, total_micros, document, created_at, updated_at) VALUES "
                "('acme', '2026-10', 'invoice', 'draft', 'USD', 1, 0, 0, 1, '{}', CURRENT_TIMESTAMP, "
                "CURRENT_TIMESTAMP)"
            )
        )
    old.migrate()
    with old.engine.connect() as conn:
        assert conn.execute(sa.text("SELECT customer_id, series FROM invoices")).all() == [
            ("acme", None)
        ]
        assert compare_metadata(MigrationContext.configure(conn), metadata) == []
