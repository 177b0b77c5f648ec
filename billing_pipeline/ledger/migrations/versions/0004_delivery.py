"""Invoice delivery by email: the delivery outbox (one row per invoice and purpose).

Revision ID: 0004_delivery
Revises: 0003_alerts
"""

import sqlalchemy as sa
from alembic import op

revision = "0004_delivery"
down_revision = "0003_alerts"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "invoice_deliveries",
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("invoice_id", sa.Integer, sa.ForeignKey("invoices.id"), nullable=False),
        sa.Column("number", sa.String(50), nullable=False),
        sa.Column("customer_id", sa.String(100), nullable=False),
        sa.Column("period", sa.String(7), nullable=False),
        sa.Column("purpose", sa.String(40), nullable=False),
        sa.Column("recipient", sa.Text, nullable=True),
        sa.Column("status", sa.String(20), nullable=False),
        sa.Column("attempts", sa.Integer, nullable=False, server_default="0"),
        sa.Column("next_attempt_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("message_id", sa.String(200), nullable=False),
        sa.Column("last_error", sa.Text, nullable=True),
        sa.Column("server_response", sa.Text, nullable=True),
        sa.Column("sent_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.CheckConstraint(
            "status IN ('pending', 'sending', 'sent', 'failed', 'no_recipient', 'cancelled')",
            name="ck_invoice_deliveries_status",
        ),
    )
    op.create_index(
        "uq_invoice_deliveries_purpose",
        "invoice_deliveries",
        ["invoice_id", "purpose"],
        unique=True,
    )
    op.create_index(
        "ix_invoice_deliveries_due", "invoice_deliveries", ["status", "next_attempt_at"]
    )


def downgrade() -> None:
    raise NotImplementedError("the ledger is forward-only")
