"""Usage alerts: the alert outbox (fired once per alert id, delivered until acknowledged) and the
hard-cap list a gateway polls.

Revision ID: 0003_alerts
Revises: 0002
"""

import sqlalchemy as sa
from alembic import op

revision = "0003_alerts"
down_revision = "0002"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "alert_outbox",
        sa.Column("alert_id", sa.String(200), primary_key=True),
        sa.Column("customer_id", sa.String(100), nullable=False),
        sa.Column("kind", sa.String(40), nullable=False),
        sa.Column("period", sa.String(7), nullable=False),
        sa.Column("payload", sa.Text, nullable=False),
        sa.Column("url", sa.Text, nullable=True),
        sa.Column("secret_env", sa.String(200), nullable=True),
        sa.Column("status", sa.String(20), nullable=False),
        sa.Column("attempts", sa.Integer, nullable=False, server_default="0"),
        sa.Column("next_attempt_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("lease_until", sa.DateTime(timezone=True), nullable=True),
        sa.Column("delivered_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("last_error", sa.Text, nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.CheckConstraint(
            "status IN ('pending', 'delivered', 'no_endpoint', 'stale')",
            name="ck_alert_outbox_status",
        ),
    )
    op.create_index("ix_alert_outbox_due", "alert_outbox", ["status", "next_attempt_at"])
    op.create_table(
        "hard_caps",
        sa.Column("customer_id", sa.String(100), primary_key=True),
        sa.Column("period", sa.String(7), primary_key=True),
        sa.Column("as_of", sa.String(10), nullable=False),
        sa.Column("currency", sa.String(3), nullable=False),
        sa.Column("spend_micros", sa.BigInteger, nullable=False),
        sa.Column("cap_micros", sa.BigInteger, nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
    )


def downgrade() -> None:
    raise NotImplementedError("the ledger is forward-only")
