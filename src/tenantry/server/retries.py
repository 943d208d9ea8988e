"""Getting a release to staging again once its cause is fixed: owners' retries, the staging
deploy requests they (and the resync, and redrives) queue, and the platform team's view
and redrive of the dead-letter queue.

* ``POST /retries`` ``{service, version}`` — owners (and admins): queues a deploy
  request (``source: retry``, ``requestedBy`` the proven caller) for a version `tenantry
  publish` recorded; a parked request for it is unparked, an open one absorbs the retry.
  202: the workers deploy it, through the same steps as an S3 event.
* ``GET /requests?tenant=&service=&status=`` — a tenant's deploy requests (readers).
* ``GET /deadletters``, ``POST /deadletters/redrive`` — admins: the dead-letter queue's
  messages, and turning them into deploy requests (`tenantry.deploy.deadletters` says
  why requests rather than moving them back to the queue).

All of it is in the audit log like every call; the requests and the redrive's events
are in the ledger.
"""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Body, Depends, Query, Request
from pydantic import Field

from tenantry import aws
from tenantry.aws import AwsError
from tenantry.deploy import deadletters
from tenantry.ledger import tables
from tenantry.server.actions import _REF, _VERSION, Body_, Nothing, _service_in
from tenantry.server.context import ApiError, Caller, Server, caller, server

router = APIRouter(prefix="/api/v1")

CallerDep = Annotated[Caller, Depends(caller)]
ServerDep = Annotated[Server, Depends(server)]

STAGING = "staging"


class RetryRequest(Body_):
    """Deploy a published version to staging again."""

    service: str = Field(pattern=_REF, description="TEAM/SERVICE")
    version: str = Field(pattern=_VERSION)


def _at(value: Any) -> str | None:
    return value.isoformat(timespec="seconds") if value is not None else None


def request_view(row: tables.DeployRequest) -> dict[str, Any]:
    """A deploy request as the API shows it."""
    return {"id": row.id, "service": f"{row.tenant}/{row.service}", "version": row.version,
            "sha256": row.digest, "source": row.source, "requestedBy": row.requested_by,
            "status": row.status, "attempts": row.attempts,
            "nextAttempt": _at(row.next_attempt) if row.status == "queued" else None,
            "lastError": row.last_error, "created": _at(row.created),
            "finished": _at(row.finished), "worker": row.worker}  # fmt: skip


@router.post(
    "/retries",
    status_code=202,
    summary="Deploy a published version to staging again (owners): unparks it; workers deploy",
)
def retry(body: RetryRequest, who: CallerDep, srv: ServerDep, request: Request) -> dict[str, Any]:
    tenant, ref = _service_in(who, request, body.service, STAGING, "retry")
    service = ref.partition("/")[2]
    digests = srv.ledger.published_digests(tenant=tenant.name, service=service,
                                           version=body.version)  # fmt: skip
    if not digests:
        raise ApiError(
            409, f"{ref} {body.version} was never published with `tenantry publish`; "
            "there is nothing to deploy",
            fix=f"publish it first, or pick a version of GET /api/v1/services/{ref}",
        )  # fmt: skip
    requested = srv.ledger.request_deploy(
        tenant=tenant.name, service=service, version=body.version,
        digest=next(iter(digests)) if len(digests) == 1 else "", source="retry",
        requested_by=who.person.username, unpark=True,
    )  # fmt: skip
    return {"request": request_view(requested.request), "outcome": requested.outcome}


@router.get(
    "/requests", summary="Staging deploy requests (resync, retries, redrives), newest first"
)
def requests(
    who: CallerDep, srv: ServerDep, request: Request, tenant: str | None = None,
    service: str | None = None, status: str | None = None,
    limit: Annotated[int, Query(ge=1, le=500)] = 50,
) -> list[dict[str, Any]]:  # fmt: skip
    request.state.tenant = tenant
    allowed = [who.tenant(tenant).name] if tenant else [t.name for t in who.readable()]
    rows = srv.ledger.deploy_requests(tenants=allowed, service=service, status=status,
                                      limit=limit)  # fmt: skip
    return [request_view(r) for r in rows]


def _clients(srv: Server) -> aws.Clients:
    try:
        return aws.clients(srv.repo.platform)
    except AwsError as e:
        raise ApiError(503, f"the queue does not answer: {e.message}", fix=e.fix) from e


def _unavailable(e: AwsError) -> ApiError:
    return ApiError(503, f"the dead-letter queue does not answer: {e.message}",
                    fix=e.fix or "check that the S3/SQS endpoint is reachable")  # fmt: skip


@router.get("/deadletters", summary="The staging queue's dead-letter queue (admins)")
def dead_letters(who: CallerDep, srv: ServerDep) -> list[dict[str, Any]]:
    who.require("redrive", None)
    try:
        found = deadletters.listing(_clients(srv), srv.repo)
    except AwsError as e:
        raise _unavailable(e) from e
    return [{"messageId": d.message_id, "receives": d.receives, "releases": list(d.releases),
             "problem": d.problem or None} for d in found]  # fmt: skip


@router.post("/deadletters/redrive",
             summary="Turn the dead letters into deploy requests (admins)")  # fmt: skip
def redrive(
    who: CallerDep, srv: ServerDep, body: Annotated[Nothing | None, Body()] = None
) -> dict[str, Any]:
    who.require("redrive", None)
    try:
        done = deadletters.redrive(_clients(srv), srv.repo, srv.ledger, by=who.person.username)
    except AwsError as e:
        raise _unavailable(e) from e
    return {
        "redriven": [{"messageId": r.message_id,
                      "requests": [{"release": rel, "request": n, "outcome": o}
                                   for rel, n, o in r.requests]}
                     for r in done if not r.kept],
        "kept": [{"messageId": r.message_id, "reason": r.kept} for r in done if r.kept],
    }  # fmt: skip
