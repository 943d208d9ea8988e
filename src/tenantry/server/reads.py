"""Read endpoints: tenants (environments, quota used per cluster, people), services
(descriptor, published versions with provenance, what runs where), history, status,
promotions, operations (and their event stream), canaries, the audit log.

Everything a caller may not read is filtered out (or answers 404), never shown with
holes: a member of one tenant sees nothing of another.
"""

from __future__ import annotations

import json
import math
import time
from collections.abc import Iterator, Sequence
from typing import Annotated, Any, TypeVar

from fastapi import APIRouter, Depends, Query, Request
from fastapi.responses import StreamingResponse
from lightkube.resources.apps_v1 import Deployment
from lightkube.resources.core_v1 import ResourceQuota

from tenantry import errors
from tenantry.ledger import tables
from tenantry.monitoring import firing
from tenantry.server import rights
from tenantry.server.context import ApiError, Caller, RowId, Server, caller, server, service_ref
from tenantry.spec.repository import Repository
from tenantry.traffic import wiring

router = APIRouter(prefix="/api/v1")

CallerDep = Annotated[Caller, Depends(caller)]
ServerDep = Annotated[Server, Depends(server)]

# How often an operation's event stream looks for new progress lines.
_STREAM_POLL_S = 0.2


def _at(value: Any) -> str | None:
    return value.isoformat(timespec="seconds") if value is not None else None


def _mark(request: Request, tenant: str | None) -> None:
    """Name the tenant a call concerns, for the audit log."""
    request.state.tenant = tenant


@router.get("/whoami", summary="Who the token belongs to, and their role per tenant")
def whoami(who: CallerDep) -> dict[str, Any]:
    return {
        "username": who.person.username,
        "groups": sorted(who.person.groups),
        "admin": who.admin,
        "tenants": {t.name: rights.role(who.person, t, who.repo.platform) for t in who.readable()},
    }


@router.get("/tenants", summary="The tenants you may see")
def tenants(who: CallerDep) -> list[dict[str, Any]]:
    return [
        {"name": t.name, "environments": list(t.environments),
         "services": [s.name for s in who.repo.services if s.tenant == t.name]}
        for t in who.readable()
    ]  # fmt: skip


def _quota(srv: Server, tenant: str, environments: tuple[str, ...]) -> list[dict[str, Any]]:
    rows: list[dict[str, Any]] = []
    for environment in srv.repo.platform.environments:
        if environment.name not in environments:
            continue
        for cluster in environment.clusters:
            row: dict[str, Any] = {"environment": environment.name, "cluster": cluster.name}
            try:
                with srv.cluster(cluster.name) as kube:
                    quotas = kube.list(ResourceQuota, namespace=tenant)
            except (errors.KubeError, errors.ClusterError) as e:
                rows.append({**row, "error": e.message})
                continue
            for quota in quotas:
                status = quota.status
                row["hard"] = dict(status.hard or {}) if status else {}
                row["used"] = dict(status.used or {}) if status else {}
            rows.append(row)
    return rows


@router.get("/tenants/{tenant}", summary="A tenant: environments, people, quota used per cluster")
def tenant_detail(tenant: str, who: CallerDep, srv: ServerDep, request: Request) -> dict[str, Any]:
    _mark(request, tenant)
    found = who.tenant(tenant)
    return {
        "name": found.name,
        "environments": list(found.environments),
        "owners": found.owners.model_dump(),
        "members": found.members.model_dump(),
        "selfApproval": found.self_approval,
        "quota": _quota(srv, found.name, found.environments),
    }


@router.get("/tenants/{tenant}/services", summary="A tenant's services")
def tenant_services(tenant: str, who: CallerDep, request: Request) -> list[dict[str, Any]]:
    _mark(request, tenant)
    who.tenant(tenant)
    return [
        {"service": s.ref, "chart": "own" if s.own_chart else "base",
         "version": s.descriptor.version if s.descriptor else None}
        for s in who.repo.services if s.tenant == tenant
    ]  # fmt: skip


