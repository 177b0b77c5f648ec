"""The database itself keeps issued invoices immutable (issue 16, item 4), on SQLite and PostgreSQL.

Each statement below is one an operator with SQL access (or a bug) could run; each was let through
before revision 0006. The ``ledger`` fixture runs every test on both engines.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import os
import sqlite3
import uuid

import pytest
import sqlalchemy as sa
from sqlalchemy.exc import DBAPIError

from billing_pipeline.ledger.ledger import MIGRATIONS_DIR, Ledger, audit
from billing_pipeline.ledger.numbering import issue_drafts
from billing_pipeline_tests.support.ledger import document
from billing_pipeline_tests.support.postgres import PG_URL, drop_schema, postgres_ledger

MONTH = "2026-10"
NUMBER = "INV-2026-000001"  # acme's, issued by _issued below
# acme's issued document: lines 120.00 + 500.00 = 620.00; tax 19 % = 117.80; total 737.80
TOTAL_MICROS = 737_800_000
REFUSED = "immutable|may only go|append-only|TRUNCATE refused"


def _issued(ledger: Ledger) -> None:
    """acme issued (INV-2026-000001) the way issuing does it; globex left a draft."""
    ledger.save_drafts(MONTH, [document("acme"), document("globex", total="100.00")])
    ledger.record_checks(MONTH, [{"name": "month_end_run_completed", "passed": True}])
    issue_drafts(
        ledger,
        MONTH,
        prefix="INV",
        issue_date=dt.date(2026, 11, 3),
        payment_terms_days=30,
        customer_id="acme",
    )


def _row(ledger: Ledger, number: str = NUMBER) -> dict:
    with ledger.engine.connect() as conn:
        return dict(
            conn.execute(sa.text("SELECT * FROM invoices WHERE number = :n"), {"n": number})
            .mappings()
            .one()
        )


def _snapshot(ledger: Ledger) -> list:
    with ledger.engine.connect() as conn:
        return [
            [tuple(r) for r in conn.execute(sa.text(f"SELECT * FROM {table} ORDER BY 1, 2"))]
            for table in ("invoices", "invoice_lines", "audit_log")
        ]


def _refused(
    ledger: Ledger, statement: str, params: dict | None = None, match: str = REFUSED
) -> None:
    before = _snapshot(ledger)
    with pytest.raises(DBAPIError, match=match), ledger.engine.begin() as conn:
        conn.execute(sa.text(statement), params or {})
    assert _snapshot(ledger) == before


def _ids(ledger: Ledger) -> dict[str, int]:
    with ledger.engine.connect() as conn:
        return dict(conn.execute(sa.text("SELECT customer_id, id FROM invoices")).all())


_INSERT_COLUMNS = (
    "customer_id, period, kind, status, number, currency, subtotal_micros, tax_micros, "
    "credits_micros, total_micros, document, created_at, updated_at"
)
_FORGED_DOCUMENT = json.dumps({"customer_id": "acme", "number": NUMBER, "total": "0.01"})


# ---------------------------------------------------------------- SQLite: INSERT OR REPLACE


@pytest.mark.parametrize("keyed_by", ["id", "number", "live customer and period"])
def test_sqlite_insert_or_replace_cannot_rewrite_an_issued_invoice(tmp_path, keyed_by):
    """The finding: ``INSERT OR REPLACE`` rewrote an issued invoice's document (total 0.01) and
    ``send`` mailed it. REPLACE deletes the row it collides with and fires no DELETE trigger unless
    ``recursive_triggers`` is on, so the insert itself is refused: through the ledger's engine and
    through a plain sqlite3 connection that set no pragma at all."""
    ledger = Ledger(f"sqlite:///{tmp_path / 'ledger.db'}")
    ledger.migrate()
    _issued(ledger)
    acme = _row(ledger)
    key = {
        "id": ("id, ", f"{acme['id']}, "),
        "number": ("", ""),
        "live customer and period": ("", ""),
    }[keyed_by]
    number = "NULL" if keyed_by == "live customer and period" else f"'{NUMBER}'"
    status = "'draft'" if keyed_by == "live customer and period" else "'issued'"
    statement = (
        f"INSERT OR REPLACE INTO invoices ({key[0]}{_INSERT_COLUMNS}) VALUES ({key[1]}'acme', "
        f"'{MONTH}', 'invoice', {status}, {number}, 'USD', 10000, 0, 0, 10000, "
        f"'{_FORGED_DOCUMENT}', CURRENT_TIMESTAMP, CURRENT_TIMESTAMP)"
    )
    _refused(ledger, statement)
    raw = sqlite3.connect(tmp_path / "ledger.db")  # no PRAGMA recursive_triggers, no foreign_keys
    with pytest.raises(sqlite3.IntegrityError, match=REFUSED), raw:
        raw.execute(statement)
    raw.close()
    assert _row(ledger)["total_micros"] == TOTAL_MICROS
    assert json.loads(_row(ledger)["document"])["total"] == "737.80"


def test_sqlite_update_or_replace_cannot_push_a_draft_over_an_issued_invoice(tmp_path):
    ledger = Ledger(f"sqlite:///{tmp_path / 'ledger.db'}")
    ledger.migrate()
    _issued(ledger)
    ids = _ids(ledger)
    _refused(
        ledger,
        "UPDATE OR REPLACE invoices SET number = :n WHERE id = :g",
        {"n": NUMBER, "g": ids["globex"]},
    )
    _refused(
        ledger,
        "UPDATE OR REPLACE invoices SET id = :a WHERE id = :g",
        {"a": ids["acme"], "g": ids["globex"]},
    )
    _refused(
        ledger,
        "UPDATE OR REPLACE invoices SET customer_id = 'acme' WHERE id = :g",
        {"g": ids["globex"]},
    )


def test_sqlite_insert_or_replace_cannot_rewrite_an_audit_entry(tmp_path):
    ledger = Ledger(f"sqlite:///{tmp_path / 'ledger.db'}")
    ledger.migrate()
    _issued(ledger)
    statement = (
        "INSERT OR REPLACE INTO audit_log (id, invoice_id, at, actor, action, detail) "
        "VALUES (1, 1, CURRENT_TIMESTAMP, 'x', 'nothing', '{}')"
    )
    _refused(ledger, statement)
    raw = sqlite3.connect(tmp_path / "ledger.db")  # no PRAGMA recursive_triggers
    with pytest.raises(sqlite3.IntegrityError, match="append-only"), raw:
        raw.execute(statement)
    raw.close()


def test_sqlite_create_all_and_migrations_install_the_same_guards(tmp_path):
    from billing_pipeline.ledger.tables import SQLITE_TRIGGER_NAMES

    made, migrated = (
        Ledger(f"sqlite:///{tmp_path / 'made.db'}"),
        Ledger(f"sqlite:///{tmp_path / 'migrated.db'}"),
    )
    made.create_all()
    migrated.migrate()
    for ledger in (made, migrated):
        with ledger.engine.connect() as conn:
            names = conn.execute(
                sa.text("SELECT name FROM sqlite_master WHERE type = 'trigger'")
            ).scalars()
            assert sorted(names) == sorted(SQLITE_TRIGGER_NAMES)


# ---------------------------------------------------------------- both engines


def test_a_drafts_line_cannot_be_moved_into_an_issued_invoice(ledger):
    _issued(ledger)
    ids = _ids(ledger)
    _refused(
        ledger,
        "UPDATE invoice_lines SET invoice_id = :a, position = 3 WHERE invoice_id = :g AND position = 1",
        {"a": ids["acme"], "g": ids["globex"]},
    )
    with ledger.engine.begin() as conn:  # between drafts a line may still move
        conn.execute(
            sa.text("UPDATE invoice_lines SET position = 3 WHERE invoice_id = :g AND position = 1"),
            {"g": ids["globex"]},
        )


def test_status_changes_only_through_issue_and_void_each_with_its_audit_row(ledger):
    _issued(ledger)
    ids = _ids(ledger)
    # no audit row at all: the finding
    _refused(ledger, "UPDATE invoices SET status = 'void' WHERE number = :n", {"n": NUMBER})
    # pointing at the audit row of the issue (not a void), or at another invoice's row
    _refused(
        ledger,
        "UPDATE invoices SET status = 'void', status_audit_id = status_audit_id WHERE number = :n",
        {"n": NUMBER},
    )
    with ledger.engine.begin() as conn:
        other_void = audit(conn, ids["globex"], "test", "void", {})
    _refused(
        ledger,
        "UPDATE invoices SET status = 'void', status_audit_id = :x WHERE number = :n",
        {"x": other_void, "n": NUMBER},
    )
    # a draft cannot be voided, nor issued without an 'issue' entry of its own
    _refused(
        ledger,
        "UPDATE invoices SET status = 'void', status_audit_id = :x WHERE id = :g",
        {"x": other_void, "g": ids["globex"]},
    )
    _refused(
        ledger,
        "UPDATE invoices SET status = 'issued', number = 'INV-2026-000002', status_audit_id = :x "
        "WHERE id = :g",
        {"x": other_void, "g": ids["globex"]},
    )
    # the pointer cannot move on its own
    _refused(
        ledger,
        "UPDATE invoices SET status_audit_id = :x WHERE number = :n",
        {"x": other_void, "n": NUMBER},
    )
    # an invoice is born a draft
    _refused(
        ledger,
        f"INSERT INTO invoices ({_INSERT_COLUMNS}) VALUES ('initech', '{MONTH}', 'invoice', 'issued', "
        "'INV-2026-000009', 'USD', 1, 0, 0, 1, '{}', CURRENT_TIMESTAMP, CURRENT_TIMESTAMP)",
    )
    # the documented transition: void writes its audit row and the status points at it
    ledger.void(NUMBER, "wrong customer address")
    row = _row(ledger)
    entry = {e["id"]: e for e in ledger.audit_entries(row["id"])}[row["status_audit_id"]]
    assert (row["status"], entry["action"], json.loads(entry["detail"])["reason"]) == (
        "void",
        "void",
        "wrong customer address",
    )
    _refused(ledger, "UPDATE invoices SET status = 'issued' WHERE number = :n", {"n": NUMBER})


def test_issuing_points_the_status_at_its_audit_row_and_keeps_the_documents_hash(ledger):
    _issued(ledger)
    row = _row(ledger)
    issue = {e["id"]: e for e in ledger.audit_entries(row["id"])}[row["status_audit_id"]]
    assert (issue["action"], json.loads(issue["detail"])["number"]) == ("issue", NUMBER)
    assert row["document_sha256"] == hashlib.sha256(row["document"].encode("utf-8")).hexdigest()
    assert json.loads(issue["detail"])["document_sha256"] == row["document_sha256"]
    _refused(
        ledger,
        "UPDATE invoices SET document_sha256 = :h WHERE number = :n",
        {"h": "0" * 64, "n": NUMBER},
    )
    _refused(ledger, "UPDATE invoices SET id = 999 WHERE number = :n", {"n": NUMBER})


@pytest.mark.parametrize(
    "ledger", ["postgresql"], indirect=True
)  # SQLite has no TRUNCATE: DELETE fires row triggers
def test_postgresql_refuses_truncate_of_invoices_lines_and_the_audit_log(ledger):
    _issued(ledger)
    for table in ("invoices", "invoice_lines", "audit_log"):
        _refused(ledger, f"TRUNCATE {table} CASCADE", match=f"{table}: TRUNCATE refused")


# ---------------------------------------------------------------- existing ledgers get the triggers


@pytest.mark.parametrize("engine", ["sqlite", "postgresql"])
def test_a_ledger_at_revision_0005_gets_the_new_guards_on_upgrade(tmp_path, engine):
    from alembic import command
    from alembic.config import Config

    if engine == "sqlite":
        ledger, admin, schema = Ledger(f"sqlite:///{tmp_path / 'old.db'}"), None, None
    else:
        ledger, admin, schema = postgres_ledger()
    try:
        config = Config()
        config.set_main_option("script_location", str(MIGRATIONS_DIR))
        with ledger.engine.begin() as conn:
            config.attributes["connection"] = conn
            command.upgrade(config, "0005_holds")
        ledger.save_drafts(MONTH, [document("acme")])
        with ledger.engine.begin() as conn:  # issued before 0006: no audit pointer, no hash
            conn.execute(
                sa.text("UPDATE invoices SET status = 'issued', number = :n"), {"n": NUMBER}
            )
        ledger.migrate()
        assert (_row(ledger)["status_audit_id"], _row(ledger)["document_sha256"]) == (None, None)
        _refused(ledger, "UPDATE invoices SET status = 'void' WHERE number = :n", {"n": NUMBER})
        ledger.void(NUMBER, "wrong customer address")
        assert _row(ledger)["status"] == "void"
    finally:
        if admin is None:
            ledger.engine.dispose()
        else:
            drop_schema(ledger, admin, schema)


# ---------------------------------------------------------------- PostgreSQL roles


@pytest.mark.parametrize("ledger", ["postgresql"], indirect=True)
def test_postgresql_guards_read_the_ledgers_own_audit_log_whatever_the_search_path(ledger):
    """A session that can create a table elsewhere cannot point the trigger's ``audit_log`` at a
    forged one with ``SET search_path``: the guard functions pin the migration's search_path."""
    _issued(ledger)
    decoy = f"decoy_{uuid.uuid4().hex[:10]}"
    acme = _row(ledger)
    try:
        with ledger.engine.begin() as conn:
            conn.execute(sa.text(f'CREATE SCHEMA "{decoy}"'))
            conn.execute(
                sa.text(f'CREATE TABLE "{decoy}".audit_log (id int, invoice_id int, action text)')
            )
            conn.execute(
                sa.text(f"INSERT INTO \"{decoy}\".audit_log VALUES (999999, {acme['id']}, 'void')")
            )
        with pytest.raises(DBAPIError, match="may only go"):
            with ledger.engine.begin() as conn:
                schema = conn.execute(sa.text("SELECT current_schema()")).scalar_one()
                conn.execute(sa.text(f'SET LOCAL search_path = "{decoy}", "{schema}"'))
                conn.execute(
                    sa.text(
                        "UPDATE invoices SET status = 'void', status_audit_id = 999999 WHERE number = :n"
                    ),
                    {"n": NUMBER},
                )
        assert _row(ledger)["status"] == "issued"
    finally:
        with ledger.engine.begin() as conn:
            conn.execute(sa.text(f'DROP SCHEMA IF EXISTS "{decoy}" CASCADE'))


