"""Endpoints that change something: promotion requests and their approval, rejection
and cancellation; rollbacks; pausing, resuming and aborting a canary.

Each one proves the caller's right first (403 naming the right and its holders),
checks everything else next (404 unknown, 409 the state forbids it), and only then
writes. Long work — the deploy an approval starts, a rollback — is queued as an
operation for the workers and answered 202 with the operation to follow.
"""

from __future__ import annotations

import dataclasses
import json
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Body, Depends, Request
from pydantic import AfterValidator, BaseModel, ConfigDict, Field

from tenantry import errors
from tenantry.deploy import promotion
from tenantry.ledger import now, tables
from tenantry.server import reads, rights
from tenantry.server.context import (
    ApiError,
    Caller,
    RowId,
    Server,
    caller,
    server,
    service_ref,
)
from tenantry.spec import models
from tenantry.traffic import canary

router = APIRouter(prefix="/api/v1")

CallerDep = Annotated[Caller, Depends(caller)]
ServerDep = Annotated[Server, Depends(server)]

_REF = r"^[a-z][-a-z0-9]{0,39}/[a-z][-a-z0-9]{0,62}$"
_VERSION = r"^v?\d+\.\d+\.\d+([-+][0-9A-Za-z.+-]{1,100})?$"


class Body_(BaseModel):
    """Request bodies: unknown fields are refused rather than ignored."""

    model_config = ConfigDict(extra="forbid")


class PromotionRequest(Body_):
    """Ask for a version that staging runs to go to an environment."""

    service: str = Field(pattern=_REF, description="TEAM/SERVICE")
    version: str = Field(pattern=_VERSION)
    environment: str = Field(default="production", pattern=r"^[a-z][-a-z0-9]{0,39}$")


class Nothing(Body_):
    """The body of an action that takes none: no body, ``{}`` or ``null``. A field sent
    anyway (``approvedBy``, ``reason``) is refused rather than silently ignored."""


def _storable(text: str) -> str:
    # The ledger keeps text as UTF-8: a lone surrogate (valid JSON as "\ud800") cannot
    # be encoded and made the database driver raise (a 500), and a NUL is refused by
    # PostgreSQL. Both are refused here, naming the field, before anything is written.
    try:
        text.encode("utf-8")
    except UnicodeEncodeError as e:
        raise ValueError("is not valid Unicode text (it holds a lone surrogate)") from e
    if any(not c.isprintable() and c not in "\n\t" for c in text):
        raise ValueError("holds control characters (such as NUL); only text, newlines and tabs")
    return text


class Reason(Body_):
    """Why, in a person's words (kept in the ledger)."""

    reason: Annotated[str, AfterValidator(_storable)] = Field(default="", max_length=1000)


class RollbackRequest(Body_):
    """Go back to an earlier version that succeeded in an environment."""

    service: str = Field(pattern=_REF, description="TEAM/SERVICE")
    environment: str = Field(pattern=r"^[a-z][-a-z0-9]{0,39}$")
    to: str | None = Field(
        default=None,
        pattern=_VERSION,
        description="The version (default: the one before the current)",
    )


def _conflict(e: promotion.PromotionError) -> ApiError:
    return ApiError(409, e.message, fix=e.fix)


def _service_in(
    who: Caller, request: Request, ref: str, environment: str, right: rights.Right
) -> tuple[models.Tenant, str]:
    """The tenant and ``tenant/service`` of a request, once the caller's right is proven
    and the tenant uses ``environment``."""
    tenant_name, _, service = ref.partition("/")
    request.state.tenant = tenant_name
    tenant, ref = service_ref(who, tenant_name, service)
    who.require(right, tenant)
    if environment not in tenant.environments:
        raise ApiError(422, f"tenant {tenant.name} does not use environment {environment!r}",
                       fix=f"use one of: {', '.join(tenant.environments)}")  # fmt: skip
    return tenant, ref


@router.post("/promotions", status_code=201, summary="Request a promotion (members and owners)")
def request_promotion(
    body: PromotionRequest, who: CallerDep, srv: ServerDep, request: Request
) -> dict[str, Any]:
    _, ref = _service_in(who, request, body.service, body.environment, "request")
    try:
        row = promotion.request(srv.repo, srv.ledger, ref=ref, version=body.version,
                                environment=body.environment, by=who.person.username)  # fmt: skip
    except promotion.PromotionError as e:
        raise _conflict(e) from e
    return reads.promotion_view(row)


def _pending(who: Caller, srv: Server, promotion_id: int, request: Request) -> tables.Promotion:
    row = reads.visible_promotion(who, srv, promotion_id)
    request.state.tenant = row.tenant
    return row


