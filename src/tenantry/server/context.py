"""What every request handler works with: the platform repository, the ledger, the
identity reviewer, and the proven caller with their rights.

An `ApiError` is how a handler refuses: it carries the HTTP status and a message a
person can act on; `tenantry.server.app` turns it (and every `TenantryError`) into a
JSON body ``{"error", "fix"?, "right"?, "holders"?}``.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Annotated

from fastapi import Path, Request

from tenantry import errors
from tenantry.kube.client import Kube
from tenantry.ledger import Ledger
from tenantry.server import identity, rights
from tenantry.spec import models
from tenantry.spec.repository import Repository
from tenantry.tenancy import reconcile

# A ledger row's number in a path. Bounded to the database's integer ids: a larger one
# would not be "not found" but an overflow inside the driver (a 500, or a 503 claiming
# the database is down).
RowId = Annotated[int, Path(ge=1, le=2**31 - 1)]


class ApiError(errors.TenantryError):
    """A refusal with an HTTP status (404 unknown, 409 state forbids it, 403 no right)."""

    def __init__(
        self, status: int, message: str, *, fix: str | None = None, right: str = "",
        holders: str = "",
    ) -> None:  # fmt: skip
        super().__init__(message, fix=fix)
        self.status = status
        self.right = right
        self.holders = holders


def status_of(e: errors.TenantryError) -> int:
    """The HTTP status of a refusal (the API's and the dashboard's)."""
    if isinstance(e, ApiError):
        return e.status
    if isinstance(e, identity.UnauthenticatedError):
        return 401
    if isinstance(
        e,
        identity.IdentityUnavailableError
        | errors.KubeUnavailableError
        | errors.ClusterError
        | errors.ToolError
        | errors.HelmError,
    ):
        return 503
    if isinstance(e, errors.UsageError):
        return 404
    return 409


@dataclass
class Server:
    """The server's long-lived parts, shared by every request."""

    repo: Repository
    ledger: Ledger
    reviewer: identity.Reviewer
    connect: Callable[[str], Kube] = field(repr=False)

    def cluster(self, name: str) -> Kube:
        """An admin connection to the platform's cluster ``name`` (close it after use)."""
        return self.connect(name)


def cluster_connector(repo: Repository) -> Callable[[str], Kube]:
    """Connections to the platform's clusters by name, with the platform's credentials."""

    def connect(name: str) -> Kube:
        environment, cluster = repo.platform.cluster(name)
        return reconcile.resolve(cluster, environment.name, repo.root).connect()

    return connect


@dataclass(frozen=True)
class Caller:
    """The proven person making a request, and the platform they act on."""

    person: rights.Person
    repo: Repository

    def tenant(self, name: str) -> models.Tenant:
        """The tenant ``name`` if the caller may read it; 404 otherwise.

        A tenant the caller may not read answers like one that does not exist, so
        nobody learns other teams' names by probing."""
        for tenant in self.repo.tenants:
            if tenant.name == name and self.may("read", tenant).allowed:
                return tenant
        raise ApiError(404, f"no tenant {name!r} that you may see",
                       fix="GET /api/v1/tenants lists yours")  # fmt: skip

    def may(
        self, right: rights.Right, tenant: models.Tenant | None, *, requested_by: str | None = None
    ) -> rights.Decision:
        """The decision for ``right`` on ``tenant``."""
        return rights.decide(self.person, right, tenant=tenant, platform=self.repo.platform,
                             requested_by=requested_by)  # fmt: skip

    def require(
        self, right: rights.Right, tenant: models.Tenant | None, *, requested_by: str | None = None
    ) -> None:
        """403 naming the missing right and its holders, unless allowed."""
        decision = self.may(right, tenant, requested_by=requested_by)
        if not decision.allowed:
            raise ApiError(
                403, decision.reason, right=right, holders=decision.holders,
                fix=f"ask one of: {decision.holders}",
            )  # fmt: skip

    def readable(self) -> list[models.Tenant]:
        """Every tenant the caller may read."""
        return [t for t in self.repo.tenants if self.may("read", t).allowed]

    @property
    def admin(self) -> bool:
        """Whether the caller is a platform admin."""
        return rights.is_admin(self.person, self.repo.platform)


def server(request: Request) -> Server:
    """The `Server` of the application handling ``request``."""
    found: Server = request.app.state.server
    return found


def caller(request: Request) -> Caller:
    """The proven caller: 401 without a token the management cluster accepts."""
    header = request.headers.get("authorization", "")
    scheme, _, token = header.partition(" ")
    if scheme.lower() != "bearer":
        token = ""
    found = server(request)
    person = found.reviewer.person(token.strip())
    request.state.actor = person.username
    return Caller(person, found.repo)


def service_ref(caller_: Caller, tenant: str, service: str) -> tuple[models.Tenant, str]:
    """The tenant (readable by the caller) and ``tenant/service``; 404 if either is unknown."""
    found = caller_.tenant(tenant)
    ref = f"{tenant}/{service}"
    if not any(s.ref == ref for s in caller_.repo.services):
        raise ApiError(404, f"no service {ref!r}", fix=f"GET /api/v1/tenants/{tenant}/services")
    return found, ref
