"""Staging deploys that come from no SQS message (the resync, `tenantry retry`, a dead-letter
redrive, a registry notification): one row each, claimed by a worker with a lease.

Revision ID: 0006
Revises: 0005
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0006"
down_revision = "0005"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "deploy_requests",
        sa.Column("id", sa.Integer, primary_key=True),
        sa.Column("tenant", sa.String(63), nullable=False),
        sa.Column("service", sa.String(63), nullable=False),
        sa.Column("version", sa.String(128), nullable=False),
        sa.Column("digest", sa.String(64), nullable=False),
        sa.Column("source", sa.String(32), nullable=False),
        sa.Column("requested_by", sa.String(255), nullable=False),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("attempts", sa.Integer, nullable=False, server_default="0"),
        sa.Column("next_attempt", sa.DateTime(timezone=True), nullable=False),
        sa.Column("last_error", sa.Text, nullable=False, server_default=""),
        sa.Column("created", sa.DateTime(timezone=True), nullable=False),
        sa.Column("finished", sa.DateTime(timezone=True), nullable=True),
        sa.Column("worker", sa.String(255), nullable=True),
        sa.Column("lease_token", sa.Integer, nullable=False, server_default="0"),
        sa.Column("lease_expires", sa.DateTime(timezone=True), nullable=True),
        # "<tenant>/<service>/<version>" while the request is open (queued, running or
        # parked), NULL once it ended: the unique index makes "one open request per
        # release" the database's rule, so two resyncs racing cannot both queue one.
        sa.Column("open_key", sa.String(255), nullable=True),
    )
    op.create_index("ix_deploy_requests_open_key", "deploy_requests", ["open_key"], unique=True)
    op.create_index("ix_deploy_requests_status", "deploy_requests", ["status", "next_attempt"])
    op.create_index("ix_deploy_requests_service", "deploy_requests", ["tenant", "service", "id"])


def downgrade() -> None:
    op.drop_index("ix_deploy_requests_service", "deploy_requests")
    op.drop_index("ix_deploy_requests_status", "deploy_requests")
    op.drop_index("ix_deploy_requests_open_key", "deploy_requests")
    op.drop_table("deploy_requests")
