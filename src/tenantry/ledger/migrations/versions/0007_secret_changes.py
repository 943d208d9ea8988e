"""Changes to the keys of tenants' secrets: who set or deleted which key in which
environment, its version, and where it was written. Never a value.

Revision ID: 0007
Revises: 0006
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0007"
down_revision = "0006"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "secret_changes",
        sa.Column("id", sa.Integer, primary_key=True),
        sa.Column("at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("tenant", sa.String(63), nullable=False),
        sa.Column("environment", sa.String(63), nullable=False),
        sa.Column("name", sa.String(63), nullable=False),
        sa.Column("key", sa.String(253), nullable=False),
        sa.Column("action", sa.String(16), nullable=False),
        sa.Column("version", sa.Integer, nullable=False),
        sa.Column("actor", sa.String(255), nullable=False),
        sa.Column("clusters", sa.Text, nullable=False, server_default=""),
        sa.Column("result", sa.String(16), nullable=False),
    )
    op.create_index(
        "ix_secret_changes_key", "secret_changes", ["tenant", "environment", "name", "key", "id"]
    )


def downgrade() -> None:
    op.drop_index("ix_secret_changes_key", "secret_changes")
    op.drop_table("secret_changes")