def _running(srv: Server, tenant: str, service: str) -> list[dict[str, Any]]:
    """What runs where: the newest successful deployment per cluster, with ready replicas."""
    rows = []
    for release in srv.ledger.current_releases(tenants=[tenant], service=service):
        row: dict[str, Any] = {"environment": release.environment, "cluster": release.cluster,
                               "version": release.version, "at": _at(release.finished)}  # fmt: skip
        try:
            with srv.cluster(release.cluster) as kube:
                deployments = kube.list(Deployment, namespace=tenant,
                                        labels={"app.kubernetes.io/instance": service})  # fmt: skip
            row["desired"] = sum((d.spec.replicas or 0) if d.spec else 0 for d in deployments)
            row["ready"] = sum((d.status.readyReplicas or 0) if d.status else 0
                               for d in deployments)  # fmt: skip
        except (errors.KubeError, errors.ClusterError, KeyError) as e:
            row["error"] = str(e)
        rows.append(row)
    return rows


@router.get(
    "/services/{tenant}/{service}",
    summary="A service: descriptor, published versions with provenance, what runs where",
)
def service_detail(
    tenant: str, service: str, who: CallerDep, srv: ServerDep, request: Request
) -> dict[str, Any]:
    _mark(request, tenant)
    _, ref = service_ref(who, tenant, service)
    source = who.repo.service(ref)
    return {
        "service": ref,
        "descriptor": source.descriptor.model_dump(mode="json", by_alias=True, exclude_none=True)
        if source.descriptor else None,
        "published": [
            {"version": p.version, "sha256": p.digest, "commit": p.git_commit, "author": p.author,
             "at": _at(p.at), "result": p.result}
            for p in srv.ledger.publications(tenant=tenant, service=service)
        ],
        "running": _running(srv, tenant, service),
    }  # fmt: skip


def deployment_view(row: tables.Deployment) -> dict[str, Any]:
    """A deployment from the ledger as the API shows it."""
    return {"id": row.id, "service": f"{row.tenant}/{row.service}", "version": row.version,
            "environment": row.environment, "cluster": row.cluster, "result": row.result,
            "actor": row.actor, "started": _at(row.started), "finished": _at(row.finished),
            "reason": row.reason}  # fmt: skip


@router.get("/history", summary="Deployments from the ledger, newest first, filtered and paged")
def history(
    who: CallerDep,
    srv: ServerDep,
    request: Request,
    tenant: str | None = None,
    service: str | None = None,
    environment: str | None = None,
    result: str | None = None,
    limit: Annotated[int, Query(ge=1, le=500)] = 50,
    before: Annotated[int | None, Query(ge=1, description="Page: ids below this one.")] = None,
) -> dict[str, Any]:
    _mark(request, tenant)
    allowed = [who.tenant(tenant).name] if tenant else [t.name for t in who.readable()]
    rows = srv.ledger.deployments_page(
        tenants=allowed, service=service, environment=environment, result=result, limit=limit,
        before=before,
    )  # fmt: skip
    return {"items": [deployment_view(r) for r in rows],
            "next": rows[-1].id if len(rows) == limit else None}  # fmt: skip


@router.get("/status", summary="What each service you may see runs in each cluster")
def status(who: CallerDep, srv: ServerDep) -> list[dict[str, Any]]:
    readable = {t.name for t in who.readable()}
    return [deployment_view(r) for r in srv.ledger.current_releases(tenants=readable)]


def promotion_view(row: tables.Promotion) -> dict[str, Any]:
    """A promotion request as the API shows it."""
    return {"id": row.id, "service": f"{row.tenant}/{row.service}", "version": row.version,
            "environment": row.environment, "sha256": row.digest, "status": row.status,
            "requestedBy": row.requested_by, "requestedAt": _at(row.requested_at),
            "approvedBy": row.approved_by, "approvedAt": _at(row.approved_at),
            "reason": row.reason}  # fmt: skip


