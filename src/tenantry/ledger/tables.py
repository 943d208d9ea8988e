"""The ledger's tables: every publication, event, deployment, promotion, deploy request,
and the leases.

SQLAlchemy 2 declarative models; the schema itself is created and changed only by
the Alembic migrations in ``migrations/`` (autogenerate compares against these).
"""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import DateTime, Float, ForeignKey, Index, Integer, String, Text
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column


class Base(DeclarativeBase):
    """Declarative base of every ledger table."""


class Publication(Base):
    """A chart uploaded to the artifact store."""

    __tablename__ = "publications"
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    tenant: Mapped[str] = mapped_column(String(63))
    service: Mapped[str] = mapped_column(String(63))
    version: Mapped[str] = mapped_column(String(128))
    digest: Mapped[str] = mapped_column(String(64))
    git_commit: Mapped[str] = mapped_column(String(64))
    author: Mapped[str] = mapped_column(String(255))
    key: Mapped[str] = mapped_column(String(1024))
    result: Mapped[str] = mapped_column(String(16))
    at: Mapped[datetime] = mapped_column(DateTime(timezone=True))


class Event(Base):
    """A message the deployer received, and what it made of it."""

    __tablename__ = "events"
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    message_id: Mapped[str] = mapped_column(String(128))
    key: Mapped[str] = mapped_column(String(1024))
    result: Mapped[str] = mapped_column(String(16))
    reason: Mapped[str] = mapped_column(Text)
    at: Mapped[datetime] = mapped_column(DateTime(timezone=True))


class Deployment(Base):
    """One deploy of one version of one service to one cluster."""

    __tablename__ = "deployments"
    __table_args__ = (
        Index("ix_deployments_target", "tenant", "service", "environment", "cluster"),
    )
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    tenant: Mapped[str] = mapped_column(String(63))
    service: Mapped[str] = mapped_column(String(63))
    version: Mapped[str] = mapped_column(String(128))
    digest: Mapped[str] = mapped_column(String(64))
    environment: Mapped[str] = mapped_column(String(63))
    cluster: Mapped[str] = mapped_column(String(63))
    actor: Mapped[str] = mapped_column(String(255))
    result: Mapped[str] = mapped_column(String(16))
    reason: Mapped[str] = mapped_column(Text, default="")
    started: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    finished: Mapped[datetime | None] = mapped_column(DateTime(timezone=True), nullable=True)


class Promotion(Base):
    """A request to promote a version to production, and its approval."""

    __tablename__ = "promotions"
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    tenant: Mapped[str] = mapped_column(String(63))
    service: Mapped[str] = mapped_column(String(63))
    version: Mapped[str] = mapped_column(String(128))
    digest: Mapped[str] = mapped_column(String(64))
    environment: Mapped[str] = mapped_column(String(63))
    requested_by: Mapped[str] = mapped_column(String(255))
    requested_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    status: Mapped[str] = mapped_column(String(16))
    approved_by: Mapped[str | None] = mapped_column(String(255), nullable=True)
    approved_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True), nullable=True)
    reason: Mapped[str] = mapped_column(Text, default="")


class Lease(Base):
    """Who may deploy a release now; ``token`` grows with every new holder (fencing)."""

    __tablename__ = "leases"
    name: Mapped[str] = mapped_column(String(255), primary_key=True)
    holder: Mapped[str] = mapped_column(String(255))
    token: Mapped[int] = mapped_column(Integer)
    expires: Mapped[datetime] = mapped_column(DateTime(timezone=True))


class Canary(Base):
    """One canary rollout of a version: the controller's stored state (it resumes from
    the newest row of a service) and, once finished, its outcome."""

    __tablename__ = "canaries"
    __table_args__ = (Index("ix_canaries_service", "tenant", "service"),)
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    tenant: Mapped[str] = mapped_column(String(63))
    service: Mapped[str] = mapped_column(String(63))
    version: Mapped[str] = mapped_column(String(128))
    step: Mapped[int] = mapped_column(Integer)
    weight: Mapped[int] = mapped_column(Integer)
    passes: Mapped[int] = mapped_column(Integer)
    failures: Mapped[int] = mapped_column(Integer)
    status: Mapped[str] = mapped_column(String(16))
    reason: Mapped[str] = mapped_column(Text, default="")
    updated: Mapped[datetime] = mapped_column(DateTime(timezone=True))


class CanaryInterval(Base):
    """One analysed interval of a canary rollout: the step and weight it was measured
    at, the verdict, and the figures it was decided on. A figure is None when Prometheus
    had none (or did not answer), never 0, so "no data" and "zero" stay apart."""

    __tablename__ = "canary_intervals"
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    canary_id: Mapped[int] = mapped_column(Integer, ForeignKey("canaries.id"), index=True)
    at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    step: Mapped[int] = mapped_column(Integer)
    weight: Mapped[int] = mapped_column(Integer)
    verdict: Mapped[str] = mapped_column(String(16))  # analysis.Verdict's kind
    reason: Mapped[str] = mapped_column(Text, default="")
    canary_requests: Mapped[float | None] = mapped_column(Float, nullable=True)
    canary_success_rate: Mapped[float | None] = mapped_column(Float, nullable=True)
    canary_p99_s: Mapped[float | None] = mapped_column(Float, nullable=True)
    primary_requests: Mapped[float | None] = mapped_column(Float, nullable=True)
    primary_success_rate: Mapped[float | None] = mapped_column(Float, nullable=True)
    primary_p99_s: Mapped[float | None] = mapped_column(Float, nullable=True)