APP_GRANTS = """
GRANT USAGE ON SCHEMA {schema} TO {app};
GRANT SELECT, INSERT, UPDATE, DELETE ON ALL TABLES IN SCHEMA {schema} TO {app};
REVOKE UPDATE, DELETE ON audit_log FROM {app};
REVOKE INSERT, UPDATE, DELETE ON alembic_version FROM {app};
GRANT USAGE, SELECT ON ALL SEQUENCES IN SCHEMA {schema} TO {app}
"""  # as in the README's "PostgreSQL roles"


def test_postgresql_application_role_runs_the_month_but_cannot_touch_the_guards():
    """The README's roles: the migration role owns the tables, the application role has only the
    grants above. It drafts, issues, voids; it cannot disable, drop or replace a trigger, truncate,
    or rewrite the audit log or the schema version."""
    admin = sa.create_engine(PG_URL, isolation_level="AUTOCOMMIT")
    try:
        with admin.connect():
            pass
    except sa.exc.OperationalError as error:
        admin.dispose()
        if os.environ.get("CI") == "true":  # in CI the PostgreSQL paths must run, not skip
            raise
        pytest.skip(f"PostgreSQL unreachable: {error.orig}")
    tag = uuid.uuid4().hex[:10]
    schema, owner_role, app_role = f"ledger_roles_{tag}", f"ledger_owner_{tag}", f"ledger_app_{tag}"
    with admin.connect() as conn:
        for statement in (
            f"CREATE ROLE {owner_role} LOGIN",
            f"CREATE ROLE {app_role} LOGIN",
            f"CREATE SCHEMA {schema} AUTHORIZATION {owner_role}",
        ):
            conn.execute(sa.text(statement))
    url = sa.engine.make_url(PG_URL)
    options = {"options": f"-csearch_path={schema}"}
    owner = Ledger(
        url.set(username=owner_role).render_as_string(hide_password=False), connect_args=options
    )
    app = Ledger(
        url.set(username=app_role).render_as_string(hide_password=False), connect_args=options
    )
    try:
        owner.migrate()
        with owner.engine.begin() as conn:
            for statement in APP_GRANTS.format(schema=schema, app=app_role).split(";"):
                conn.execute(sa.text(statement))
        app.migrate()  # at head: reads alembic_version only
        _issued(app)
        app.void(NUMBER, "wrong customer address")
        assert _row(app)["status"] == "void"
        for statement in (
            "ALTER TABLE invoices DISABLE TRIGGER invoices_guard",
            "DROP TRIGGER invoices_guard ON invoices",
            "CREATE OR REPLACE FUNCTION invoices_guard() RETURNS trigger LANGUAGE plpgsql "
            "AS $$ BEGIN RETURN NEW; END $$",
            "SET session_replication_role = replica",
            "TRUNCATE audit_log",
            "DELETE FROM audit_log",
            "UPDATE alembic_version SET version_num = '0001'",
        ):
            with pytest.raises(DBAPIError, match="must be owner|permission denied"):
                with app.engine.begin() as conn:
                    conn.execute(sa.text(statement))
    finally:
        app.engine.dispose()
        owner.engine.dispose()
        with admin.connect() as conn:
            conn.execute(sa.text(f"DROP SCHEMA IF EXISTS {schema} CASCADE"))
            for role in (app_role, owner_role):
                conn.execute(sa.text(f"DROP OWNED BY {role}"))
                conn.execute(sa.text(f"DROP ROLE {role}"))
        admin.dispose()