@router.get("/promotions", summary="Promotion requests of your tenants, newest first")
def promotions(
    who: CallerDep, srv: ServerDep, status: str | None = None,
    limit: Annotated[int, Query(ge=1, le=500)] = 100,
) -> list[dict[str, Any]]:  # fmt: skip
    readable = [t.name for t in who.readable()]
    return [promotion_view(r) for r in srv.ledger.promotions(tenants=readable, status=status,
                                                              limit=limit)]  # fmt: skip


Row = TypeVar("Row", tables.Promotion, tables.Operation)


def _visible(who: Caller, row: Row | None, what: str, number: int) -> Row:
    """``row`` if it exists and the caller may read its tenant; 404 otherwise."""
    if row is None or not any(t.name == row.tenant for t in who.readable()):
        raise ApiError(404, f"no {what} {number} that you may see")
    return row


def visible_promotion(who: Caller, srv: Server, promotion_id: int) -> tables.Promotion:
    """A promotion the caller may read; 404 otherwise."""
    return _visible(who, srv.ledger.promotion(promotion_id), "promotion", promotion_id)


@router.get("/promotions/{promotion_id}", summary="One promotion request")
def promotion(
    promotion_id: RowId, who: CallerDep, srv: ServerDep, request: Request
) -> dict[str, Any]:
    row = visible_promotion(who, srv, promotion_id)
    _mark(request, row.tenant)
    return promotion_view(row)


def operation_view(row: tables.Operation) -> dict[str, Any]:
    """An operation as the API shows it."""
    return {"id": row.id, "kind": row.kind, "service": f"{row.tenant}/{row.service}",
            "environment": row.environment, "requestedBy": row.requested_by,
            "status": row.status, "result": row.result, "worker": row.worker,
            "created": _at(row.created), "started": _at(row.started),
            "finished": _at(row.finished), "progress": row.progress.splitlines()}  # fmt: skip


def _visible_operation(who: Caller, srv: Server, operation_id: int) -> tables.Operation:
    return _visible(who, srv.ledger.operation(operation_id), "operation", operation_id)


@router.get("/operations/{operation_id}", summary="Production work queued for the workers")
def operation(
    operation_id: RowId, who: CallerDep, srv: ServerDep, request: Request
) -> dict[str, Any]:
    row = _visible_operation(who, srv, operation_id)
    _mark(request, row.tenant)
    return operation_view(row)


@router.get("/operations/{operation_id}/events",
            summary="Server-sent events: each progress line, then the end state")  # fmt: skip
def operation_events(
    operation_id: RowId, who: CallerDep, srv: ServerDep, request: Request
) -> StreamingResponse:
    row = _visible_operation(who, srv, operation_id)
    _mark(request, row.tenant)

    def stream() -> Iterator[str]:
        sent = 0
        while True:
            current = srv.ledger.operation(operation_id)
            assert current is not None
            lines = current.progress.splitlines()
            for line in lines[sent:]:
                yield f"event: progress\ndata: {json.dumps(line)}\n\n"
            sent = len(lines)
            if current.status in ("succeeded", "failed"):
                yield f"event: end\ndata: {json.dumps(operation_view(current))}\n\n"
                return
            time.sleep(_STREAM_POLL_S)

    return StreamingResponse(stream(), media_type="text/event-stream")


def _figure(value: float | None) -> float | None:
    # JSON has no infinity (a p99 past the histogram's last bucket): shown as unknown.
    return value if value is not None and math.isfinite(value) else None


def interval_view(row: tables.CanaryInterval) -> dict[str, Any]:
    """One analysed canary interval as the API shows it (a figure is null: no data)."""
    return {
        "at": _at(row.at),
        "step": row.step,
        "weight": row.weight,
        "verdict": row.verdict,
        "reason": row.reason,
        "canaryRequests": _figure(row.canary_requests),
        "canarySuccessRate": _figure(row.canary_success_rate),
        "canaryP99Seconds": _figure(row.canary_p99_s),
        "primaryRequests": _figure(row.primary_requests),
        "primarySuccessRate": _figure(row.primary_success_rate),
        "primaryP99Seconds": _figure(row.primary_p99_s),
    }


