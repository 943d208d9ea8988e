"""Canary rollouts (the controller's stored state) and failovers.

Revision ID: 0002
Revises: 0001
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None

_TS = sa.DateTime(timezone=True)


def upgrade() -> None:
    op.create_table(
        "canaries",
        sa.Column("id", sa.Integer, primary_key=True),
        sa.Column("tenant", sa.String(63), nullable=False),
        sa.Column("service", sa.String(63), nullable=False),
        sa.Column("version", sa.String(128), nullable=False),
        sa.Column("step", sa.Integer, nullable=False),
        sa.Column("weight", sa.Integer, nullable=False),
        sa.Column("passes", sa.Integer, nullable=False),
        sa.Column("failures", sa.Integer, nullable=False),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("reason", sa.Text, nullable=False),
        sa.Column("updated", _TS, nullable=False),
    )
    op.create_index("ix_canaries_service", "canaries", ["tenant", "service"])
    op.create_table(
        "failovers",
        sa.Column("id", sa.Integer, primary_key=True),
        sa.Column("route", sa.String(127), nullable=False),
        sa.Column("cluster", sa.String(63), nullable=False),
        sa.Column("event", sa.String(16), nullable=False),
        sa.Column("at", _TS, nullable=False),
    )


def downgrade() -> None:
    op.drop_table("failovers")
    op.drop_index("ix_canaries_service", "canaries")
    op.drop_table("canaries")
