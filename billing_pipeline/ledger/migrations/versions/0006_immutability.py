"""Immutability hardening (issue 16, item 4): the holes closed by the database on both engines.

Revision ID: 0006_immutability
Revises: 0005_holds
- invoices.status_audit_id: the audit row that authorised the current status; a status changes
  only draft -> issued ('issue') or issued -> void ('void'), pointing at its own new audit row;
- invoices.document_sha256: the document's hash as issued (frozen), so rendering tells a tampered
  document from a changed renderer. Invoices issued before this revision keep NULL (their hash
  cannot be known now; the render check falls back to the JSON copy on disk);
- SQLite: no INSERT/UPDATE OR REPLACE over an issued or void invoice or an audit entry; no line
  moved into an issued invoice; PostgreSQL: the guard functions again, plus BEFORE TRUNCATE.
"""

import sqlalchemy as sa
from alembic import op

from billing_pipeline.ledger.tables import execute_ddl, trigger_statements

revision = "0006_immutability"
down_revision = "0005_holds"
branch_labels = None
depends_on = None

# Frozen here: the columns an issued invoice may not change, as of this revision.
IMMUTABLE_COLUMNS = (
    "customer_id",
    "period",
    "kind",
    "number",
    "currency",
    "subtotal_micros",
    "tax_micros",
    "credits_micros",
    "total_micros",
    "document",
    "created_at",
    "series",
    "sequence",
    "references_number",
    "id",
    "document_sha256",
)


def upgrade() -> None:
    bind = op.get_bind()
    dialect = bind.dialect.name
    op.add_column("invoices", sa.Column("status_audit_id", sa.Integer, nullable=True))
    op.add_column("invoices", sa.Column("document_sha256", sa.String(64), nullable=True))
    if dialect == "sqlite":  # CREATE TRIGGER IF NOT EXISTS would keep the old column list
        bind.exec_driver_sql("DROP TRIGGER IF EXISTS invoices_issued_immutable")
    for statement in trigger_statements(dialect, IMMUTABLE_COLUMNS, hardened=True):
        execute_ddl(bind, statement)


def downgrade() -> None:
    raise NotImplementedError("the ledger is forward-only: issued invoices are legal records")
