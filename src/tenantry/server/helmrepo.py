"""Each tenant's Helm repository, served read-only to that tenant's people.

    GET /helm/{tenant}/index.yaml          the tenant's index
    GET /helm/{tenant}/{chart}-{version}.tgz   one archive

A private bucket answers anonymous `helm repo add` with 403, and people hold no keys to
the store; the server does, so it serves the repositories the way it serves the API:

    tenantry local-token alice@acme.example \\
      | helm repo add payments https://tenantry.acme.example/helm/payments \\
          --username alice@acme.example --password-stdin
    helm search repo payments
    helm pull payments/api --version 1.4.0

**The credential is the person's own token**, sent as HTTP Basic auth's password (what
`helm repo add --username … --password-stdin` stores and sends) or as ``Authorization:
Bearer`` (curl, scripts). It is proven by the same TokenReview reviewer as the API's.
**The Basic username is ignored**: identity is proven, never declared, so a username can
neither claim nor narrow anyone; helm only sends credentials when it has a non-empty
username, so give your own for readability. (Comparing it would lock out identities
whose username cannot be a Basic username at all: a ServiceAccount's
``system:serviceaccount:ns:name`` holds colons, which RFC 7617 forbids there.)

No credential, a malformed one or a token the management cluster does not accept:
**401** with ``WWW-Authenticate: Basic realm="tenantry"``. Readable by the tenant's
members, owners and platform admins (the API's ``read`` right); anyone else gets **404**
— another team's repository answers as if it did not exist, as the API's tenants do.

The index's archive URLs are relative file names (`tenantry.artifacts.index.served`):
Helm resolves them against the repository's URL, so `helm pull` comes back here, and
helm sends the credential to the same scheme, host and port only (unless
``--pass-credentials``), which this is. A requested file name is refused (400) unless it
could be a chart archive's name — never "/", "..", "%", quotes — and is served only if
the index lists exactly that name (404 otherwise), so nothing outside the tenant's
repository is ever read. An archive is read whole (charts are small) and its sha256 must
be one `tenantry publish` recorded in the ledger for that version — the digest the
deployer trusts — and the index's: otherwise 502 and nothing is sent.

Every call is written to the audit log like the API's (without the credential).
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import logging
import threading
from collections.abc import Callable

from fastapi import APIRouter, FastAPI, Request, Response
from fastapi.responses import JSONResponse

from tenantry import errors
from tenantry.artifacts import index, repositories, source, store
from tenantry.server import identity
from tenantry.server.context import ApiError, Caller, Server, server
from tenantry.spec import models
from tenantry.spec.repository import Repository

log = logging.getLogger("tenantry.server.helmrepo")

REALM = 'Basic realm="tenantry"'
PREFIX = "/helm"

# Private data: no shared cache may keep it; browsers must not guess another type.
_HEADERS = {"Cache-Control": "private, no-store", "X-Content-Type-Options": "nosniff"}

# What the server asks for a platform's repositories; replaceable (a registry's, later).
Factory = Callable[[Repository], repositories.ChartRepositories]

# Path parameters are plain strings, checked in the handlers after the credential: a
# malformed name from someone unproven gets 401, like everything else here.
router = APIRouter(prefix=PREFIX, tags=["helm"])


class HelmUnauthorizedError(identity.UnauthenticatedError):
    """No credential, a malformed one, or a token nobody vouches for (HTTP 401 with a
    Basic challenge, so helm and browsers know to send one)."""


_FIX = (
    "helm repo add NAME URL --username YOU --password-stdin, with your token on standard "
    "input (on the local platform: tenantry local-token YOU)"
)
_FIX_RENEW = (
    "helm repo add NAME URL --force-update --username YOU --password-stdin, with a current "
    "token on standard input (on the local platform: tenantry local-token YOU)"
)


def bearer_or_basic(authorization: str) -> str:
    """The token in an ``Authorization`` header: a Bearer token, or a Basic password (the
    username is ignored); `HelmUnauthorizedError` if there is none or it is malformed."""
    scheme, _, value = authorization.strip().partition(" ")
    value = value.strip()
    if scheme.lower() == "bearer" and value:
        return value
    if scheme.lower() == "basic" and value:
        try:
            decoded = base64.b64decode(value, validate=True).decode()
        except (binascii.Error, ValueError) as e:
            raise HelmUnauthorizedError("a malformed Basic credential", fix=_FIX) from e
        _, colon, password = decoded.partition(":")
        if colon and password:
            return password
        raise HelmUnauthorizedError("a Basic credential without a password (your token)", fix=_FIX)
    raise HelmUnauthorizedError("no credential", fix=_FIX)


def _reader(request: Request, tenant: str) -> tuple[Server, models.Tenant]:
    """The server and ``tenant`` if the credential's person may read it; 401 or 404."""
    srv = server(request)
    token = bearer_or_basic(request.headers.get("authorization", ""))
    try:
        person = srv.reviewer.person(token)
    except identity.UnauthenticatedError as e:
        # helm keeps the old token in its repositories file until the repository is
        # added again with --force-update.
        raise HelmUnauthorizedError(e.message, fix=_FIX_RENEW) from e
    request.state.actor = person.username
    found = Caller(person, srv.repo).tenant(tenant)  # 404 unless theirs (or an admin)
    request.state.tenant = found.name
    return srv, found


