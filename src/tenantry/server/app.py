"""The FastAPI application: the routers, errors as HTTP statuses, and the audit log.

Errors become JSON ``{"error": message, "fix": …, "right": …, "holders": …}``:

    401  no token, or one the management cluster does not accept
    403  a right is missing (the body names it and who holds it)
    404  unknown — or not yours to see
    409  the state forbids it (not pending, approved meanwhile, not healthy in staging)
    422  a malformed body or parameter: ``error`` names each field, ``detail`` lists
         them as FastAPI does (location and message; never the input echoed back)
    503  the ledger database, the management cluster or another cluster (or helm talking
         to it) does not answer; nothing written

Every call under ``/api/v1`` and ``/helm`` (the tenants' Helm repositories,
`tenantry.server.helmrepo`) is written to the audit log with the verified identity
(or ``anonymous``), the action, the tenant it concerned and the status it got. Tokens
never reach the log, the audit or a response.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable

from fastapi import FastAPI, Request, Response
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from sqlalchemy.exc import SQLAlchemyError
from starlette.concurrency import run_in_threadpool
from starlette.exceptions import HTTPException

import tenantry
from tenantry import errors
from tenantry.ledger import Ledger, now, tables
from tenantry.server import (
    actions,
    dashboard,
    helmrepo,
    reads,
    registry_events,
    retries,
    tenant_secrets,
)
from tenantry.server.context import ApiError, Server

# Shared with the dashboard, which shows the same refusals as pages.
from tenantry.server.context import status_of as _status_of

log = logging.getLogger("tenantry.server")


def _body(message: str, fix: str | None = None, **extra: str) -> dict[str, str]:
    body = {"error": message}
    if fix:
        body["fix"] = fix
    body.update({k: v for k, v in extra.items() if v})
    return body


async def _tenantry_error(request: Request, e: Exception) -> Response:
    assert isinstance(e, errors.TenantryError)
    status = _status_of(e)
    extra = {"right": e.right, "holders": e.holders} if isinstance(e, ApiError) else {}
    headers = {"WWW-Authenticate": "Bearer"} if status == 401 else None
    return JSONResponse(_body(e.message, e.fix, **extra), status_code=status, headers=headers)


async def _database_error(request: Request, e: Exception) -> Response:
    # The driver's message may hold the database URL; it goes to the server's log only.
    log.error("ledger database error on %s %s: %s", request.method, request.url.path,
              type(e).__name__)  # fmt: skip
    return JSONResponse(
        _body("the ledger database is unreachable; nothing was changed",
              "retry later; the platform team is alerted by the server's log"),
        status_code=503,
    )  # fmt: skip


def _shown(part: object) -> str:
    # A field name as a person can read it: a key sent as 100 kB, with NUL bytes or a
    # lone surrogate (which JSON cannot even encode as UTF-8) is shown escaped and cut.
    text = str(part)
    if text.isprintable() and len(text) <= 100:
        return text
    return ascii(text[:100]) + ("…" if len(text) > 100 else "")


async def _malformed(request: Request, e: Exception) -> Response:
    # FastAPI's own 422 is {"detail": [...]} with each input echoed back: no "error" for
    # clients to show, and an echoed lone surrogate made rendering the answer a 500.
    assert isinstance(e, RequestValidationError)
    detail = [
        {"loc": [_shown(p) for p in err.get("loc", ())], "msg": _shown(err.get("msg", "")),
         "type": _shown(err.get("type", ""))}
        for err in e.errors()
    ][:20]  # fmt: skip
    fields = "; ".join(f"{'.'.join(d['loc'])}: {d['msg']}" for d in detail)
    return JSONResponse(
        _body(f"malformed request: {fields}",
              "correct the named fields (GET /openapi.json describes every body)")
        | {"detail": detail},
        status_code=422,
    )  # fmt: skip


async def _http_error(request: Request, e: Exception) -> Response:
    # Starlette's own refusals (a body that is not UTF-8 JSON, an unknown route, a wrong
    # method) in the same {"error", "fix"} shape as every other refusal.
    assert isinstance(e, HTTPException)
    fix = (
        "send a JSON object, UTF-8 encoded, with Content-Type: application/json"
        if e.status_code == 400
        else None
    )
    return JSONResponse(_body(_shown(e.detail), fix), status_code=e.status_code,
                        headers=e.headers)  # fmt: skip


def create_app(srv: Server) -> FastAPI:
    """The application for ``srv``."""
    app = FastAPI(
        # No browsable docs: their pages load scripts from the internet. The schema is
        # served at /openapi.json for any OpenAPI tool.
        docs_url=None,
        redoc_url=None,
        title="Tenantry",
        version=tenantry.version(),
        description="Multi-tenant delivery: tenants, services, promotions, rollbacks, "
        "canaries, history and audit. Every call needs `Authorization: Bearer <token>`.",
    )
    app.state.server = srv
    app.include_router(reads.router)
    app.include_router(actions.router)
    app.include_router(retries.router)
    app.include_router(registry_events.router)
    app.include_router(tenant_secrets.router)
    dashboard.install(app)  # the pages at /, built on the same reads and actions
    helmrepo.install(app)  # each tenant's Helm repository at /helm/{tenant}
    app.add_exception_handler(errors.TenantryError, _tenantry_error)
    app.add_exception_handler(RequestValidationError, _malformed)
    app.add_exception_handler(HTTPException, _http_error)
    app.add_exception_handler(SQLAlchemyError, _database_error)

    @app.get("/healthz", include_in_schema=False)
    def healthz() -> dict[str, str]:
        return {"status": "ok"}

    @app.middleware("http")
    async def audit(
        request: Request, call_next: Callable[[Request], Awaitable[Response]]
    ) -> Response:
        response = await call_next(request)
        # The dashboard's actions (every POST) and the Helm repositories' reads are
        # audited like the API's calls.
        audited = request.url.path.startswith(("/api/v1/", helmrepo.PREFIX + "/"))
        if audited or request.method == "POST":
            await run_in_threadpool(_record, srv.ledger, request, response.status_code)
        return response

    return app


def _record(ledger: Ledger, request: Request, status: int) -> None:
    route = request.scope.get("route")
    action = f"{request.method} {getattr(route, 'path', request.url.path)}"
    row = tables.Audit(
        at=now(), actor=getattr(request.state, "actor", "anonymous"), action=action[:255],
        tenant=getattr(request.state, "tenant", None), target=request.url.path[:1024],
        status=status, detail="",
    )  # fmt: skip
    try:
        ledger.add(row)
    except SQLAlchemyError as e:
        log.error("could not write the audit record of %s (%s): %s", action, status,
                  type(e).__name__)  # fmt: skip