class Failover(Base):
    """Traffic moved off a failing primary cluster, or back to it."""

    __tablename__ = "failovers"
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    route: Mapped[str] = mapped_column(String(127))
    cluster: Mapped[str] = mapped_column(String(63))
    event: Mapped[str] = mapped_column(String(16))  # "failover" or "failback"
    at: Mapped[datetime] = mapped_column(DateTime(timezone=True))


class Operation(Base):
    """Production work (an approval's deploy, a rollback) queued by the server and carried
    out by a worker; clients follow it by id. ``progress`` accumulates its log lines.

    A worker holds a running operation by a lease: ``lease_token`` grows with every
    claim (fencing) and ``lease_expires`` is pushed on by its heartbeat; once that has
    passed, another worker may take the operation over."""

    __tablename__ = "operations"
    __table_args__ = (Index("ix_operations_status", "status", "id"),)
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    kind: Mapped[str] = mapped_column(String(32))  # "approve" or "rollback"
    tenant: Mapped[str] = mapped_column(String(63))
    service: Mapped[str] = mapped_column(String(63))
    environment: Mapped[str] = mapped_column(String(63))
    params: Mapped[str] = mapped_column(Text)  # JSON
    requested_by: Mapped[str] = mapped_column(String(255))
    status: Mapped[str] = mapped_column(String(16))  # queued, running, succeeded, failed
    result: Mapped[str] = mapped_column(Text, default="")
    progress: Mapped[str] = mapped_column(Text, default="")
    worker: Mapped[str | None] = mapped_column(String(255), nullable=True)
    created: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    started: Mapped[datetime | None] = mapped_column(DateTime(timezone=True), nullable=True)
    finished: Mapped[datetime | None] = mapped_column(DateTime(timezone=True), nullable=True)
    lease_token: Mapped[int] = mapped_column(Integer, default=0, server_default="0")
    lease_expires: Mapped[datetime | None] = mapped_column(DateTime(timezone=True), nullable=True)


class Audit(Base):
    """One call to the server: the verified identity, the action and how it ended."""

    __tablename__ = "audit"
    __table_args__ = (Index("ix_audit_tenant", "tenant", "id"),)
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    actor: Mapped[str] = mapped_column(String(255))
    action: Mapped[str] = mapped_column(String(255))
    tenant: Mapped[str | None] = mapped_column(String(63), nullable=True)
    target: Mapped[str] = mapped_column(String(1024))
    status: Mapped[int] = mapped_column(Integer)
    detail: Mapped[str] = mapped_column(Text, default="")


class DeployRequest(Base):
    """A staging deploy that comes from no SQS message: queued by the resync, by
    `tenantry retry`, by a dead-letter redrive or by a registry notification, and carried
    out by a deployer worker through the same steps as an S3 event.

    Effectively once: ``open_key`` (``tenant/service/version``) is set while the request
    is open — ``queued``, ``running`` or ``parked`` — and unique, so a second request for
    the same release is folded into the open one. A failed attempt is retried at
    ``next_attempt`` (backoff); after the platform's maximum it is ``parked`` until
    someone retries it. A worker holds a running request by a lease (``lease_token``
    grows with each claim, ``lease_expires`` is pushed on by its heartbeat), like an
    operation's."""

    __tablename__ = "deploy_requests"
    __table_args__ = (
        Index("ix_deploy_requests_open_key", "open_key", unique=True),
        Index("ix_deploy_requests_status", "status", "next_attempt"),
        Index("ix_deploy_requests_service", "tenant", "service", "id"),
    )
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    tenant: Mapped[str] = mapped_column(String(63))
    service: Mapped[str] = mapped_column(String(63))
    version: Mapped[str] = mapped_column(String(128))
    # The sha256 expected (the published one); "" when the requester did not know it.
    digest: Mapped[str] = mapped_column(String(64))
    source: Mapped[str] = mapped_column(String(32))  # resync, retry, redrive, registry-event
    requested_by: Mapped[str] = mapped_column(String(255))
    # queued, running, succeeded, skipped, failed (not worth retrying), parked
    status: Mapped[str] = mapped_column(String(16))
    attempts: Mapped[int] = mapped_column(Integer, default=0, server_default="0")
    next_attempt: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    last_error: Mapped[str] = mapped_column(Text, default="", server_default="")
    created: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    finished: Mapped[datetime | None] = mapped_column(DateTime(timezone=True), nullable=True)
    worker: Mapped[str | None] = mapped_column(String(255), nullable=True)
    lease_token: Mapped[int] = mapped_column(Integer, default=0, server_default="0")
    lease_expires: Mapped[datetime | None] = mapped_column(DateTime(timezone=True), nullable=True)
    open_key: Mapped[str | None] = mapped_column(String(255), nullable=True)


class SecretChange(Base):
    """One change to a key of a tenant's secret in one environment, and where it was
    written: who set or deleted it (the verified identity), the key's version after
    it, and per cluster whether it landed. Never the value: that lives only in the
    environment's clusters (`tenantry.secrets`)."""

    __tablename__ = "secret_changes"
    __table_args__ = (Index("ix_secret_changes_key", "tenant", "environment", "name", "key", "id"),)
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    tenant: Mapped[str] = mapped_column(String(63))
    environment: Mapped[str] = mapped_column(String(63))
    name: Mapped[str] = mapped_column(String(63))
    key: Mapped[str] = mapped_column(String(253))
    # set | delete (a person, through the server) | sync | sync-delete (copied from AWS
    # Secrets Manager: a key changed or gone there)
    action: Mapped[str] = mapped_column(String(16))
    version: Mapped[int] = mapped_column(Integer)
    actor: Mapped[str] = mapped_column(String(255))
    # "cluster: written" / "cluster: failed: why", one line per cluster.
    clusters: Mapped[str] = mapped_column(Text, default="")
    result: Mapped[str] = mapped_column(String(16))  # done | failed