class _Repositories:
    """The platform's repositories, made on first use (the store's endpoint may start
    after the server) and made again after the store did not answer."""

    def __init__(self, make: Factory) -> None:
        self._make = make
        self._lock = threading.Lock()
        self._made: repositories.ChartRepositories | None = None

    def get(self, repo: Repository) -> repositories.ChartRepositories:
        with self._lock:
            if self._made is None:
                try:
                    self._made = self._make(repo)
                except errors.UsageError as e:
                    raise ApiError(501, e.message, fix=e.fix) from e
            return self._made

    def forget(self) -> None:
        with self._lock:
            self._made = None


def _repositories(request: Request) -> _Repositories:
    found: _Repositories = request.app.state.helm_repositories
    return found


def _unavailable(request: Request, e: repositories.StoreUnavailableError) -> ApiError:
    _repositories(request).forget()
    log.warning("helm repository: %s", e.message)
    return ApiError(503, e.message, fix=e.fix)


@router.get("/{tenant}/index.yaml", summary="A tenant's Helm repository index")
def index_yaml(request: Request, tenant: str) -> Response:
    srv, found = _reader(request, tenant)
    try:
        current = _repositories(request).get(srv.repo).index_for(found.name)
    except repositories.StoreUnavailableError as e:
        raise _unavailable(request, e) from e
    return Response(index.dump(index.served(current)), media_type="application/x-yaml",
                    headers=_HEADERS)  # fmt: skip


@router.get("/{tenant}/{file}", summary="One chart archive of a tenant's Helm repository")
def archive(request: Request, tenant: str, file: str) -> Response:
    srv, found = _reader(request, tenant)
    if not index.is_archive_file(file):
        raise ApiError(
            400, f"{file!r} is not a chart archive's name",
            fix="ask for index.yaml, or an archive it lists (<chart>-<version>.tgz)",
        )  # fmt: skip
    try:
        charts = _repositories(request).get(srv.repo)
        entry = index.entry_for_file(charts.index_for(found.name), file)
        if entry is None:
            raise ApiError(
                404, f"no {file} in {found.name}'s Helm repository",
                fix=f"GET {PREFIX}/{found.name}/index.yaml lists its charts",
            )  # fmt: skip
        data = charts.archive(found.name, file)
    except repositories.ChartNotFoundError as e:
        raise ApiError(404, e.message, fix=e.fix) from e
    except repositories.StoreUnavailableError as e:
        raise _unavailable(request, e) from e
    except store.DigestMismatchError as e:
        log.error("helm repository: %s/%s refused: %s", found.name, file, e.message)
        raise ApiError(502, e.message, fix=e.fix) from e
    _check_published(srv, found.name, entry, data, file)
    return Response(data, media_type="application/gzip", headers=_HEADERS)


def _check_published(srv: Server, tenant: str, entry: index.Entry, data: bytes, file: str) -> None:
    """502 unless ``data``'s sha256 is what the index says and what `tenantry publish`
    recorded in the ledger (the store's own record proves nothing to whoever can write
    to the store)."""
    digest = hashlib.sha256(data).hexdigest()
    published = srv.ledger.published_digests(
        tenant=tenant, service=str(entry["name"]), version=str(entry["version"])
    )
    listed = entry.get("digest")
    if digest in published and (not listed or listed == digest):
        return
    why = (
        f"the index lists sha256 {listed}" if digest in published
        else "`tenantry publish` never recorded it in the ledger"
    )  # fmt: skip
    log.error("helm repository: %s/%s has sha256 %s; %s; not served", tenant, file, digest, why)
    raise ApiError(
        502,
        f"{tenant}/{file} in the artifact store has sha256 {digest}, but {why}; not served",
        fix="the platform team restores the archive from the store's versions, or the "
        "service is published again with a new version",
    )


async def _unauthorized(request: Request, e: Exception) -> Response:
    assert isinstance(e, HelmUnauthorizedError)
    body = {"error": e.message, **({"fix": e.fix} if e.fix else {})}
    return JSONResponse(body, status_code=401, headers={"WWW-Authenticate": REALM})


def install(app: FastAPI, make: Factory | None = None) -> None:
    """Serve the tenants' Helm repositories from ``app`` (the API's application), from the
    platform's artifact store (``make``: `source.repositories_for` unless given)."""
    app.state.helm_repositories = _Repositories(make or source.repositories_for)
    app.include_router(router)
    app.add_exception_handler(HelmUnauthorizedError, _unauthorized)
