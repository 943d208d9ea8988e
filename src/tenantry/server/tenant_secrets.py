"""Endpoints for a tenant's secrets: list the keys (members), set and delete one (owners).

A value arrives only in the body of a PUT, base64-encoded (any bytes: a password, a key
file), and leaves only towards the environment's clusters (`tenantry.secretstore`):
never in a response, the ledger, the audit log or a log line. A malformed body is
refused without echoing it (the app's validation handler never repeats inputs).
"""

from __future__ import annotations

import base64
import binascii
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Path, Query, Request
from pydantic import BaseModel, ConfigDict, Field

from tenantry import aws, errors
from tenantry.secretstore import store
from tenantry.server.context import ApiError, Caller, Server, caller, server
from tenantry.spec import models
from tenantry.spec.services import SECRET_KEY_PATTERN

router = APIRouter(prefix="/api/v1")

CallerDep = Annotated[Caller, Depends(caller)]
ServerDep = Annotated[Server, Depends(server)]

_LABEL = r"^[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?$"
Tenant = Annotated[str, Path(pattern=_LABEL)]
Environment = Annotated[str, Path(pattern=_LABEL)]
Name = Annotated[str, Path(pattern=_LABEL, description="The secret's name (a DNS label)")]
Key = Annotated[str, Path(pattern=SECRET_KEY_PATTERN, description="One key of the secret")]


class SecretValue(BaseModel):
    """The new value of one key, base64-encoded."""

    model_config = ConfigDict(extra="forbid")

    # base64 of at most MAX_VALUE_BYTES (4 characters per 3 bytes, padded).
    value: str = Field(min_length=1, max_length=4 * (store.MAX_VALUE_BYTES // 3 + 1))


def _decoded(body: SecretValue) -> bytes:
    try:
        return base64.b64decode(body.value, validate=True)
    except (binascii.Error, ValueError):
        raise ApiError(422, "value is not base64", fix="send the value base64-encoded") from None


def _owned(who: Caller, request: Request, tenant: str) -> models.Tenant:
    """The tenant, once the caller is proven to hold the right to change its secrets
    (404 for one they may not see, 403 naming the right and its holders)."""
    request.state.tenant = tenant
    found = who.tenant(tenant)
    who.require("secrets", found)
    return found


@contextmanager
def _answered() -> Iterator[None]:
    """A refusal as its status: 422 bad input, 409 a Secret Tenantry did not make, 502 a
    cluster or AWS that did not take the change."""
    try:
        yield
    except (store.SecretWriteError, aws.AwsError) as e:
        raise ApiError(502, e.message, fix=e.fix) from e
    except errors.UsageError as e:
        raise ApiError(422, e.message, fix=e.fix) from e
    except errors.TenantryError as e:
        raise ApiError(409, e.message, fix=e.fix) from e


def _view(change: store.Change) -> dict[str, Any]:
    row = change.row
    return {"tenant": row.tenant, "environment": row.environment, "name": row.name,
            "key": row.key, "action": row.action, "version": row.version,
            "changedBy": row.actor, "changedAt": row.at.isoformat(timespec="seconds"),
            "result": row.result, "clusters": row.clusters,
            "redeploys": list(change.redeploys)}  # fmt: skip


@router.get("/tenants/{tenant}/secrets", summary="A tenant's secret keys, never their values")
def list_keys(
    tenant: Tenant,
    who: CallerDep,
    srv: ServerDep,
    request: Request,
    environment: Annotated[str | None, Query(pattern=_LABEL)] = None,
) -> dict[str, Any]:
    request.state.tenant = tenant
    found = who.tenant(tenant)
    return {"items": store.keys(srv.ledger, tenant=found.name, environment=environment)}


@router.put(
    "/tenants/{tenant}/secrets/{environment}/{name}/{key}",
    summary="Set one key of a tenant's secret in every cluster of an environment (owners)",
)
def set_key(
    tenant: Tenant,
    environment: Environment,
    name: Name,
    key: Key,
    body: SecretValue,
    who: CallerDep,
    srv: ServerDep,
    request: Request,
) -> dict[str, Any]:
    found = _owned(who, request, tenant)
    value = _decoded(body)
    with _answered():
        change = store.set_key(srv.repo, srv.ledger, tenant=found, environment=environment,
                               name=name, key=key, value=value,
                               actor=who.person.username)  # fmt: skip
    return _view(change)


@router.delete(
    "/tenants/{tenant}/secrets/{environment}/{name}/{key}",
    summary="Delete one key of a tenant's secret in every cluster of an environment (owners)",
)
def delete_key(
    tenant: Tenant,
    environment: Environment,
    name: Name,
    key: Key,
    who: CallerDep,
    srv: ServerDep,
    request: Request,
) -> dict[str, Any]:
    found = _owned(who, request, tenant)
    with _answered():
        change = store.delete_key(srv.repo, srv.ledger, tenant=found, environment=environment,
                                  name=name, key=key, actor=who.person.username)  # fmt: skip
    return _view(change)


@router.post(
    "/tenants/{tenant}/secrets/{environment}/sync",
    summary="Copy a tenant's secrets from AWS Secrets Manager into an environment (owners)",
)
def sync(
    tenant: Tenant, environment: Environment, who: CallerDep, srv: ServerDep, request: Request
) -> dict[str, Any]:
    found = _owned(who, request, tenant)
    with _answered():
        changes = store.sync(srv.repo, srv.ledger, tenant=found, environment=environment,
                             actor=who.person.username)  # fmt: skip
    return {"items": [_view(change) for change in changes]}
