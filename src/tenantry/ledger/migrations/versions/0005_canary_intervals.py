"""Each analysed canary interval: its verdict and the figures it was decided on.

Revision ID: 0005
Revises: 0004
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "canary_intervals",
        sa.Column("id", sa.Integer, primary_key=True),
        sa.Column("canary_id", sa.Integer, sa.ForeignKey("canaries.id"), nullable=False),
        sa.Column("at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("step", sa.Integer, nullable=False),
        sa.Column("weight", sa.Integer, nullable=False),
        sa.Column("verdict", sa.String(16), nullable=False),
        sa.Column("reason", sa.Text, nullable=False),
        # No data is NULL, never 0: a quiet interval is not a perfect or a broken one.
        sa.Column("canary_requests", sa.Float, nullable=True),
        sa.Column("canary_success_rate", sa.Float, nullable=True),
        sa.Column("canary_p99_s", sa.Float, nullable=True),
        sa.Column("primary_requests", sa.Float, nullable=True),
        sa.Column("primary_success_rate", sa.Float, nullable=True),
        sa.Column("primary_p99_s", sa.Float, nullable=True),
    )
    op.create_index("ix_canary_intervals_canary_id", "canary_intervals", ["canary_id"])


def downgrade() -> None:
    op.drop_index("ix_canary_intervals_canary_id", "canary_intervals")
    op.drop_table("canary_intervals")
