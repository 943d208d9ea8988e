"""``POST /api/v1/events/registry``: the OCI registry's push notifications become staging
deploy requests — the registry's counterpart of the S3 event → SQS path.

The registry proves itself with the shared secret (``Authorization: Bearer <secret>``,
`artifacts.eventsSecret`), compared in constant time; without it: 401 and nothing is
queued or recorded beyond the audit row. Each event of the envelope is then, in the
ledger's events (as the deployer records SQS messages):

* a chart push of a known tenant/service that `tenantry publish` recorded → a deploy
  request (``source: registry-event``), effectively once: a duplicate notification folds
  into the open request, and the workers never deploy an older version than staging's;
* a pull, a blob, a push by digest only → nothing (not recorded: the registry sends many);
* anything else — a push outside ``<prefix>/<tenant>/<service>``, an unknown tenant or
  service, a version `tenantry publish` never recorded (pushed around it, so without
  provenance the deployer could trust) → recorded with the reason and ignored.

The registry retries a notification until it gets a 2xx, so a body that is understood
(even if ignored) is answered 200; only the secret, an oversized body or the ledger being
down are refusals (the last one retried by the registry).
"""

from __future__ import annotations

import hmac
import logging
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Request
from starlette.concurrency import run_in_threadpool

from tenantry import errors
from tenantry.artifacts import oci
from tenantry.events import registry
from tenantry.events.s3 import Invalid
from tenantry.ledger import now, tables
from tenantry.server.context import ApiError, Server, server
from tenantry.spec import models

log = logging.getLogger("tenantry.server.registry_events")
router = APIRouter(prefix="/api/v1")
ServerDep = Annotated[Server, Depends(server)]

# A notification envelope is a few kB; anything far larger is not the registry's.
MAX_BODY = 1_000_000
WHO = "registry"


def _spec(srv: Server) -> models.OciArtifacts:
    spec = srv.repo.platform.artifacts
    if not isinstance(spec, models.OciArtifacts):
        raise ApiError(404, "this platform keeps its charts in S3, not an OCI registry",
                       fix="S3 events reach the deployer through SQS")  # fmt: skip
    return spec


def _secret(srv: Server, spec: models.OciArtifacts) -> str:
    try:
        found = oci.events_secret(spec, root=srv.repo.root)
    except oci.RegistryError as e:
        log.error("the registry events secret is unreadable: %s", e.message)
        raise ApiError(503, "the server cannot read the registry's shared secret",
                       fix=e.fix) from e  # fmt: skip
    if found is None:
        raise ApiError(401, "registry notifications are off: platform.yaml names no "
                       "artifacts.eventsSecret", fix="set artifacts.eventsSecret; until then "
                       "the workers' resync finds new charts")  # fmt: skip
    return found


def _authenticated(request: Request, secret: str) -> None:
    scheme, _, sent = request.headers.get("authorization", "").partition(" ")
    if scheme.lower() != "bearer" or not hmac.compare_digest(sent.encode(), secret.encode()):
        raise ApiError(
            401,
            "the notification did not carry the registry's shared secret; nothing was queued",
            fix="configure the registry's notification endpoint with the header "
            "Authorization: Bearer <artifacts.eventsSecret>",
        )


def _handle(
    srv: Server, spec: models.OciArtifacts, event: registry.ChartPushed | Invalid
) -> dict[str, Any]:
    """One chart push (or an invalid event): recorded, and queued when it is a release.
    Recorded under the chart's reference, as `tenantry publish --wait` and the deployer
    name it."""
    if isinstance(event, registry.ChartPushed):
        key = oci.reference(spec, event.tenant, event.service, event.version)
        message_id = event.event_id
    else:
        key, message_id = event.key, ""

    def record(result: str, reason: str) -> dict[str, Any]:
        srv.ledger.add(tables.Event(message_id=message_id, key=key, result=result,
                                    reason=reason, at=now()))  # fmt: skip
        return {"target": key, "result": result, "reason": reason}

    if isinstance(event, Invalid):
        return record("invalid", event.reason)
    ref = f"{event.tenant}/{event.service}"
    if ref not in {s.ref for s in srv.repo.services}:
        return record("invalid", f"{ref} is no service of the platform repository")
    digests = srv.ledger.published_digests(tenant=event.tenant, service=event.service,
                                           version=event.version)  # fmt: skip
    if not digests:
        return record("invalid", f"{ref} {event.version} was pushed without `tenantry publish` "
                      "(no provenance in the ledger): not deployed")  # fmt: skip
    requested = srv.ledger.request_deploy(
        tenant=event.tenant, service=event.service, version=event.version,
        digest=next(iter(digests)) if len(digests) == 1 else "", source="registry-event",
        requested_by=WHO,
    )  # fmt: skip
    return record("queued", f"deploy request {requested.request.id} ({requested.outcome})")


def _handle_all(srv: Server, spec: models.OciArtifacts, body: bytes) -> list[dict[str, Any]]:
    handled = []
    for event in registry.parse(body, spec.prefix):
        if isinstance(event, registry.Skipped):
            continue
        try:
            handled.append(_handle(srv, spec, event))
        except errors.TenantryError as e:  # the ledger refused: the registry retries
            raise ApiError(
                503,
                f"could not record the notification: {e.message}",
                fix="the registry sends it again; check the ledger database",
            ) from e
    return handled


def _too_large(size: int) -> ApiError:
    return ApiError(
        413,
        f"a notification of {size} bytes (at most {MAX_BODY})",
        fix="the registry sends small envelopes: check who posts to this endpoint",
    )


@router.post("/events/registry", summary="The OCI registry's push notifications (its secret)")
async def registry_events(request: Request, srv: ServerDep) -> dict[str, Any]:
    # Async only to read the body; the secret's file, the ledger and the registry are
    # blocking work, done in the thread pool like the API's other handlers.
    spec = _spec(srv)
    _authenticated(request, await run_in_threadpool(_secret, srv, spec))
    declared = request.headers.get("content-length", "")
    if declared.isdigit() and int(declared) > MAX_BODY:
        raise _too_large(int(declared))  # refused before the body is read
    body = await request.body()
    if len(body) > MAX_BODY:
        raise _too_large(len(body))
    request.state.actor = WHO
    return {"handled": await run_in_threadpool(_handle_all, srv, spec, body)}