@router.post(
    "/promotions/{promotion_id}/approve",
    status_code=202,
    summary="Approve (owners, not the requester): queues the deploy for the workers",
)
def approve(
    promotion_id: RowId, who: CallerDep, srv: ServerDep, request: Request,
    body: Annotated[Nothing | None, Body()] = None,
) -> dict[str, Any]:  # fmt: skip
    row = _pending(who, srv, promotion_id, request)
    who.require("approve", srv.repo.tenant(row.tenant), requested_by=row.requested_by)
    try:
        approved, operation = promotion.approve(
            srv.repo, srv.ledger, promotion_id=promotion_id, by=who.person.username
        )
    except promotion.PromotionError as e:
        raise _conflict(e) from e
    return {"promotion": reads.promotion_view(approved),
            "operation": reads.operation_view(operation)}  # fmt: skip


def _decline(
    who: Caller, srv: Server, request: Request, promotion_id: int,
    status: Literal["rejected", "cancelled"], reason: str,
) -> dict[str, Any]:  # fmt: skip
    row = _pending(who, srv, promotion_id, request)
    right: Literal["reject", "cancel"] = "reject" if status == "rejected" else "cancel"
    who.require(right, srv.repo.tenant(row.tenant), requested_by=row.requested_by)
    try:
        declined = promotion.decline(
            srv.repo,
            srv.ledger,
            promotion_id=promotion_id,
            by=who.person.username,
            status=status,
            reason=reason,
        )
    except promotion.PromotionError as e:
        raise _conflict(e) from e
    return reads.promotion_view(declined)


@router.post("/promotions/{promotion_id}/reject", summary="Reject a pending request (owners)")
def reject(
    promotion_id: RowId, who: CallerDep, srv: ServerDep, request: Request,
    body: Annotated[Reason | None, Body()] = None,
) -> dict[str, Any]:  # fmt: skip
    return _decline(who, srv, request, promotion_id, "rejected", body.reason if body else "")


@router.post("/promotions/{promotion_id}/cancel",
             summary="Withdraw a pending request (its requester, or owners)")  # fmt: skip
def cancel(
    promotion_id: RowId, who: CallerDep, srv: ServerDep, request: Request,
    body: Annotated[Reason | None, Body()] = None,
) -> dict[str, Any]:  # fmt: skip
    return _decline(who, srv, request, promotion_id, "cancelled", body.reason if body else "")


@router.post(
    "/rollbacks",
    status_code=202,
    summary="Roll a service back in an environment (owners): queued for the workers",
)
def rollback(
    body: RollbackRequest, who: CallerDep, srv: ServerDep, request: Request
) -> dict[str, Any]:
    tenant, ref = _service_in(who, request, body.service, body.environment, "rollback")
    try:
        plan = promotion.plan_rollback(
            srv.repo, srv.ledger, ref=ref, environment=body.environment, to_version=body.to
        )
    except promotion.PromotionError as e:
        raise _conflict(e) from e
    operation: tables.Operation = srv.ledger.add(tables.Operation(
        kind="rollback", tenant=tenant.name, service=ref.partition("/")[2],
        environment=body.environment,
        params=json.dumps({"plan": dataclasses.asdict(plan)}), requested_by=who.person.username,
        status="queued", result="", progress="", created=now(),
    ))  # fmt: skip
    return {"rollback": dataclasses.asdict(plan), "operation": reads.operation_view(operation)}


_CANARY_STATUS = {"pause": "paused", "resume": "running", "abort": "aborted"}


@router.post("/canaries/{tenant}/{service}/{action}",
             summary="Pause, resume or abort a canary rollout (owners)")  # fmt: skip
def control_canary(
    tenant: str, service: str, action: Literal["pause", "resume", "abort"],
    who: CallerDep, srv: ServerDep, request: Request,
    body: Annotated[Nothing | None, Body()] = None,
) -> dict[str, Any]:  # fmt: skip
    request.state.tenant = tenant
    found, _ = service_ref(who, tenant, service)
    who.require(action, found)
    row = srv.ledger.canary(tenant, service)
    if row is None:
        raise ApiError(404, f"{tenant}/{service} has no canary rollout")
    reason = f"{_CANARY_STATUS[action]} by {who.person.username}"
    try:
        updated = canary.set_status(srv.ledger, tenant, service, _CANARY_STATUS[action], reason)
    except errors.UsageError as e:  # the rollout's state forbids this transition
        raise ApiError(409, e.message, fix=e.fix) from e
    return reads.canary_view(updated, srv.ledger.canary_intervals(updated.id))
