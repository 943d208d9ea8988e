"""Operations (production work done by workers, followed by clients) and the audit log.

Revision ID: 0003
Revises: 0002
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None

_TS = sa.DateTime(timezone=True)


def upgrade() -> None:
    op.create_table(
        "operations",
        sa.Column("id", sa.Integer, primary_key=True),
        sa.Column("kind", sa.String(32), nullable=False),
        sa.Column("tenant", sa.String(63), nullable=False),
        sa.Column("service", sa.String(63), nullable=False),
        sa.Column("environment", sa.String(63), nullable=False),
        sa.Column("params", sa.Text, nullable=False),
        sa.Column("requested_by", sa.String(255), nullable=False),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("result", sa.Text, nullable=False),
        sa.Column("progress", sa.Text, nullable=False),
        sa.Column("worker", sa.String(255), nullable=True),
        sa.Column("created", _TS, nullable=False),
        sa.Column("started", _TS, nullable=True),
        sa.Column("finished", _TS, nullable=True),
    )
    op.create_index("ix_operations_status", "operations", ["status", "id"])
    op.create_table(
        "audit",
        sa.Column("id", sa.Integer, primary_key=True),
        sa.Column("at", _TS, nullable=False),
        sa.Column("actor", sa.String(255), nullable=False),
        sa.Column("action", sa.String(255), nullable=False),
        sa.Column("tenant", sa.String(63), nullable=True),
        sa.Column("target", sa.String(1024), nullable=False),
        sa.Column("status", sa.Integer, nullable=False),
        sa.Column("detail", sa.Text, nullable=False),
    )
    op.create_index("ix_audit_tenant", "audit", ["tenant", "id"])


def downgrade() -> None:
    op.drop_index("ix_audit_tenant", "audit")
    op.drop_table("audit")
    op.drop_index("ix_operations_status", "operations")
    op.drop_table("operations")
