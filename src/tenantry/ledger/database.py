"""The ledger database: connection, migrations on open, and every read and write the
platform makes (records, operations, audit, leases). `tenantry.ledger` re-exports the
names callers use."""

from __future__ import annotations

import os
from collections.abc import Collection, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from alembic import command
from alembic.config import Config
from sqlalchemy import Engine, and_, create_engine, event, func, or_, select, update
from sqlalchemy.exc import DBAPIError, IntegrityError, InterfaceError, OperationalError
from sqlalchemy.orm import Session, sessionmaker

from tenantry import errors, paths
from tenantry.ledger import tables

MIGRATIONS = Path(__file__).parent / "migrations"
# The most canary intervals one read returns (ten minutes at the default 10 s interval):
# the dashboard and the CLI show the recent ones, and a long rollout stays a small read.
INTERVALS_READ = 60


def now() -> datetime:
    """The current time, UTC, as every ledger timestamp is."""
    return datetime.now(UTC)


def default_url() -> str:
    """``TENANTRY_DATABASE_URL``, else a SQLite file in the state directory."""
    url = os.environ.get("TENANTRY_DATABASE_URL")
    if url:
        return url
    path = paths.state_dir() / "ledger.sqlite"
    path.parent.mkdir(parents=True, exist_ok=True)
    return f"sqlite:///{path}"


def _redacted(url: str) -> str:
    # Never print a password that is part of a database URL.
    scheme, sep, rest = url.partition("://")
    if "@" in rest:
        rest = "***@" + rest.split("@", 1)[1]
    return f"{scheme}{sep}{rest}"


def unavailable(error: BaseException) -> bool:
    """Whether ``error`` says the ledger database could not be reached or dropped the
    connection (down, restarting, unreachable) — worth waiting out and trying again —
    rather than refusing what was asked."""
    if isinstance(error, OperationalError | InterfaceError):
        return True
    return isinstance(error, DBAPIError) and bool(error.connection_invalidated)


@dataclass(frozen=True)
class Claim:
    """An operation a worker claimed: its fencing ``token``, and the worker it was taken
    over from (None when it was queued)."""

    operation: tables.Operation
    token: int
    taken_from: str | None


@dataclass(frozen=True)
class Requested:
    """What asking for a staging deploy did: the open request for that release, and
    whether it was ``new``, folded into one already open, or ``unparked``."""

    request: tables.DeployRequest
    outcome: str  # "queued", "folded" or "unparked"


@dataclass(frozen=True)
class RequestClaim:
    """A deploy request a worker claimed, with its fencing ``token``."""

    request: tables.DeployRequest
    token: int
    taken_from: str | None


# The states in which a deploy request is open: one per release at most.
OPEN_REQUEST = ("queued", "running", "parked")


def open_key(tenant: str, service: str, version: str) -> str:
    """The key that is unique among open deploy requests."""
    return f"{tenant}/{service}/{version}"


@dataclass(frozen=True)
class Released:
    """The newest version that reached a cluster."""

    version: str
    digest: str


