"""Issuing and corrections: gapless (series, sequence), references, month check results.

Revision ID: 0002
Revises: 0001
- one live invoice per (customer, period) now only for kind 'invoice'; corrections (credit notes,
  adjustments) may be many;
- the immutability trigger also freezes series, sequence and references_number.
"""

import sqlalchemy as sa
from alembic import op

from billing_pipeline.ledger.tables import execute_ddl, trigger_statements

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None

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
)


def upgrade() -> None:
    bind = op.get_bind()
    dialect = bind.dialect.name
    op.add_column("invoices", sa.Column("series", sa.String(40), nullable=True))
    op.add_column("invoices", sa.Column("sequence", sa.Integer, nullable=True))
    op.add_column("invoices", sa.Column("references_number", sa.String(50), nullable=True))
    op.create_index("uq_invoices_series_sequence", "invoices", ["series", "sequence"], unique=True)
    op.drop_index("uq_invoices_live", table_name="invoices")
    live = sa.text("status != 'void' AND kind = 'invoice'")
    op.create_index(
        "uq_invoices_live",
        "invoices",
        ["customer_id", "period", "kind"],
        unique=True,
        sqlite_where=live,
        postgresql_where=live,
    )
    op.create_table(
        "month_checks",
        sa.Column("period", sa.String(7), primary_key=True),
        sa.Column("check_name", sa.String(200), primary_key=True),
        sa.Column("passed", sa.Boolean, nullable=False),
        sa.Column("blocking", sa.Boolean, nullable=False),
        sa.Column("detail", sa.Text, nullable=False),
        sa.Column("recorded_at", sa.DateTime(timezone=True), nullable=False),
    )
    if dialect == "sqlite":  # CREATE TRIGGER IF NOT EXISTS would keep the old column list
        bind.exec_driver_sql("DROP TRIGGER IF EXISTS invoices_issued_immutable")
    for statement in trigger_statements(dialect, IMMUTABLE_COLUMNS):
        execute_ddl(bind, statement)


def downgrade() -> None:
    raise NotImplementedError("the ledger is forward-only: issued invoices are legal records")