def canary_view(
    row: tables.Canary, intervals: Sequence[tables.CanaryInterval] = ()
) -> dict[str, Any]:
    """A canary rollout as the API shows it, with its last analysed ``intervals``
    (oldest first)."""
    return {
        "service": f"{row.tenant}/{row.service}",
        "version": row.version,
        "status": row.status,
        "step": row.step,
        "weight": row.weight,
        "passes": row.passes,
        "failures": row.failures,
        "reason": row.reason,
        "updated": _at(row.updated),
        "intervals": [interval_view(i) for i in intervals],
    }


@router.get("/canaries/{tenant}/{service}", summary="The newest canary rollout of a service")
def canary(
    tenant: str, service: str, who: CallerDep, srv: ServerDep, request: Request
) -> dict[str, Any]:
    _mark(request, tenant)
    service_ref(who, tenant, service)
    row = srv.ledger.canary(tenant, service)
    if row is None:
        raise ApiError(404, f"{tenant}/{service} has no canary rollout")
    return canary_view(row, srv.ledger.canary_intervals(row.id))


@router.get("/traffic", summary="Live traffic of your services: weights, health, failovers")
def traffic(who: CallerDep, srv: ServerDep) -> dict[str, Any]:
    readable = {t.name for t in who.readable()}
    names = {wiring.route_name(s) for s in who.repo.services if s.tenant in readable}
    routes: list[dict[str, Any]] = []
    if who.repo.platform.traffic is not None:
        provider = wiring.provider(who.repo)
        router_ = provider.router(who.repo)
        for route, front in provider.routes(who.repo):
            if route.name in names:
                routes += [
                    {
                        "route": route.name,
                        "front": front,
                        "cluster": server_.cluster,
                        "role": server_.role,
                        "weight": server_.weight,
                        "healthy": server_.healthy,
                    }
                    for server_ in router_.state(route)
                ]
    failovers = [
        {"route": f.route, "cluster": f.cluster, "event": f.event, "at": _at(f.at)}
        for f in srv.ledger.failovers()
        if f.route in names
    ]
    return {"routes": routes, "failovers": failovers}


def firing_alerts(repo: Repository, tenants: list[str]) -> dict[str, Any]:
    """``tenants``' firing alerts; ``alertmanager`` is false when the platform names
    none (the list is then empty, not "all clear")."""
    url = wiring.provider(repo).alertmanager(repo)
    if url is None:
        return {"alertmanager": False, "tenants": {}}
    try:
        found = firing.firing(url, tenants)
    except firing.AlertmanagerUnavailableError as e:
        raise ApiError(503, e.message, fix=e.fix) from e
    return {
        "alertmanager": True,
        "tenants": {
            name: {"total": group.total,
                   "alerts": [{"alertname": a.name, "service": a.service,
                               "severity": a.severity, "summary": a.summary,
                               "since": a.since} for a in group.alerts]}
            for name, group in found.items()
        },
    }  # fmt: skip


@router.get("/alerts", summary="Firing alerts of your tenants, from Alertmanager")
def alerts(who: CallerDep) -> dict[str, Any]:
    return firing_alerts(who.repo, [t.name for t in who.readable()])


@router.get("/audit", summary="Every call to the server (platform admins)")
def audit(
    who: CallerDep, srv: ServerDep, tenant: str | None = None,
    limit: Annotated[int, Query(ge=1, le=1000)] = 100,
    before: Annotated[int | None, Query(ge=1)] = None,
) -> dict[str, Any]:  # fmt: skip
    who.require("audit", None)
    rows = srv.ledger.audit_log(tenants=[tenant] if tenant else None, limit=limit, before=before)
    return {
        "items": [{"id": r.id, "at": _at(r.at), "actor": r.actor, "action": r.action,
                   "tenant": r.tenant, "target": r.target, "status": r.status,
                   "detail": r.detail} for r in rows],
        "next": rows[-1].id if len(rows) == limit else None,
    }  # fmt: skip
