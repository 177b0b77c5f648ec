"""Which migration revision a ledger without ``alembic_version`` really is, read from its schema.

A ledger made by ``create_all`` (before migrations existed, or by an older release) has tables but
no record of its revision. Stamping it at a guess would skip a migration (its tables never made)
or repeat one (creating a table that exists): so the revision is the one whose tables and columns
the ledger has exactly, and a ledger that matches none (partial, or altered by hand) is refused.

``REVISIONS`` is history, frozen like the migrations themselves: each revision and the tables and
columns it adds. A new migration adds one row (a test checks the rows follow the migration chain
and end at the schema in code).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping

from sqlalchemy import inspect
from sqlalchemy.engine import Connection

# revision -> {table: the columns it adds}; a table not named by an earlier row is created by it.
REVISIONS: tuple[tuple[str, dict[str, tuple[str, ...]]], ...] = (
    (
        "0001",
        {
            "invoices": (
                "id",
                "customer_id",
                "period",
                "kind",
                "status",
                "number",
                "currency",
                "subtotal_micros",
                "tax_micros",
                "credits_micros",
                "total_micros",
                "document",
                "pdf_sha256",
                "created_at",
                "updated_at",
            ),
            "invoice_lines": (
                "invoice_id",
                "position",
                "charge_id",
                "description",
                "quantity",
                "unit",
                "unit_price",
                "amount_micros",
            ),
            "audit_log": ("id", "invoice_id", "at", "actor", "action", "detail"),
        },
    ),
    (
        "0002",
        {
            "invoices": ("series", "sequence", "references_number"),
            "month_checks": ("period", "check_name", "passed", "blocking", "detail", "recorded_at"),
        },
    ),
    (
        "0003_alerts",
        {
            "alert_outbox": (
                "alert_id",
                "customer_id",
                "kind",
                "period",
                "payload",
                "url",
                "secret_env",
                "status",
                "attempts",
                "next_attempt_at",
                "lease_until",
                "delivered_at",
                "last_error",
                "created_at",
            ),
            "hard_caps": (
                "customer_id",
                "period",
                "as_of",
                "currency",
                "spend_micros",
                "cap_micros",
                "updated_at",
            ),
        },
    ),
    (
        "0004_delivery",
        {
            "invoice_deliveries": (
                "id",
                "invoice_id",
                "number",
                "customer_id",
                "period",
                "purpose",
                "recipient",
                "status",
                "attempts",
                "next_attempt_at",
                "message_id",
                "last_error",
                "server_response",
                "sent_at",
                "created_at",
                "updated_at",
            ),
        },
    ),
    (
        "0005_holds",
        {
            "held_records": (
                "id",
                "period",
                "origin",
                "source",
                "reason",
                "customer_id",
                "message",
                "recorded_at",
            ),
            "waivers": ("id", "period", "origin", "reason", "actor", "waived_at"),
        },
    ),
    ("0006_immutability", {"invoices": ("status_audit_id", "document_sha256")}),
)
LEDGER_TABLES = frozenset(table for _, adds in REVISIONS for table in adds)


class UnknownLedgerSchema(ValueError):
    """The ledger's tables and columns are those of no revision: it is not stamped."""


def schema_at(revision: str) -> dict[str, frozenset[str]]:
    """The ledger's tables and their columns at ``revision``."""
    schema: dict[str, set[str]] = {}
    for name, adds in REVISIONS:
        for table, columns in adds.items():
            schema.setdefault(table, set()).update(columns)
        if name == revision:
            return {table: frozenset(columns) for table, columns in schema.items()}
    raise KeyError(f"no ledger revision {revision!r}")


def _differences(found: Mapping[str, frozenset[str]], expected: Mapping[str, frozenset[str]]):
    """(missing, extra, how many columns differ) of ``found`` against ``expected``; a whole
    table missing or extra is named once (and weighs its columns)."""
    missing = [f"table {t}" for t in sorted(expected.keys() - found.keys())]
    extra = [f"table {t}" for t in sorted(found.keys() - expected.keys())]
    weight = sum(len(expected[t]) for t in expected.keys() - found.keys())
    weight += sum(len(found[t]) for t in found.keys() - expected.keys())
    for table in sorted(found.keys() & expected.keys()):
        missing += [f"{table}.{c}" for c in sorted(expected[table] - found[table])]
        extra += [f"{table}.{c}" for c in sorted(found[table] - expected[table])]
        weight += len(expected[table] ^ found[table])
    return missing, extra, weight


def revision_of(schema: Mapping[str, Iterable[str]]) -> str | None:
    """The revision whose tables and columns ``schema`` (table -> column names) has exactly; None
    when it has no ledger table (a new ledger). Tables no revision makes are not the ledger's and
    are ignored (a PostgreSQL schema may hold others). Raises UnknownLedgerSchema naming what is
    missing and extra against the nearest revision (fewest columns apart)."""
    found = {t: frozenset(c) for t, c in schema.items() if t in LEDGER_TABLES}
    if not found:
        return None
    nearest = None
    for name, _ in REVISIONS:
        missing, extra, weight = _differences(found, schema_at(name))
        if weight == 0:
            return name
        if nearest is None or weight < nearest[3]:
            nearest = (name, missing, extra, weight)
    name, missing, extra, _ = nearest
    raise UnknownLedgerSchema(
        "the ledger has no alembic_version and its tables match no migration revision, so it "
        f"was neither stamped nor upgraded; nearest is {name}: "
        f"missing {', '.join(missing) or 'nothing'}; extra {', '.join(extra) or 'nothing'} "
        "(make it match a revision, or restore it from a backup, then run again)"
    )


def existing_revision(conn: Connection) -> str | None:
    """``revision_of`` the tables and columns on ``conn`` (its default schema)."""
    inspector = inspect(conn)
    return revision_of(
        {
            table: {column["name"] for column in inspector.get_columns(table)}
            for table in inspector.get_table_names()
            if table in LEDGER_TABLES
        }
    )
