"""Money at risk: the records a month-end could not bill (held_records) and waivers of them.

Revision ID: 0005_holds
Revises: 0004_delivery
"""

import sqlalchemy as sa
from alembic import op

revision = "0005_holds"
down_revision = "0004_delivery"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "held_records",
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("period", sa.String(7), nullable=False),
        sa.Column("origin", sa.Text, nullable=False),
        sa.Column("source", sa.String(100), nullable=False),
        sa.Column("reason", sa.String(100), nullable=False),
        sa.Column("customer_id", sa.String(100), nullable=True),
        sa.Column("message", sa.Text, nullable=False),
        sa.Column("recorded_at", sa.DateTime(timezone=True), nullable=False),
    )
    op.create_index("ix_held_records_period", "held_records", ["period"])
    op.create_table(
        "waivers",
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("period", sa.String(7), nullable=False),
        sa.Column("origin", sa.Text, nullable=False),
        sa.Column("reason", sa.Text, nullable=False),
        sa.Column("actor", sa.String(100), nullable=False),
        sa.Column("waived_at", sa.DateTime(timezone=True), nullable=False),
    )
    op.create_index("uq_waivers_origin", "waivers", ["period", "origin"], unique=True)


def downgrade() -> None:
    raise NotImplementedError("the ledger is forward-only")
