"""The dashboard's routes. Pages are rendered on the server; forms post back here.

Every state-changing request must carry the session's CSRF token (``csrf`` form field,
or the ``X-CSRF-Token`` header) and come with the session cookie, which is SameSite=Strict.
An unknown or expired session sends the browser back to sign-in; a refusal is rendered
as a page with the API's status, naming the right and its holders, and nothing changes.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import json
import logging
import secrets
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, quote, urlencode, urlsplit

from fastapi import APIRouter, FastAPI, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response, StreamingResponse
from fastapi.staticfiles import StaticFiles
from jinja2 import Environment, FileSystemLoader, select_autoescape
from pydantic import ValidationError
from sqlalchemy.exc import SQLAlchemyError
from starlette.concurrency import run_in_threadpool

from tenantry import errors
from tenantry.server import actions, identity, reads, rights
from tenantry.server.context import ApiError, Caller, Server, service_ref, status_of
from tenantry.server.dashboard import chart
from tenantry.server.dashboard.sessions import COOKIE, Session, Sessions, check_csrf
from tenantry.spec.repository import Repository
from tenantry.traffic import policy

log = logging.getLogger("tenantry.server.dashboard")

_HERE = Path(__file__).parent
_TEMPLATES = Environment(
    loader=FileSystemLoader(_HERE / "templates"), autoescape=select_autoescape(["html"])
)
# The sign-in form's own CSRF cookie: no session exists yet, so the form and a cookie
# carry the same random value (double submit), and a cross-site form cannot sign
# someone in as the attacker.
_SIGNIN_COOKIE = "tenantry_signin"
# How often the live stream looks at the ledger: changes show within a second.
_LIVE_POLL_S = 0.25
# A quiet stream writes a comment this often, to notice a closed page.
_KEEPALIVE_S = 10.0
# Alertmanager is asked less often than the ledger: it is another team's server, and an
# alert is minutes old when it fires anyway.
_ALERTS_POLL_S = 5.0
# Pages only load what this server serves: no inline script, nothing from elsewhere.
_CSP = ("default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
        "frame-ancestors 'none'; form-action 'self'; base-uri 'none'")  # fmt: skip

router = APIRouter(include_in_schema=False)


def install(app: FastAPI) -> None:
    """Serve the dashboard from ``app`` (the API's application)."""
    app.state.sessions = Sessions()
    app.state.digests = Digests()
    app.include_router(router)
    app.mount("/static", StaticFiles(directory=_HERE / "static"), name="dashboard-static")


def _sessions(request: Request) -> Sessions:
    found: Sessions = request.app.state.sessions
    return found


def _server(request: Request) -> Server:
    found: Server = request.app.state.server
    return found


def _page(template: str, code: int = 200, **values: Any) -> HTMLResponse:
    html = _TEMPLATES.get_template(template).render(**values)
    return HTMLResponse(html, status_code=code, headers={
        "Content-Security-Policy": _CSP, "Cache-Control": "no-store",
        "X-Content-Type-Options": "nosniff", "Referrer-Policy": "same-origin",
    })  # fmt: skip


def _secure(request: Request) -> bool:
    return request.url.scheme == "https"


def _local(path: str) -> str:
    """``path`` if it is a page of this server; "/" otherwise (no open redirect)."""
    return path if path.startswith("/") and not path.startswith(("//", "/\\")) else "/"


# Why the browser was sent to sign-in, by code: the sign-in page shows only these
# texts, so a crafted link cannot put words of its own on the server's page.
_WHY = {
    "ended": "your session has ended (signed out, expired or unknown); sign in again",
    "revoked": "your token is no longer accepted (unknown, expired or revoked); sign in again",
    "signedout": "signed out",
}


def _to_signin(request: Request, why: str) -> RedirectResponse:
    # After signing in, the person lands on the page they asked for (a GET only: a
    # refused POST is not replayed).
    wanted = request.url.path if request.method == "GET" else "/"
    response = RedirectResponse(f"/signin?next={quote(_local(wanted))}&why={why}",
                                status_code=303)  # fmt: skip
    response.delete_cookie(COOKIE, path="/", secure=_secure(request), httponly=True,
                           samesite="strict")  # fmt: skip
    return response


class _SignedOut(Exception):
    """No live session: the browser goes back to sign-in."""

    def __init__(self, why: str) -> None:
        super().__init__(_WHY[why])
        self.why = why


def _session(request: Request) -> Session:
    session = _sessions(request).get(request.cookies.get(COOKIE))
    if session is None:
        raise _SignedOut("ended")
    return session


def _caller(request: Request, session: Session) -> Caller:
    """The session's person, proven again by TokenReview (cached as for the API)."""
    srv = _server(request)
    try:
        person = srv.reviewer.person(session.token)
    except identity.UnauthenticatedError as e:
        _sessions(request).end(session.id)
        raise _SignedOut("revoked") from e
    request.state.actor = person.username
    return Caller(person, srv.repo)


def _refusal(request: Request, e: Exception, session: Session | None) -> Response:
    if isinstance(e, _SignedOut):
        return _to_signin(request, e.why)
    if isinstance(e, SQLAlchemyError):
        log.error("ledger database error on %s %s: %s", request.method, request.url.path,
                  type(e).__name__)  # fmt: skip
        status, message, fix, right, holders = (
            503, "the ledger database is unreachable; nothing was changed",
            "retry later; the platform team is alerted by the server's log", "", "")  # fmt: skip
    else:
        assert isinstance(e, errors.TenantryError)
        status, message, fix = status_of(e), e.message, e.fix or ""
        right, holders = (e.right, e.holders) if isinstance(e, ApiError) else ("", "")
    referer = urlsplit(request.headers.get("referer", ""))
    same = referer.netloc == request.url.netloc
    back = _local(referer.path + (f"?{referer.query}" if referer.query else "")) if same else "/"
    return _page("error.html", status, status=status, message=message, fix=fix, right=right,
                 holders=holders, session=session, back=back)  # fmt: skip


def _guarded(request: Request, render: Callable[[Session, Caller], Response]) -> Response:
    """Run ``render`` for the signed-in caller; refusals become pages."""
    session: Session | None = None
    try:
        session = _session(request)
        return render(session, _caller(request, session))
    except (_SignedOut, errors.TenantryError, SQLAlchemyError) as e:
        return _refusal(request, e, session)


async def _form(request: Request) -> dict[str, str]:
    # Plain urlencoded forms, parsed here: no multipart parser is needed for them.
    body = (await request.body()).decode("utf-8", errors="replace")
    return {k: v[0] for k, v in parse_qs(body, keep_blank_values=True).items()}


async def _action(request: Request, act: Callable[[Caller, dict[str, str]], str]) -> Response:
    """A state-changing POST: session, then CSRF, then the API's own action.

    ``act`` returns where to go next (a page of the dashboard)."""
    form = await _form(request)
    session: Session | None = None
    try:
        session = _session(request)
        sent = form.get("csrf") or request.headers.get("x-csrf-token")
        if not check_csrf(session, sent):
            raise ApiError(403, "the form did not carry this session's CSRF token; "
                           "nothing was changed",
                           fix="reload the page and press the button again")  # fmt: skip
        who = await run_in_threadpool(_caller, request, session)
        try:
            target = await run_in_threadpool(act, who, form)
        except ValidationError as e:  # a form field the API's body model refuses
            fields = "; ".join(f"{'.'.join(map(str, err['loc']))}: {err['msg']}"
                               for err in e.errors()[:5])  # fmt: skip
            fix = "correct the named fields and send the form again"
            raise ApiError(422, f"malformed request: {fields}", fix=fix) from e
    except (_SignedOut, errors.TenantryError, SQLAlchemyError) as e:
        return _refusal(request, e, session)
    return RedirectResponse(target, status_code=303)


# --- sign-in and sign-out ---------------------------------------------------------------


@router.get("/signin")
def signin_page(request: Request, why: str = "", next: str = "/") -> Response:
    nonce = secrets.token_urlsafe(32)
    response = _page("signin.html", message=_WHY.get(why, ""), nonce=nonce, session=None,
                     next=_local(next))  # fmt: skip
    response.set_cookie(_SIGNIN_COOKIE, nonce, httponly=True, samesite="strict",
                        secure=_secure(request), path="/signin")  # fmt: skip
    return response


@router.post("/signin")
async def signin(request: Request) -> Response:
    form = await _form(request)
    wanted = _local(form.get("next", "/"))
    nonce = request.cookies.get(_SIGNIN_COOKIE, "")
    if not nonce or not secrets.compare_digest(nonce.encode(), form.get("csrf", "").encode()):
        return _page("signin.html", 403, session=None, nonce=nonce, next=wanted,
                     message="the sign-in form had expired; enter your token again")  # fmt: skip
    token = form.get("token", "").strip()
    srv = _server(request)
    try:
        person = await run_in_threadpool(srv.reviewer.person, token)
    except identity.UnauthenticatedError as e:
        return _page("signin.html", 401, session=None, nonce=nonce, next=wanted,
                     message=f"{e.message}: {e.fix}")  # fmt: skip
    except identity.IdentityUnavailableError as e:
        return _page("signin.html", 503, session=None, nonce=nonce, next=wanted,
                     message=f"{e.message}: {e.fix}")  # fmt: skip
    request.state.actor = person.username
    session = _sessions(request).start(token, person.username)
    response = RedirectResponse(wanted, status_code=303)
    response.set_cookie(COOKIE, session.id, httponly=True, samesite="strict",
                        secure=_secure(request), path="/")  # fmt: skip
    response.delete_cookie(_SIGNIN_COOKIE, path="/signin")
    return response


@router.post("/signout")
async def signout(request: Request) -> Response:
    form = await _form(request)
    session = _sessions(request).get(request.cookies.get(COOKIE))
    if session is not None:
        if not check_csrf(session, form.get("csrf")):
            return _refusal(request, ApiError(403, "the sign-out form did not carry this "
                            "session's CSRF token", fix="reload the page and sign out again"),
                            session)  # fmt: skip
        _sessions(request).end(session.id)
    return _to_signin(request, "signedout")


# --- pages ------------------------------------------------------------------------------


def _health(row: dict[str, Any]) -> str:
    if "error" in row:
        return "unknown"
    desired, ready = row.get("desired", 0), row.get("ready", 0)
    if desired and ready >= desired:
        return "healthy"
    return "degraded" if desired else "no replicas"


def _alerts(repo: Repository, tenants: list[str]) -> tuple[dict[str, Any], str]:
    """``tenants``' firing alerts as the API reads them, or why none are shown."""
    try:
        found = reads.firing_alerts(repo, tenants)
    except (errors.TenantryError, OSError) as e:
        # Alertmanager not answering hides the alerts only, and says so: an empty list
        # must never read as "all clear".
        return {}, f"firing alerts are unknown: {e}"
    if not found["alertmanager"]:
        return {}, "firing alerts are not shown: platform.yaml names no Alertmanager"
    return found["tenants"], ""


@router.get("/")
def overview(request: Request) -> Response:
    def render(session: Session, who: Caller) -> Response:
        srv = _server(request)
        alerts, alerts_note = _alerts(who.repo, [t.name for t in who.readable()])
        tenants = []
        for tenant in who.readable():
            detail = reads.tenant_detail(tenant.name, who, srv, request)
            names = [tenant.name]
            pending = [
                {**reads.promotion_view(p),
                 "mayApprove": who.may("approve", tenant, requested_by=p.requested_by).allowed}
                for p in srv.ledger.promotions(tenants=names, status="pending", limit=50)
            ]  # fmt: skip
            tenants.append({
                "name": tenant.name,
                "role": rights.role(who.person, tenant, who.repo.platform),
                "quota": detail["quota"],
                "services": [s.name for s in who.repo.services if s.tenant == tenant.name],
                "deploys": [reads.deployment_view(d) for d in
                            srv.ledger.deployments_page(tenants=names, limit=5)],
                "failures": [reads.deployment_view(d) for d in
                             srv.ledger.deployments_page(tenants=names, result="failed",
                                                         limit=5)],
                "pending": pending,
                "alerts": alerts.get(tenant.name, {"total": 0, "alerts": []}),
            })  # fmt: skip
        waiting = [p for t in tenants for p in t["pending"] if p["mayApprove"]]
        return _page("overview.html", session=session, who=who.person.username,
                     admin=who.admin, tenants=tenants, waiting=waiting,
                     alerts_note=alerts_note)  # fmt: skip

    return _guarded(request, render)


def _matrix(who: Caller, tenant_name: str, running: list[dict[str, Any]]) -> list[dict[str, Any]]:
    tenant = who.repo.tenant(tenant_name)
    rows = []
    for environment in who.repo.platform.environments:
        if environment.name not in tenant.environments:
            continue
        for cluster in environment.clusters:
            found = [r for r in running if r["cluster"] == cluster.name]
            row = dict(found[0]) if found else {"environment": environment.name,
                                                "cluster": cluster.name}  # fmt: skip
            row["health"] = _health(row) if found else "not deployed"
            rows.append(row)
    return rows


def _traffic(who: Caller, srv: Server, route: str) -> tuple[dict[str, Any], str]:
    """The service's live traffic (weights, health, failovers) as the API reads it, or
    why it is not shown."""
    if who.repo.platform.traffic is None:
        return {"routes": [], "failovers": []}, "platform.yaml routes no live traffic"
    try:
        found = reads.traffic(who, srv)
    except (errors.TenantryError, OSError) as e:
        # The router (HAProxy's runtime API, Route 53) not answering hides this panel
        # only; the rest of the page is the ledger's and the clusters'.
        return {"routes": [], "failovers": []}, f"the traffic router did not answer: {e}"
    return {key: [r for r in rows if r["route"] == route] for key, rows in found.items()}, ""


# History rows per page: a service's whole history (thousands of deploys) would make a
# slow, huge page; older rows are a link away ("Older →", the API's ``before`` cursor).
HISTORY_PAGE = 100


def _cursor(text: str) -> int | None:
    """The ``before`` of a history page link: an id, or none (the newest page)."""
    if not text:
        return None
    if not text.isdigit() or not 1 <= int(text) < 2**63:
        raise ApiError(422, f"malformed request: before {text[:20]!r} is not a deployment id",
                       fix="use the history's Older and Newest links")  # fmt: skip
    return int(text)


def _history_page(
    who: Caller, srv: Server, request: Request, tenant: str, service: str,
    filters: dict[str, str], before: int | None,
) -> dict[str, Any]:  # fmt: skip
    """One page of the service's history, newest first, and the links to page on: one
    row more than shown is read, so "Older" appears only when older rows exist."""
    found = reads.history(who, srv, request, tenant=tenant, service=service,
                          environment=filters["environment"] or None,
                          result=filters["result"] or None, limit=HISTORY_PAGE + 1,
                          before=before)["items"]  # fmt: skip
    shown = found[:HISTORY_PAGE]
    kept = {k: v for k, v in filters.items() if v}  # the filters stay on every page
    here = f"/services/{quote(tenant)}/{quote(service)}"
    older = (f"{here}?{urlencode({**kept, 'before': shown[-1]['id']})}"
             if len(found) > HISTORY_PAGE else "")  # fmt: skip
    newest = (f"{here}?{urlencode(kept)}" if kept else here) if before is not None else ""
    return {"items": shown, "older": older, "newest": newest}


@router.get("/services/{tenant}/{service}")
def service_page(
    request: Request, tenant: str, service: str, environment: str = "", result: str = "",
    before: str = "",
) -> Response:  # fmt: skip
    def render(session: Session, who: Caller) -> Response:
        srv = _server(request)
        found, ref = service_ref(who, tenant, service)
        detail = reads.service_detail(tenant, service, who, srv, request)
        filters = {"environment": environment, "result": result}
        history = _history_page(who, srv, request, tenant, service, filters, _cursor(before))
        pending = [
            {**reads.promotion_view(p),
             "mayApprove": who.may("approve", found, requested_by=p.requested_by).allowed,
             "mayReject": who.may("reject", found, requested_by=p.requested_by).allowed,
             "mayCancel": who.may("cancel", found, requested_by=p.requested_by).allowed}
            for p in srv.ledger.promotions(tenants=[tenant], status="pending", limit=100)
            if p.service == service
        ]  # fmt: skip
        work = [reads.operation_view(o) for o in
                srv.ledger.operations(tenants=[tenant], service=service, limit=3)]  # fmt: skip
        rollout = srv.ledger.canary(tenant, service)
        canary = (reads.canary_view(rollout, srv.ledger.canary_intervals(rollout.id))
                  if rollout else None)  # fmt: skip
        figures = canary["intervals"] if canary else []
        steps = (len(policy.policy(who.repo.platform, who.repo.service(ref)).steps)
                 if who.repo.platform.traffic else None)  # fmt: skip
        traffic, traffic_note = _traffic(who, srv, f"{tenant}-{service}")
        succeeded = sorted({d["version"] for d in history["items"]
                            if d["result"] == "succeeded"}, reverse=True)  # fmt: skip
        return _page(
            "service.html", session=session, who=who.person.username, ref=ref,
            tenant=tenant, service=service, matrix=_matrix(who, tenant, detail["running"]),
            published=detail["published"], history=history["items"], pending=pending,
            environments=list(found.environments), filters=filters,
            older=history["older"], newest=history["newest"],
            canary=canary, steps=steps, intervals=chart.table(figures),
            charts=(chart.success_rate(figures), chart.p99(figures)),
            may={r: who.may(r, found).allowed for r in ("rollback", "pause", "resume", "abort")},
            versions=succeeded, traffic=traffic, traffic_note=traffic_note, work=work,
        )  # fmt: skip

    return _guarded(request, render)


@router.get("/services/{tenant}/{service}/rollback")
def rollback_confirm(request: Request, tenant: str, service: str, environment: str = "",
                     to: str = "") -> Response:  # fmt: skip
    def render(session: Session, who: Caller) -> Response:
        found, ref = service_ref(who, tenant, service)
        who.require("rollback", found)  # refused before the question is even asked
        return _page("rollback.html", session=session, who=who.person.username, ref=ref,
                     tenant=tenant, service=service, environment=environment, to=to)  # fmt: skip

    return _guarded(request, render)


# --- actions: each one the API's own function --------------------------------------------


def _back(tenant: str, service: str) -> str:
    return f"/services/{quote(tenant)}/{quote(service)}"


def _promotion_id(text: str) -> int:
    if not text.isdigit() or not 1 <= int(text) < 2**31:
        raise ApiError(422, f"malformed request: promotion id {text[:20]!r} is not a number",
                       fix="use the buttons on the service page")  # fmt: skip
    return int(text)


@router.post("/promotions/{promotion_id}/{verb}")
async def promotion_action(request: Request, promotion_id: str, verb: str) -> Response:
    def act(who: Caller, form: dict[str, str]) -> str:
        number = _promotion_id(promotion_id)
        srv = _server(request)
        if verb == "approve":
            promotion = actions.approve(number, who, srv, request)["promotion"]
        elif verb in ("reject", "cancel"):
            decline = actions.reject if verb == "reject" else actions.cancel
            body = actions.Reason(reason=form.get("reason", ""))  # the API's checks
            promotion = decline(number, who, srv, request, body)
        else:
            raise ApiError(404, f"no action {verb[:20]!r} on a promotion",
                           fix="approve, reject or cancel")  # fmt: skip
        tenant, _, service = promotion["service"].partition("/")
        return _back(tenant, service)

    return await _action(request, act)


@router.post("/rollbacks")
async def rollback(request: Request) -> Response:
    def act(who: Caller, form: dict[str, str]) -> str:
        body = actions.RollbackRequest(service=form.get("service", ""),
                                       environment=form.get("environment", ""),
                                       to=form.get("to") or None)  # fmt: skip
        actions.rollback(body, who, _server(request), request)
        tenant, _, service = body.service.partition("/")
        return _back(tenant, service)

    return await _action(request, act)


@router.post("/canaries/{tenant}/{service}/{verb}")
async def canary_action(request: Request, tenant: str, service: str, verb: str) -> Response:
    def act(who: Caller, form: dict[str, str]) -> str:
        if verb not in ("pause", "resume", "abort"):
            raise ApiError(404, f"no action {verb[:20]!r} on a canary",
                           fix="pause, resume or abort")  # fmt: skip
        actions.control_canary(tenant, service, verb, who, _server(request), request)  # type: ignore[arg-type]
        return _back(tenant, service)

    return await _action(request, act)


# --- live: a change in the ledger tells open pages to refresh their content ---------------


def _fingerprint(srv: Server, tenants: list[str]) -> str:
    """A digest of what the pages show from the ledger, for the caller's tenants."""
    parts: list[Any] = [
        [(p.id, p.status, p.approved_by) for p in srv.ledger.promotions(tenants=tenants,
                                                                         limit=50)],
        [(d.id, d.result) for d in srv.ledger.deployments_page(tenants=tenants, limit=20)],
        [(o.id, o.status, len(o.progress)) for o in srv.ledger.operations(tenants=tenants)],
        [(c.status, c.step, c.weight, c.passes, c.failures, str(c.updated))
         for t in tenants for s in srv.repo.services if s.tenant == t
         for c in [srv.ledger.canary(t, s.name)] if c is not None],
    ]  # fmt: skip
    return hashlib.sha256(json.dumps(parts, default=str).encode()).hexdigest()


# What a watch has before its first read answered.
_UNREAD = object()


class _Watch:
    """One set of tenants' digest, read by one task for every open page that shows it."""

    def __init__(self) -> None:
        self.version = 0  # grows with every change after the first read
        self.changed = asyncio.Event()  # set (and replaced) at each change
        self.streams = 0
        self.ended = False  # its ledger task stopped: its streams end, the pages reconnect
        # Kept: the event loop holds tasks only weakly.
        self.tasks: list[asyncio.Task[None]] = []

    def bump(self) -> None:
        """Wake every stream of this watch: what its pages show has changed."""
        self.version += 1
        self.changed.set()
        self.changed = asyncio.Event()


class Digests:
    """The live streams' ledger reads, shared: one task per set of tenants reads
    `_fingerprint` every poll while any page of that set is open, and wakes the streams
    when it moves. Ten open pages of one team cost what one does (4 reads a second), and
    a stream learns of a change at the read that saw it, not at a poll of its own."""

    def __init__(self) -> None:
        self._watches: dict[tuple[str, ...], _Watch] = {}

    def join(self, srv: Server, tenants: list[str]) -> _Watch:
        """The watch of ``tenants``, started if no open page watches them yet; call
        `leave` when the stream ends. (Event-loop code: no lock needed.)"""
        key = tuple(sorted(tenants))
        watch = self._watches.get(key)
        if watch is None:
            watch = self._watches[key] = _Watch()
            # Two tasks: a slow Alertmanager must not hold back the ledger's changes.
            watch.tasks = [asyncio.create_task(self._poll(srv, key, watch)),
                           asyncio.create_task(self._poll_alerts(srv, key, watch))]  # fmt: skip
        watch.streams += 1
        return watch

    def leave(self, watch: _Watch) -> None:
        watch.streams -= 1  # its task ends at its next poll when no stream is left

    @staticmethod
    async def _follow(
        watch: _Watch, read: Callable[[], object], every_s: float,
        keep_on: type[Exception] | None = None,
    ) -> None:  # fmt: skip
        """``read()`` every ``every_s`` while pages are open; a different answer than the
        last wakes the streams. A ``keep_on`` failure keeps the last answer (the pages
        keep what they show; the next read retries)."""
        last: object = _UNREAD
        while watch.streams > 0 and not watch.ended:
            try:
                now = await run_in_threadpool(read)
            except Exception as e:
                if keep_on is None or not isinstance(e, keep_on):
                    raise
                now = last
            if last is not _UNREAD and now != last:
                watch.bump()
            last = now
            await asyncio.sleep(every_s)

    async def _poll(self, srv: Server, key: tuple[str, ...], watch: _Watch) -> None:
        try:
            await self._follow(watch, lambda: _fingerprint(srv, list(key)), _LIVE_POLL_S,
                               keep_on=SQLAlchemyError)  # fmt: skip
        except Exception:
            # A bug, not the database: said in the log, and the watch's pages reconnect
            # to a new one rather than stay silently stale.
            log.exception("the live digest of tenants %s failed", ", ".join(key))
        finally:
            watch.ended = True
            watch.changed.set()
            if self._watches.get(key) is watch:
                del self._watches[key]

    async def _poll_alerts(self, srv: Server, key: tuple[str, ...], watch: _Watch) -> None:
        # Alertmanager's failures are part of what the page shows (`_alerts`): only a
        # bug ends this, said in the log; the pages keep following the ledger.
        try:
            await self._follow(watch, lambda: _alerts(srv.repo, list(key)), _ALERTS_POLL_S)
        except Exception:
            log.exception("the live alerts of tenants %s failed", ", ".join(key))


def _digests(request: Request) -> Digests:
    found: Digests = request.app.state.digests
    return found


@router.get("/events")
def live(request: Request) -> Response:
    sessions = _sessions(request)
    session_id = request.cookies.get(COOKIE)
    session = sessions.get(session_id)
    if session is None:
        return Response("signed out", status_code=401)
    try:
        who = _caller(request, session)
    except _SignedOut:
        return Response("signed out", status_code=401)
    srv = _server(request)
    tenants = [t.name for t in who.readable()]
    digests = _digests(request)

    async def stream() -> AsyncIterator[str]:
        # Async, so an open page holds no worker thread while it waits: the shared
        # watch's ledger reads run in the thread pool (shared with the API's handlers).
        watch = digests.join(srv, tenants)
        try:
            seen = watch.version
            yield "event: hello\ndata: {}\n\n"
            loop = asyncio.get_running_loop()
            written = loop.time()
            while not watch.ended:
                if sessions.get(session_id) is None:
                    yield "event: signedout\ndata: {}\n\n"
                    return
                if watch.version == seen:
                    # Woken at once by a change; at least every poll, to notice a
                    # session that ended.
                    with contextlib.suppress(TimeoutError):
                        await asyncio.wait_for(watch.changed.wait(), _LIVE_POLL_S)
                if watch.version != seen:
                    seen = watch.version
                    written = loop.time()
                    yield "event: change\ndata: {}\n\n"
                elif loop.time() - written >= _KEEPALIVE_S:
                    # A comment line: a closed page is noticed at the next write, so its
                    # stream stops instead of waiting until the session ends.
                    written = loop.time()
                    yield ": keep-alive\n\n"
            # The watch stopped (see Digests._poll): ending the response makes the
            # page's EventSource reconnect, to a new watch.
        finally:
            digests.leave(watch)

    return StreamingResponse(stream(), media_type="text/event-stream",
                             headers={"Cache-Control": "no-store"})  # fmt: skip
