"""Operations are claimed with a lease: a fencing token and when the lease lapses.

Revision ID: 0004
Revises: 0003
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None


def upgrade() -> None:
    # batch mode: SQLite cannot add columns with constraints in place.
    with op.batch_alter_table("operations") as batch:
        batch.add_column(sa.Column("lease_token", sa.Integer, nullable=False, server_default="0"))
        batch.add_column(sa.Column("lease_expires", sa.DateTime(timezone=True), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("operations") as batch:
        batch.drop_column("lease_expires")
        batch.drop_column("lease_token")