class Ledger:
    """A connection pool to the ledger database, migrated to the newest schema."""

    def __init__(self, engine: Engine) -> None:
        self.engine = engine
        self._sessions = sessionmaker(engine, expire_on_commit=False)

    @classmethod
    def open(cls, url: str | None = None) -> Ledger:
        """Connect to ``url`` (default: `default_url`) and apply pending migrations."""
        url = url or default_url()
        if url.startswith("postgresql://"):
            url = "postgresql+psycopg://" + url.removeprefix("postgresql://")
        engine = create_engine(url, pool_pre_ping=True)
        if engine.dialect.name == "sqlite":
            event.listen(engine, "connect", _sqlite_pragmas)
        try:
            with engine.begin() as connection:
                config = Config()
                config.set_main_option("script_location", str(MIGRATIONS))
                config.attributes["connection"] = connection
                command.upgrade(config, "head")
        except OperationalError as e:
            raise errors.TenantryError(
                f"cannot open the ledger at {_redacted(url)}: {e.orig}",
                fix="check TENANTRY_DATABASE_URL, or unset it to use the local SQLite ledger",
            ) from e
        return cls(engine)

    def close(self) -> None:
        """Close every pooled connection."""
        self.engine.dispose()

    def reachable(self) -> bool:
        """Whether the database answers a query right now."""
        try:
            with self.engine.connect() as connection:
                connection.execute(select(1))
        except DBAPIError as e:
            if unavailable(e):
                return False
            raise
        return True

    def __enter__(self) -> Ledger:
        return self

    def __exit__(self, *_: object) -> None:
        self.close()

    @contextmanager
    def session(self) -> Iterator[Session]:
        """A transaction: committed on success, rolled back on any error."""
        with self._sessions.begin() as session:
            yield session

    # --- records -----------------------------------------------------------------

    def add(self, row: tables.Base) -> Any:
        """Insert one row; returns it with its id."""
        with self.session() as session:
            session.add(row)
            session.flush()
            return row

    def finish_deployment(self, deployment_id: int, *, result: str, reason: str = "") -> None:
        """Record how a deployment ended."""
        with self.session() as session:
            session.execute(
                update(tables.Deployment)
                .where(tables.Deployment.id == deployment_id)
                .values(result=result, reason=reason, finished=now())
            )

    def interrupt_deployments(
        self, *, tenant: str, service: str, environment: str, reason: str
    ) -> int:
        """Mark a service's deploys still ``running`` in ``environment`` as interrupted —
        called by whoever now holds its lease, so those were left by a dead worker."""
        with self.session() as session:
            done = session.execute(
                update(tables.Deployment)
                .where(
                    tables.Deployment.tenant == tenant,
                    tables.Deployment.service == service,
                    tables.Deployment.environment == environment,
                    tables.Deployment.result == "running",
                )
                .values(result="interrupted", reason=reason, finished=now())
            )
            return int(done.rowcount)  # type: ignore[attr-defined]

    def in_flight(
        self, *, tenant: str, service: str, version: str, environment: str, since: datetime
    ) -> bool:
        """Whether a deploy of this version started at ``since`` or later is still marked
        running in ``environment`` (under way, or cut short by a worker that died)."""
        deployment = tables.Deployment
        with self.session() as session:
            return session.scalars(
                select(deployment.id).where(
                    deployment.tenant == tenant, deployment.service == service,
                    deployment.version == version, deployment.environment == environment,
                    deployment.result == "running", deployment.started >= since,
                ).limit(1)
            ).first() is not None  # fmt: skip

    def released(
        self, *, tenant: str, service: str, environment: str, cluster: str | None = None
    ) -> Released | None:
        """The newest version that succeeded in ``environment`` (on ``cluster`` if given)."""
        query = (
            select(tables.Deployment)
            .where(
                tables.Deployment.tenant == tenant,
                tables.Deployment.service == service,
                tables.Deployment.environment == environment,
                tables.Deployment.result == "succeeded",
            )
            .order_by(tables.Deployment.id.desc())
            .limit(1)
        )
        if cluster is not None:
            query = query.where(tables.Deployment.cluster == cluster)
        with self.session() as session:
            row = session.scalars(query).first()
            return Released(row.version, row.digest) if row else None

    def history(self, *, tenant: str, service: str, limit: int = 50) -> list[tables.Deployment]:
        """The newest deployments of a service, newest first."""
        with self.session() as session:
            return list(
                session.scalars(
                    select(tables.Deployment)
                    .where(tables.Deployment.tenant == tenant, tables.Deployment.service == service)
                    .order_by(tables.Deployment.id.desc())
                    .limit(limit)
                )
            )

    def current_releases(
        self, *, tenants: Collection[str] | None = None, service: str | None = None
    ) -> list[tables.Deployment]:
        """The newest successful deployment of each service in each cluster: of ``tenants``
        (None: all) and of ``service`` alone when given.

        The database picks the newest row per target (one grouped query over the target
        index), so the cost does not grow with each service's history."""
        deployment = tables.Deployment
        newest = (
            select(func.max(deployment.id))
            .where(deployment.result == "succeeded")
            .group_by(deployment.tenant, deployment.service, deployment.environment,
                      deployment.cluster)
        )  # fmt: skip
        if tenants is not None:
            newest = newest.where(deployment.tenant.in_(list(tenants)))
        if service is not None:
            newest = newest.where(deployment.service == service)
        query = (
            select(deployment)
            .where(deployment.id.in_(newest))
            .order_by(deployment.tenant, deployment.service, deployment.environment,
                      deployment.cluster)
        )  # fmt: skip
        with self.session() as session:
            return list(session.scalars(query))

    def events(self, *, limit: int = 100) -> list[tables.Event]:
        """The newest events, newest first."""
        with self.session() as session:
            return list(
                session.scalars(select(tables.Event).order_by(tables.Event.id.desc()).limit(limit))
            )

    def deployments(self) -> list[tables.Deployment]:
        """Every deployment, oldest first."""
        with self.session() as session:
            return list(session.scalars(select(tables.Deployment).order_by(tables.Deployment.id)))

    def promotion(self, promotion_id: int) -> tables.Promotion | None:
        """One promotion request."""
        with self.session() as session:
            return session.get(tables.Promotion, promotion_id)

    def set_promotion(self, promotion_id: int, **values: Any) -> None:
        """Update a promotion request."""
        with self.session() as session:
            session.execute(
                update(tables.Promotion).where(tables.Promotion.id == promotion_id).values(**values)
            )

    def transition_promotion(
        self,
        promotion_id: int,
        *,
        from_status: str | tuple[str, ...],
        enqueue: tables.Operation | None = None,
        **values: Any,
    ) -> bool:
        """Update a promotion only if it is still ``from_status`` (or one of them): one
        conditional UPDATE, so of two concurrent approvals exactly one wins. ``enqueue`` is
        queued in the same transaction, so an approval never exists without the work it
        starts."""
        with self.session() as session:
            changed = session.execute(
                update(tables.Promotion)
                .where(
                    tables.Promotion.id == promotion_id,
                    tables.Promotion.status.in_(
                        (from_status,) if isinstance(from_status, str) else from_status
                    ),
                )
                .values(**values)
            )
            if changed.rowcount != 1:  # type: ignore[attr-defined]
                return False
            if enqueue is not None:
                session.add(enqueue)
            return True

    def promotions(
        self, *, tenants: Collection[str] | None, status: str | None = None, limit: int = 100
    ) -> list[tables.Promotion]:
        """Promotion requests, newest first: of ``tenants`` (None: every tenant)."""
        query = select(tables.Promotion).order_by(tables.Promotion.id.desc()).limit(limit)
        if tenants is not None:
            query = query.where(tables.Promotion.tenant.in_(list(tenants)))
        if status is not None:
            query = query.where(tables.Promotion.status == status)
        with self.session() as session:
            return list(session.scalars(query))

    def deployments_page(
        self,
        *,
        tenants: Collection[str] | None,
        service: str | None = None,
        environment: str | None = None,
        result: str | None = None,
        limit: int = 50,
        before: int | None = None,
    ) -> list[tables.Deployment]:
        """Deployments newest first, filtered; ``before`` (an id) pages further back."""
        query = select(tables.Deployment).order_by(tables.Deployment.id.desc()).limit(limit)
        if tenants is not None:
            query = query.where(tables.Deployment.tenant.in_(list(tenants)))
        for column, value in (
            (tables.Deployment.service, service),
            (tables.Deployment.environment, environment),
            (tables.Deployment.result, result),
        ):
            if value is not None:
                query = query.where(column == value)
        if before is not None:
            query = query.where(tables.Deployment.id < before)
        with self.session() as session:
            return list(session.scalars(query))

    def publications(
        self, *, tenant: str, service: str, limit: int = 50
    ) -> list[tables.Publication]:
        """A service's publications (provenance of each version), newest first."""
        with self.session() as session:
            return list(session.scalars(
                select(tables.Publication)
                .where(tables.Publication.tenant == tenant, tables.Publication.service == service)
                .order_by(tables.Publication.id.desc())
                .limit(limit)
            ))  # fmt: skip

    def set_publication(self, publication_id: int, *, result: str) -> None:
        """Record how a publication's upload ended."""
        with self.session() as session:
            session.execute(
                update(tables.Publication)
                .where(tables.Publication.id == publication_id)
                .values(result=result)
            )

    def published_digests(self, *, tenant: str, service: str, version: str) -> set[str]:
        """The sha256 digests `tenantry publish` recorded for one version (normally one):
        what the deployer trusts, rather than anything stored beside the archive."""
        with self.session() as session:
            return set(session.scalars(
                select(tables.Publication.digest).where(
                    tables.Publication.tenant == tenant,
                    tables.Publication.service == service,
                    tables.Publication.version == version,
                    # "publishing": recorded, upload under way (its event may come first).
                    tables.Publication.result.in_(("publishing", "published", "unchanged")),
                )
            ))  # fmt: skip

    # --- operations (production work done by workers) ------------------------------

    def operation(self, operation_id: int) -> tables.Operation | None:
        """One operation."""
        with self.session() as session:
            return session.get(tables.Operation, operation_id)

    def operations(
        self, *, tenants: Collection[str], service: str | None = None, limit: int = 5
    ) -> list[tables.Operation]:
        """Operations of ``tenants`` (and ``service``), newest first."""
        query = (
            select(tables.Operation)
            .where(tables.Operation.tenant.in_(list(tenants)))
            .order_by(tables.Operation.id.desc())
            .limit(limit)
        )
        if service is not None:
            query = query.where(tables.Operation.service == service)
        with self.session() as session:
            return list(session.scalars(query))

    def claim_operation(self, *, worker: str, ttl_s: float = 30.0) -> Claim | None:
        """Take the oldest operation that is queued, or running under a lapsed lease (its
        worker died or lost the ledger), for ``worker``; None when there is none.

        The claim is one conditional UPDATE on the operation's fencing token, so two
        workers never both win it; each claim gets a larger token. Operations on the same
        service in the same environment run one at a time: one whose service has a live
        operation waits."""
        while True:
            with self.session() as session:
                at = now()
                lapsed = or_(
                    tables.Operation.status == "queued",
                    and_(
                        tables.Operation.status == "running",
                        or_(tables.Operation.lease_expires.is_(None),
                            tables.Operation.lease_expires < at),
                    ),
                )  # fmt: skip
                busy = {
                    (row.tenant, row.service, row.environment)
                    for row in session.execute(
                        select(tables.Operation.tenant, tables.Operation.service,
                               tables.Operation.environment)
                        .where(tables.Operation.status == "running",
                               tables.Operation.lease_expires >= at)
                    )
                }  # fmt: skip
                candidates = session.execute(
                    select(tables.Operation.id, tables.Operation.lease_token,
                           tables.Operation.worker, tables.Operation.tenant,
                           tables.Operation.service, tables.Operation.environment)
                    .where(lapsed)
                    .order_by(tables.Operation.id)
                    .limit(100)
                ).all()  # fmt: skip
                free = [c for c in candidates if (c.tenant, c.service, c.environment) not in busy]
                if not free:
                    return None
                chosen = free[0]
                taken = session.execute(
                    update(tables.Operation)
                    .where(tables.Operation.id == chosen.id,
                           tables.Operation.lease_token == chosen.lease_token, lapsed)
                    .values(status="running", worker=worker, lease_token=chosen.lease_token + 1,
                            lease_expires=at + timedelta(seconds=ttl_s),
                            started=func.coalesce(tables.Operation.started, at))
                )  # fmt: skip
                if taken.rowcount == 1:  # type: ignore[attr-defined]
                    return Claim(
                        session.get_one(tables.Operation, chosen.id),
                        token=chosen.lease_token + 1,
                        taken_from=chosen.worker,
                    )

    def _renew(
        self, table: type[tables.Operation] | type[tables.DeployRequest], row_id: int, *,
        token: int, ttl_s: float,
    ) -> bool:  # fmt: skip
        """Extend the lease on a claimed row; False when another claim superseded it."""
        with self.session() as session:
            renewed = session.execute(
                update(table)
                .where(table.id == row_id, table.lease_token == token, table.status == "running")
                .values(lease_expires=now() + timedelta(seconds=ttl_s))
            )
            return bool(renewed.rowcount == 1)  # type: ignore[attr-defined]

    def renew_operation(self, operation_id: int, *, token: int, ttl_s: float) -> bool:
        """Extend a claimed operation's lease; False when another claim superseded it."""
        return self._renew(tables.Operation, operation_id, token=token, ttl_s=ttl_s)

    def add_progress(self, operation_id: int, line: str) -> None:
        """Append one line to an operation's progress log."""
        with self.session() as session:
            session.execute(
                update(tables.Operation)
                .where(tables.Operation.id == operation_id)
                .values(progress=tables.Operation.progress + line.rstrip("\n") + "\n")
            )

    def finish_operation(self, operation_id: int, *, token: int, status: str, result: str) -> bool:
        """Record how an operation ended — only under the claim ``token`` (a worker whose
        lease was taken over records nothing); whether it was recorded."""
        with self.session() as session:
            done = session.execute(
                update(tables.Operation)
                .where(tables.Operation.id == operation_id,
                       tables.Operation.lease_token == token)
                .values(status=status, result=result, finished=now(), lease_expires=None)
            )  # fmt: skip
            return bool(done.rowcount == 1)  # type: ignore[attr-defined]

    # --- deploy requests (staging deploys that come from no SQS message) -------------

    def request_deploy(
        self, *, tenant: str, service: str, version: str, digest: str, source: str,
        requested_by: str, unpark: bool = False,
    ) -> Requested:  # fmt: skip
        """Queue a staging deploy of one release, effectively once: a request already open
        for it absorbs this one (``folded``) — except that ``unpark`` (a person's retry)
        turns a parked one back to queued with its attempts reset (``unparked``)."""
        key = open_key(tenant, service, version)
        while True:
            with self.session() as session:
                found = session.scalars(
                    select(tables.DeployRequest).where(tables.DeployRequest.open_key == key)
                ).first()
                if found is not None:
                    if not (unpark and found.status == "parked"):
                        return Requested(found, "folded")
                    at = now()
                    changed = session.execute(
                        update(tables.DeployRequest)
                        .where(tables.DeployRequest.id == found.id,
                               tables.DeployRequest.status == "parked")
                        .values(status="queued", attempts=0, next_attempt=at, source=source,
                                requested_by=requested_by, worker=None, lease_expires=None)
                    )  # fmt: skip
                    if changed.rowcount == 1:  # type: ignore[attr-defined]
                        return Requested(session.get_one(tables.DeployRequest, found.id),
                                         "unparked")  # fmt: skip
                    continue  # changed meanwhile: look again
            try:
                with self.session() as session:
                    at = now()
                    row = tables.DeployRequest(
                        tenant=tenant, service=service, version=version, digest=digest,
                        source=source, requested_by=requested_by, status="queued", attempts=0,
                        next_attempt=at, last_error="", created=at, lease_token=0, open_key=key,
                    )  # fmt: skip
                    session.add(row)
                    session.flush()
                    return Requested(row, "queued")
            except IntegrityError:
                continue  # another requester opened it first: fold into theirs

    def claim_request(self, *, worker: str, ttl_s: float) -> RequestClaim | None:
        """Take the oldest deploy request that is due (queued, its backoff over) or running
        under a lapsed lease (its worker died), for ``worker``; None when none is.

        One conditional UPDATE on the request's fencing token: two workers never both win
        it, and each claim gets a larger token."""
        request = tables.DeployRequest
        while True:
            with self.session() as session:
                at = now()
                claimable = or_(
                    and_(request.status == "queued", request.next_attempt <= at),
                    and_(request.status == "running",
                         or_(request.lease_expires.is_(None), request.lease_expires < at)),
                )  # fmt: skip
                chosen = session.execute(
                    select(request.id, request.lease_token, request.worker, request.status)
                    .where(claimable).order_by(request.next_attempt, request.id).limit(1)
                ).first()  # fmt: skip
                if chosen is None:
                    return None
                taken = session.execute(
                    update(request)
                    .where(request.id == chosen.id, request.lease_token == chosen.lease_token,
                           claimable)
                    .values(status="running", worker=worker, lease_token=chosen.lease_token + 1,
                            lease_expires=at + timedelta(seconds=ttl_s))
                )  # fmt: skip
                if taken.rowcount == 1:  # type: ignore[attr-defined]
                    return RequestClaim(
                        session.get_one(request, chosen.id), token=chosen.lease_token + 1,
                        taken_from=chosen.worker if chosen.status == "running" else None,
                    )  # fmt: skip

    def renew_request(self, request_id: int, *, token: int, ttl_s: float) -> bool:
        """Extend a claimed request's lease; False when another claim superseded it."""
        return self._renew(tables.DeployRequest, request_id, token=token, ttl_s=ttl_s)

    def finish_request(self, request_id: int, *, token: int, status: str, error: str = "") -> bool:
        """Close a claimed request (``succeeded``, ``skipped`` or ``failed``) under its claim
        ``token``; whether it was recorded (a worker that lost the claim records nothing)."""
        with self.session() as session:
            done = session.execute(
                update(tables.DeployRequest)
                .where(tables.DeployRequest.id == request_id,
                       tables.DeployRequest.lease_token == token,
                       tables.DeployRequest.status == "running")
                .values(status=status, last_error=error, finished=now(), lease_expires=None,
                        open_key=None)
            )  # fmt: skip
            return bool(done.rowcount == 1)  # type: ignore[attr-defined]

    def fail_request_attempt(
        self, request_id: int, *, token: int, error: str, max_attempts: int, delay_s: float
    ) -> str | None:
        """Count a failed attempt of a claimed request: queued again after ``delay_s``, or
        ``parked`` once ``max_attempts`` are spent (it stays open, so the resync does not
        queue the release again; a retry unparks it). The new status, or None when the
        claim was lost."""
        with self.session() as session:
            row = session.get(tables.DeployRequest, request_id)
            if row is None or row.lease_token != token or row.status != "running":
                return None
            attempts = row.attempts + 1
            status = "parked" if attempts >= max_attempts else "queued"
            session.execute(
                update(tables.DeployRequest)
                .where(tables.DeployRequest.id == request_id,
                       tables.DeployRequest.lease_token == token)
                .values(status=status, attempts=attempts, last_error=error, lease_expires=None,
                        next_attempt=now() + timedelta(seconds=delay_s),
                        finished=now() if status == "parked" else None)
            )  # fmt: skip
            return status

    def park_request(self, request_id: int, *, error: str) -> bool:
        """Park a request nobody has claimed yet (a release whose SQS message went to the
        dead-letter queue): it stays open, so the resync leaves the release alone, until
        someone retries it."""
        with self.session() as session:
            done = session.execute(
                update(tables.DeployRequest)
                .where(tables.DeployRequest.id == request_id,
                       tables.DeployRequest.status == "queued",
                       tables.DeployRequest.lease_token == 0)
                .values(status="parked", last_error=error, finished=now())
            )  # fmt: skip
            return bool(done.rowcount == 1)  # type: ignore[attr-defined]

    def requeue_request(self, request_id: int, *, token: int, delay_s: float) -> bool:
        """Hand a claimed request back without spending an attempt (its release was busy)."""
        with self.session() as session:
            done = session.execute(
                update(tables.DeployRequest)
                .where(tables.DeployRequest.id == request_id,
                       tables.DeployRequest.lease_token == token,
                       tables.DeployRequest.status == "running")
                .values(status="queued", lease_expires=None,
                        next_attempt=now() + timedelta(seconds=delay_s))
            )  # fmt: skip
            return bool(done.rowcount == 1)  # type: ignore[attr-defined]

    def deploy_request(self, request_id: int) -> tables.DeployRequest | None:
        """One deploy request."""
        with self.session() as session:
            return session.get(tables.DeployRequest, request_id)

    def deploy_requests(
        self, *, tenants: Collection[str] | None = None, service: str | None = None,
        status: str | None = None, limit: int = 50,
    ) -> list[tables.DeployRequest]:  # fmt: skip
        """Deploy requests newest first: of ``tenants`` (None: all), ``service``, ``status``."""
        request = tables.DeployRequest
        query = select(request).order_by(request.id.desc()).limit(limit)
        if tenants is not None:
            query = query.where(request.tenant.in_(list(tenants)))
        if service is not None:
            query = query.where(request.service == service)
        if status is not None:
            query = query.where(request.status == status)
        with self.session() as session:
            return list(session.scalars(query))

    def open_request(self, tenant: str, service: str, version: str) -> tables.DeployRequest | None:
        """The open (queued, running or parked) request for one release, if any."""
        with self.session() as session:
            return session.scalars(
                select(tables.DeployRequest)
                .where(tables.DeployRequest.open_key == open_key(tenant, service, version))
            ).first()  # fmt: skip

    # --- audit -----------------------------------------------------------------------

    def audit_log(
        self, *, tenants: Collection[str] | None, limit: int = 100, before: int | None = None
    ) -> list[tables.Audit]:
        """Calls to the server, newest first: about ``tenants`` (None: every call)."""
        query = select(tables.Audit).order_by(tables.Audit.id.desc()).limit(limit)
        if tenants is not None:
            query = query.where(tables.Audit.tenant.in_(list(tenants)))
        if before is not None:
            query = query.where(tables.Audit.id < before)
        with self.session() as session:
            return list(session.scalars(query))

    # --- secrets -------------------------------------------------------------------

    def secret_keys(
        self, *, tenant: str, environment: str | None = None
    ) -> list[tables.SecretChange]:
        """The last change of every key of ``tenant``'s secrets that is not deleted (in
        ``environment``, or in all), by environment, name and key."""
        last = (
            select(func.max(tables.SecretChange.id))
            .where(tables.SecretChange.tenant == tenant)
            .group_by(
                tables.SecretChange.environment, tables.SecretChange.name, tables.SecretChange.key
            )
        )
        if environment is not None:
            last = last.where(tables.SecretChange.environment == environment)
        query = (
            select(tables.SecretChange)
            .where(
                tables.SecretChange.id.in_(last),
                tables.SecretChange.action.not_in(("delete", "sync-delete")),
            )
            .order_by(
                tables.SecretChange.environment, tables.SecretChange.name, tables.SecretChange.key
            )
        )
        with self.session() as session:
            return list(session.scalars(query))

    def secret_version(self, *, tenant: str, environment: str, name: str, key: str) -> int:
        """The version of a key's last change (0: never set)."""
        with self.session() as session:
            found = session.scalar(
                select(func.max(tables.SecretChange.version)).where(
                    tables.SecretChange.tenant == tenant,
                    tables.SecretChange.environment == environment,
                    tables.SecretChange.name == name,
                    tables.SecretChange.key == key,
                )
            )
        return int(found or 0)

    # --- canaries and failovers ----------------------------------------------------

    def canary(self, tenant: str, service: str) -> tables.Canary | None:
        """The newest canary rollout of a service."""
        with self.session() as session:
            return session.scalars(
                select(tables.Canary)
                .where(tables.Canary.tenant == tenant, tables.Canary.service == service)
                .order_by(tables.Canary.id.desc())
                .limit(1)
            ).first()

    def set_canary(self, canary_id: int, **values: Any) -> None:
        """Update a canary rollout's stored state."""
        with self.session() as session:
            session.execute(
                update(tables.Canary).where(tables.Canary.id == canary_id).values(**values)
            )

    def add_canary_interval(
        self, canary_id: int, *, step: int, weight: int, verdict: str, reason: str,
        canary_requests: float | None = None, canary_success_rate: float | None = None,
        canary_p99_s: float | None = None, primary_requests: float | None = None,
        primary_success_rate: float | None = None, primary_p99_s: float | None = None,
    ) -> tables.CanaryInterval:  # fmt: skip
        """Record one analysed interval of rollout ``canary_id`` (figures None: no data)."""
        row: tables.CanaryInterval = self.add(tables.CanaryInterval(
            canary_id=canary_id, at=now(), step=step, weight=weight, verdict=verdict,
            reason=reason, canary_requests=canary_requests,
            canary_success_rate=canary_success_rate, canary_p99_s=canary_p99_s,
            primary_requests=primary_requests, primary_success_rate=primary_success_rate,
            primary_p99_s=primary_p99_s,
        ))  # fmt: skip
        return row

    def canary_intervals(
        self, canary_id: int, *, limit: int = INTERVALS_READ
    ) -> list[tables.CanaryInterval]:
        """The newest ``limit`` intervals of rollout ``canary_id``, oldest first (at most
        `INTERVALS_READ`: a rollout stuck for hours still reads a bounded page)."""
        limit = max(0, min(limit, INTERVALS_READ))
        interval = tables.CanaryInterval
        with self.session() as session:
            newest = session.scalars(
                select(interval).where(interval.canary_id == canary_id)
                .order_by(interval.id.desc()).limit(limit)
            )  # fmt: skip
            return list(reversed(list(newest)))

    def failovers(self, *, limit: int = 20) -> list[tables.Failover]:
        """The newest failovers and failbacks first."""
        with self.session() as session:
            return list(session.scalars(
                select(tables.Failover).order_by(tables.Failover.id.desc()).limit(limit)
            ))  # fmt: skip

    # --- leases ------------------------------------------------------------------

    def acquire(self, name: str, *, holder: str, ttl_s: float) -> int | None:
        """Take lease ``name`` if it is free or lapsed; the fencing token, or None if held."""
        expires = now() + timedelta(seconds=ttl_s)
        with self.session() as session:
            taken = session.execute(
                update(tables.Lease)
                .where(tables.Lease.name == name, tables.Lease.expires < now())
                .values(holder=holder, token=tables.Lease.token + 1, expires=expires)
            )
            if taken.rowcount == 1:  # type: ignore[attr-defined]
                return int(session.get_one(tables.Lease, name).token)
            if session.get(tables.Lease, name) is not None:
                return None
        try:
            with self.session() as session:
                session.add(tables.Lease(name=name, holder=holder, token=1, expires=expires))
        except IntegrityError:
            return None  # another holder created it first
        return 1

    def renew(self, name: str, *, holder: str, token: int, ttl_s: float) -> bool:
        """Extend a held lease; False if it was lost (lapsed and taken by another)."""
        with self.session() as session:
            renewed = session.execute(
                update(tables.Lease)
                .where(
                    tables.Lease.name == name,
                    tables.Lease.holder == holder,
                    tables.Lease.token == token,
                )
                .values(expires=now() + timedelta(seconds=ttl_s))
            )
            return bool(renewed.rowcount == 1)  # type: ignore[attr-defined]

    def release(self, name: str, *, holder: str, token: int) -> None:
        """Give a lease back early (it lapses at once)."""
        with self.session() as session:
            session.execute(
                update(tables.Lease)
                .where(
                    tables.Lease.name == name,
                    tables.Lease.holder == holder,
                    tables.Lease.token == token,
                )
                .values(expires=now() - timedelta(seconds=1))
            )


def _sqlite_pragmas(connection: Any, _record: Any) -> None:
    # WAL lets readers run beside the one writer; the timeout makes writers queue
    # instead of failing when two deployer processes share the file.
    cursor = connection.cursor()
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute("PRAGMA busy_timeout=10000")
    cursor.close()
