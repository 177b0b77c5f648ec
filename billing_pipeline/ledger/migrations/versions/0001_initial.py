"""Initial ledger: invoices, invoice lines, audit log, and the immutability triggers.

Revision ID: 0001
Revises:
Ledgers are forward-only (issued invoices are legal records): no downgrades.
"""

import sqlalchemy as sa
from alembic import op

from billing_pipeline.ledger.tables import execute_ddl, trigger_statements

revision = "0001"
down_revision = None
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
)


def upgrade() -> None:
    bind = op.get_bind()
    dialect = bind.dialect.name
    period_check = (
        "period ~ '^[0-9]{4}-[0-9]{2}$'"
        if dialect == "postgresql"
        else "period GLOB '[0-9][0-9][0-9][0-9]-[0-9][0-9]'"
    )
    op.create_table(
        "invoices",
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("customer_id", sa.String(100), nullable=False),
        sa.Column("period", sa.String(7), nullable=False),
        sa.Column("kind", sa.String(20), nullable=False, server_default="invoice"),
        sa.Column("status", sa.String(10), nullable=False, server_default="draft"),
        sa.Column("number", sa.String(50), nullable=True, unique=True),
        sa.Column("currency", sa.String(3), nullable=False),
        sa.Column("subtotal_micros", sa.BigInteger, nullable=False),
        sa.Column("tax_micros", sa.BigInteger, nullable=False),
        sa.Column("credits_micros", sa.BigInteger, nullable=False),
        sa.Column("total_micros", sa.BigInteger, nullable=False),
        sa.Column("document", sa.Text, nullable=False),
        sa.Column("pdf_sha256", sa.String(64), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.CheckConstraint("status IN ('draft', 'issued', 'void')", name="ck_invoices_status"),
        sa.CheckConstraint(period_check, name="ck_invoices_period"),
        sa.CheckConstraint(
            "status = 'draft' OR number IS NOT NULL", name="ck_invoices_issued_numbered"
        ),
    )
    live = sa.text("status != 'void'")
    op.create_index(
        "uq_invoices_live",
        "invoices",
        ["customer_id", "period", "kind"],
        unique=True,
        sqlite_where=live,
        postgresql_where=live,
    )
    op.create_table(
        "invoice_lines",
        sa.Column("invoice_id", sa.Integer, sa.ForeignKey("invoices.id"), primary_key=True),
        sa.Column("position", sa.Integer, primary_key=True),
        sa.Column("charge_id", sa.String(100), nullable=False),
        sa.Column("description", sa.Text, nullable=False),
        sa.Column("quantity", sa.String(40), nullable=False),
        sa.Column("unit", sa.String(40), nullable=True),
        sa.Column("unit_price", sa.String(40), nullable=True),
        sa.Column("amount_micros", sa.BigInteger, nullable=False),
    )
    op.create_table(
        "audit_log",
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("invoice_id", sa.Integer, nullable=False),
        sa.Column("at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("actor", sa.String(100), nullable=False),
        sa.Column("action", sa.String(40), nullable=False),
        sa.Column("detail", sa.Text, nullable=False),
    )
    for statement in trigger_statements(dialect, IMMUTABLE_COLUMNS):
        execute_ddl(bind, statement)


def downgrade() -> None:
    raise NotImplementedError("the ledger is forward-only: issued invoices are legal records")
