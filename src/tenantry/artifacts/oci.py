"""Charts in an OCI registry (``artifacts.kind: oci``), through the Distribution API v2.

``oci://<registry>/<prefix>/<tenant>/<service>:<version>`` holds each published chart as
``helm push`` makes it (`tenantry.artifacts.oci_manifest`, the pure half), with its
provenance as manifest annotations, so a real ``helm pull`` reads it and the deployer can
verify it. The same rules as the S3 path (`tenantry.artifacts.store`):

* Versions are immutable: if the tag exists, the same chart content (by the content
  digest annotation) is a no-op that returns the existing manifest digest, and other
  content is `store.ImmutableVersionError`.
* Nothing is half-published: both blobs are uploaded (and already-present ones
  checked) before the manifest, and the manifest PUT — which writes the tag — is the
  last write. A failure before it leaves at most unreferenced blobs, which no tag names.
  The Distribution API has no conditional tag write, so two publishers racing on one
  new version both pass the existence check and the later manifest wins; the ledger
  records each publisher's digest, and the deployer trusts only those.
* Every read is verified: the manifest against its digest, the archive against the
  layer's digest.

Errors — registry unreachable, TLS not trusted, credentials refused — are one type,
`RegistryError`, naming the registry and the fix. Credentials come from a file only its
owner can read or from a Kubernetes Secret; they are never logged or put in a message.
Registries that answer with a Bearer challenge (Harbor, GitLab) get a token from the
realm they name, with the same credentials; the Distribution registry's htpasswd
answers Basic.

``registry: local`` is resolved through `register_registry`, which the local platform
calls from above (this module never imports it).
"""

from __future__ import annotations

import base64
import datetime
import json
import re
import ssl
import stat
from collections.abc import Callable, Generator, Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal
from urllib.parse import urljoin

import httpx2

from tenantry import errors
from tenantry.artifacts import index
from tenantry.artifacts import oci_manifest as om
from tenantry.artifacts.package import Package
from tenantry.artifacts.repositories import ChartNotFoundError, StoreUnavailableError
from tenantry.artifacts.store import DigestMismatchError, ImmutableVersionError
from tenantry.kube.client import Kube
from tenantry.monitoring import secret_store
from tenantry.observability.secrets import UnreadableValueError
from tenantry.spec import models

__all__ = [
    "Chart", "Credentials", "Endpoint", "Fetched", "ImmutableVersionError", "OciRepositories",
    "Pushed", "Registry", "RegistryError", "connect", "credentials_from_file",
    "credentials_from_secret", "register_registry",
]  # fmt: skip

LOCAL = "local"
_ACCEPT = ", ".join((om.MANIFEST_MEDIA_TYPE, "application/vnd.oci.image.index.v1+json"))
_PAGE = 1000


class RegistryError(errors.TenantryError):
    """The registry could not be reached, was not trusted, or refused the request."""

    def __init__(self, message: str, *, fix: str | None = None, retryable: bool = False) -> None:
        super().__init__(message, fix=fix)
        self.retryable = retryable


@dataclass(frozen=True)
class Credentials:
    """A registry user and password (the password is never shown)."""

    user: str
    password: str = field(repr=False)


@dataclass(frozen=True)
class Endpoint:
    """How to reach a named registry (``local``): its address and the files to use when
    platform.yaml gives none."""

    address: str
    ca_file: Path | None = None
    credentials_file: Path | None = None
    # The shared secret its notifications carry, when platform.yaml names none.
    events_secret_file: Path | None = None


EndpointResolver = Callable[[], Endpoint | None]
_resolvers: dict[str, EndpointResolver] = {}


def register_registry(name: str, resolve: EndpointResolver) -> None:
    """Let ``artifacts.registry: <name>`` mean the registry ``resolve`` finds (None when
    it does not run)."""
    _resolvers[name] = resolve


def _endpoint(spec: models.OciArtifacts) -> Endpoint:
    if spec.registry != LOCAL:
        return Endpoint(spec.registry)
    resolve = _resolvers.get(spec.registry)
    if resolve is None:
        raise RegistryError(
            "platform.yaml says artifacts.registry: local, which nothing here resolves",
            fix="run it through the tenantry command, or set artifacts.registry to host:port",
        )
    found = resolve()
    if found is None:
        raise RegistryError(
            "platform.yaml says artifacts.registry: local, but the local registry is not running",
            fix="start the local platform with `tenantry up`",
        )
    return found


def events_secret(
    spec: models.OciArtifacts, *, root: Path, secrets: Callable[[], Kube] | None = None,
    secrets_namespace: str = "tenantry-monitoring",
) -> str | None:  # fmt: skip
    """The shared secret the registry's notifications must carry (``artifacts.
    eventsSecret``, else the named registry's own); None: notifications are refused."""
    source = spec.events_secret
    if source is not None and source.file is not None:
        return _private_text(root / source.file, "events secret file").strip() or None
    if source is not None and source.secret is not None:
        if secrets is None:
            raise RegistryError(
                "artifacts.eventsSecret.secret needs a cluster connection",
                fix="run this where the platform's clusters are reachable",
            )
        with secrets() as kube:
            value = _secret_value(kube, secrets_namespace, source.secret, holds="the secret")
            return value.strip() or None
    if spec.registry == LOCAL:
        found = _endpoint(spec).events_secret_file
        if found is not None:
            return _private_text(found, "events secret file").strip() or None
    return None


def _private_text(path: Path, what: str = "registry credentials file") -> str:
    """The text of ``path``; refused if anyone but its owner can read it."""
    try:
        mode = path.stat().st_mode
        text = path.read_text()
    except OSError as e:
        raise RegistryError(
            f"cannot read the {what} {path}: {e.strerror}",
            fix="write the value into it and chmod 600 it, or point platform.yaml at the "
            "right file",
        ) from e
    if mode & (stat.S_IRWXG | stat.S_IRWXO):
        raise RegistryError(
            f"the {what} {path} can be read by others (mode {stat.S_IMODE(mode):04o})",
            fix=f"chmod 600 {path}",
        )
    return text


def _secret_value(kube: Kube, namespace: str, ref: models.SecretRef, *, holds: str) -> str:
    """Key ``ref.key`` of Secret ``ref.name`` in ``namespace``, which should hold ``holds``."""
    where = f"Secret {namespace}/{ref.name} key {ref.key}"
    try:
        value = secret_store.cluster_reader(kube, namespace)(ref)
    except UnreadableValueError as e:
        raise RegistryError(f"{where} {e}") from e
    if value is None:
        raise RegistryError(
            f"{where} does not exist",
            fix=f"kubectl -n {namespace} create secret generic {ref.name} "
            f"--from-file={ref.key}=<file with {holds}>",
        )
    return value


def _reference(address: str, prefix: str, tenant: str, service: str, version: str) -> str:
    return f"oci://{address}/{om.repository(prefix, tenant, service)}:{om.tag_for(version)}"


def reference(spec: models.OciArtifacts, tenant: str, service: str, version: str) -> str:
    """A chart version's reference as `Registry.reference` gives it, without connecting
    (no credentials read): what the ledger and events name it by."""
    return _reference(_endpoint(spec).address, spec.prefix, tenant, service, version)


def credentials_from_file(path: Path) -> Credentials:
    """The ``user:password`` line of ``path``; refused if anyone but its owner can read it."""
    return _parse_credentials(_private_text(path), where=str(path))


def _parse_credentials(text: str, *, where: str) -> Credentials:
    lines = [line for line in text.splitlines() if line.strip()]
    user, sep, password = (lines[0] if len(lines) == 1 else "").partition(":")
    if not sep or not user or not password:
        raise RegistryError(
            f"{where} does not hold one `user:password` line",
            fix="write the registry's user and password as `user:password` on one line",
        )
    return Credentials(user.strip(), password.strip())


def credentials_from_secret(kube: Kube, namespace: str, ref: models.SecretRef) -> Credentials:
    """The ``user:password`` in key ``ref.key`` of Secret ``ref.name`` in ``namespace``."""
    value = _secret_value(kube, namespace, ref, holds="user:password")
    return _parse_credentials(value, where=f"Secret {namespace}/{ref.name} key {ref.key}")


def connect(
    spec: models.OciArtifacts,
    *,
    root: Path,
    secrets: Callable[[], Kube] | None = None,
    secrets_namespace: str = "tenantry-monitoring",
    timeout_s: float = 30.0,
) -> Registry:
    """A client of the registry ``spec`` names. Relative file paths are read from the
    platform repository ``root``; a Secret is read through ``secrets()`` (a connection to
    the platform's cluster that holds it) in ``secrets_namespace``."""
    endpoint = _endpoint(spec)
    creds: Credentials | None = None
    if spec.credentials is not None and spec.credentials.file is not None:
        creds = credentials_from_file(root / spec.credentials.file)
    elif spec.credentials is not None and spec.credentials.secret is not None:
        if secrets is None:
            raise RegistryError(
                "artifacts.credentials.secret needs a cluster connection to read it",
                fix="run this where the platform's clusters are reachable",
            )
        with secrets() as kube:
            creds = credentials_from_secret(kube, secrets_namespace, spec.credentials.secret)
    elif endpoint.credentials_file is not None:
        creds = credentials_from_file(endpoint.credentials_file)
    ca = root / spec.ca_file if spec.ca_file else endpoint.ca_file
    return Registry(
        endpoint.address, spec.prefix, credentials=creds, ca_file=ca, timeout_s=timeout_s
    )


@dataclass(frozen=True)
class Pushed:
    """What a push did: the manifest digest is what the ledger records and the deployer
    trusts; ``chart_digest`` is the archive's sha256 (hex), as the S3 path records it."""

    reference: str
    digest: str
    chart_digest: str
    outcome: Literal["published", "unchanged"]


@dataclass(frozen=True)
class Fetched:
    """A chart read back from the registry, its manifest and archive verified."""

    data: bytes
    digest: str
    provenance: om.Provenance


@dataclass(frozen=True)
class Chart:
    """One published version of a service: its provenance, manifest digest and metadata."""

    provenance: om.Provenance
    digest: str
    metadata: dict[str, Any]

    @property
    def index_entry(self) -> dict[str, Any]:
        """Its entry in the tenant's index.yaml."""
        return om.index_entry(self.metadata, self.provenance)


_CHALLENGE_PARAM = re.compile(r'(\w+)="([^"]*)"')


class _RegistryAuth(httpx2.Auth):
    """Basic credentials on every request; on a Bearer challenge, a token from the realm
    it names (fetched with the same credentials), kept until a request is refused again."""

    requires_response_body = True

    def __init__(self, creds: Credentials | None) -> None:
        self.basic = (
            "Basic " + base64.b64encode(f"{creds.user}:{creds.password}".encode()).decode()
            if creds
            else None
        )
        self.token: str | None = None

    def auth_flow(
        self, request: httpx2.Request
    ) -> Generator[httpx2.Request, httpx2.Response, None]:
        self._authorize(request)
        response = yield request
        challenge = response.headers.get("WWW-Authenticate", "")
        if response.status_code != 401 or not challenge.lower().startswith("bearer "):
            return
        params = dict(_CHALLENGE_PARAM.findall(challenge))
        realm = params.pop("realm", None)
        if realm is None:
            return
        token_request = httpx2.Request("GET", realm, params=params)
        if self.basic is not None:
            token_request.headers["Authorization"] = self.basic
        token_response = yield token_request
        if token_response.status_code != 200:
            return  # the original 401 stands, and is reported as refused credentials
        body = token_response.json()
        self.token = body.get("token") or body.get("access_token")
        self._authorize(request)
        yield request

    def _authorize(self, request: httpx2.Request) -> None:
        if self.token:
            request.headers["Authorization"] = f"Bearer {self.token}"
        elif self.basic is not None:
            request.headers["Authorization"] = self.basic


class Registry:
    """A client of one registry and repository prefix. Close it (or use ``with``)."""

    def __init__(
        self,
        address: str,
        prefix: str,
        *,
        credentials: Credentials | None,
        ca_file: Path | None,
        timeout_s: float = 30.0,
    ) -> None:
        self.address = address
        self.prefix = prefix
        self.user = credentials.user if credentials else None
        self.ca_file = ca_file
        try:
            verify = ssl.create_default_context(cafile=str(ca_file) if ca_file else None)
        except (OSError, ssl.SSLError) as e:
            raise RegistryError(
                f"cannot load the CA file {ca_file} for registry {address}: {e}",
                fix="point artifacts.caFile at the PEM CA certificate that signed the "
                "registry's certificate",
            ) from e
        self._http = httpx2.Client(
            base_url=f"https://{address}",
            auth=_RegistryAuth(credentials),
            verify=verify,
            timeout=httpx2.Timeout(timeout_s),
            trust_env=False,
        )

    def __enter__(self) -> Registry:
        return self

    def __exit__(self, *_: object) -> None:
        self.close()

    def close(self) -> None:
        """Close the connections."""
        self._http.close()

    def reference(self, tenant: str, service: str, version: str) -> str:
        """``oci://<registry>/<prefix>/<tenant>/<service>:<tag>``, what helm pulls."""
        return _reference(self.address, self.prefix, tenant, service, version)

    # --- HTTP ---------------------------------------------------------------------------

    @contextmanager
    def _translate(self, what: str) -> Iterator[None]:
        try:
            yield
        except httpx2.TransportError as e:
            reason = str(e) or type(e).__name__
            if "CERTIFICATE_VERIFY_FAILED" in reason or isinstance(
                e.__cause__ or e.__context__, ssl.SSLError
            ):
                raise RegistryError(
                    f"registry {self.address}: its TLS certificate is not trusted while "
                    f"{what} ({reason})",
                    fix="set artifacts.caFile to the CA that signed the registry's "
                    "certificate (the local platform's is <state dir>/registry/ca/ca.crt)",
                ) from e
            raise RegistryError(
                f"registry {self.address} is unreachable while {what}: {reason}",
                fix=f"check that the registry at {self.address} runs and this machine reaches "
                "it over HTTPS (the local one: `tenantry up`), then try again",
                retryable=True,
            ) from e

    def _request(
        self, method: str, url: str, *, what: str, ok: Iterable[int], **kwargs: Any
    ) -> httpx2.Response:
        with self._translate(what):
            response = self._http.request(method, url, **kwargs)
        if response.status_code in ok:
            return response
        self._refused(response, what)
        raise AssertionError("unreachable")  # _refused always raises

    def _refused(self, response: httpx2.Response, what: str) -> None:
        code = response.status_code
        detail = _error_detail(response)
        if code == 401:
            who = f"user {self.user}" if self.user else "anonymous requests"
            raise RegistryError(
                f"registry {self.address} refused the credentials of {who} (401) while {what}",
                fix="check the registry's user and password in artifacts.credentials (the "
                "file or Secret holds `user:password`)",
            )
        if code == 403:
            raise RegistryError(
                f"registry {self.address}: user {self.user} may not do this (403) while "
                f"{what}{detail}",
                fix=f"grant {self.user} push and pull on {self.prefix}/* in the registry",
            )
        raise RegistryError(
            f"registry {self.address} answered {code} while {what}{detail}",
            fix="check the registry's log; try again once it answers",
            retryable=code >= 500 or code == 429,
        )

    # --- reads --------------------------------------------------------------------------

    def _manifest(self, repo: str, ref: str) -> tuple[bytes, str] | None:
        """A manifest's bytes and digest (verified), or None if the tag/digest is absent."""
        what = f"reading {repo}:{ref}"
        response = self._request(
            "GET", f"/v2/{repo}/manifests/{ref}", what=what, ok=(200, 404),
            headers={"Accept": _ACCEPT},
        )  # fmt: skip
        if response.status_code == 404:
            return None
        data = response.content
        digest = om.sha256(data)
        claimed = response.headers.get("Docker-Content-Digest")
        expected = ref if ref.startswith("sha256:") else claimed
        if expected and expected != digest:
            raise DigestMismatchError(
                f"{self.address}/{repo}:{ref}: the manifest's sha256 is {digest}, not {expected}",
                fix="the registry returned other content than it names; check its storage",
            )
        return data, digest

    def _blob(self, repo: str, descriptor: dict[str, Any], *, what: str) -> bytes:
        digest = str(descriptor.get("digest", ""))
        with self._translate(what):
            response = self._http.get(f"/v2/{repo}/blobs/{digest}", follow_redirects=True)
        if response.status_code != 200:
            self._refused(response, what)
        data = response.content
        if om.sha256(data) != digest:
            raise DigestMismatchError(
                f"{self.address}/{repo}: blob {digest} has sha256 {om.sha256(data)}",
                fix="the registry returned other content than it names; check its storage",
            )
        return data

    def tags(self, tenant: str, service: str) -> list[str]:
        """Every tag of the service's repository (none if it has none yet)."""
        repo = om.repository(self.prefix, tenant, service)
        found: list[str] = []
        url: str | None = f"/v2/{repo}/tags/list?n={_PAGE}"
        while url:
            response = self._request("GET", url, what=f"listing the tags of {repo}", ok=(200, 404))
            if response.status_code == 404:
                return []
            found.extend(response.json().get("tags") or [])
            url = _next_link(response)
        return found

    def versions(self, tenant: str, service: str) -> list[str]:
        """The service's published chart versions, oldest first (SemVer tags only)."""
        return om.sorted_versions(self.tags(tenant, service))

    def newest(self, tenant: str, service: str) -> str | None:
        """The service's newest published version (SemVer precedence), None if none."""
        versions = self.versions(tenant, service)
        return versions[-1] if versions else None

    def repositories(self, tenant: str | None = None) -> list[tuple[str, str]]:
        """``(tenant, service)`` of every repository under the prefix (``/v2/_catalog``;
        registries that restrict the catalog to admins need `charts` given services)."""
        found: list[tuple[str, str]] = []
        url: str | None = f"/v2/_catalog?n={_PAGE}"
        while url:
            response = self._request("GET", url, what="listing repositories", ok=(200,))
            for repo in response.json().get("repositories") or []:
                pair = om.tenant_service(self.prefix, str(repo))
                if pair and (tenant is None or pair[0] == tenant):
                    found.append(pair)
            url = _next_link(response)
        return sorted(found)

    def fetch(
        self, tenant: str, service: str, version: str, *, digest: str | None = None
    ) -> Fetched:
        """The chart archive of ``version`` with its manifest digest and provenance. With
        ``digest`` (the one the ledger recorded), the manifest is read by that digest, so a
        tag moved since cannot substitute other content."""
        repo = om.repository(self.prefix, tenant, service)
        ref = digest or om.tag_for(version)
        got = self._manifest(repo, ref)
        if got is None:
            raise ChartNotFoundError(
                f"{self.address}/{repo}:{ref} does not exist",
                fix=f"publish {tenant}/{service} {version} with `tenantry publish`",
            )
        data, manifest_digest = got
        found = om.parse_manifest(data, what=f"{self.address}/{repo}:{ref}")
        if found.annotations.get(om.VERSION, version) != version:
            raise DigestMismatchError(
                f"{self.address}/{repo}@{manifest_digest} is version "
                f"{found.annotations[om.VERSION]}, not {version}",
                fix="ask for the version the ledger recorded with this digest",
            )
        archive = self._blob(repo, found.layer, what=f"downloading {repo}:{ref}")
        provenance = om.provenance_of(found, tenant=tenant, service=service, version=version)
        recorded = found.annotations.get(om.ARCHIVE_SHA256)
        if recorded and recorded != provenance.archive_sha256:
            raise DigestMismatchError(
                f"{self.address}/{repo}:{ref}: the archive's sha256 is "
                f"{provenance.archive_sha256}, the manifest says {recorded}",
                fix="publish the chart with `tenantry publish`; never push archives by hand",
            )
        return Fetched(data=archive, digest=manifest_digest, provenance=provenance)

    def chart(self, tenant: str, service: str, version: str) -> Chart | None:
        """One published version's provenance, digest and chart metadata; None if absent
        or not a chart."""
        repo = om.repository(self.prefix, tenant, service)
        got = self._manifest(repo, om.tag_for(version))
        if got is None:
            return None
        data, digest = got
        try:
            found = om.parse_manifest(data, what=f"{self.address}/{repo}:{version}")
        except errors.TenantryError:
            return None  # an image or other artifact under the prefix: not a chart
        config = self._blob(repo, found.config, what=f"reading {repo}:{version}'s chart metadata")
        metadata = _json_object(config)
        provenance = om.provenance_of(found, tenant=tenant, service=service, version=version)
        return Chart(provenance=provenance, digest=digest, metadata=metadata)

    def charts(self, tenant: str, services: Iterable[str] | None = None) -> list[Chart]:
        """Every published version of the tenant's services (``services``, or every
        repository under ``<prefix>/<tenant>/``), oldest first per service."""
        names = (
            sorted(set(services)) if services is not None
            else [s for _, s in self.repositories(tenant)]
        )  # fmt: skip
        found = []
        for service in names:
            for version in self.versions(tenant, service):
                chart = self.chart(tenant, service, version)
                if chart is not None:
                    found.append(chart)
        return found

    def index(
        self, tenant: str, services: Iterable[str] | None = None, *, generated: str
    ) -> dict[str, Any]:
        """The tenant's Helm repository index.yaml data, as the S3 path keeps it (entries
        with ``urls: [<service>-<version>.tgz]``; `fetch` serves the archives)."""
        return om.tenant_index(
            (c.index_entry for c in self.charts(tenant, services)), generated=generated
        )

    # --- push ---------------------------------------------------------------------------

    def _has_blob(self, repo: str, digest: str) -> bool:
        response = self._request(
            "HEAD", f"/v2/{repo}/blobs/{digest}", what=f"checking blob {digest} in {repo}",
            ok=(200, 404),
        )  # fmt: skip
        return response.status_code == 200

    def _upload(self, repo: str, data: bytes) -> None:
        digest = om.sha256(data)
        if self._has_blob(repo, digest):
            return
        what = f"uploading blob {digest} to {repo}"
        started = self._request("POST", f"/v2/{repo}/blobs/uploads/", what=what, ok=(202,))
        location = started.headers.get("Location")
        if not location:
            raise RegistryError(
                f"registry {self.address} started an upload to {repo} without a Location",
                fix="use a registry that implements the OCI distribution spec",
            )
        # The Location keeps the upload's state in its query: the digest is added to it
        # (``params=`` would replace that query).
        base = urljoin(f"https://{self.address}/v2/{repo}/blobs/uploads/", location)
        url = httpx2.URL(base).copy_add_param("digest", digest)
        self._request(
            "PUT", str(url), what=what, ok=(201,), content=data,
            headers={"Content-Type": "application/octet-stream"},
        )  # fmt: skip

    def push(self, pkg: Package, *, source: str | None = None) -> Pushed:
        """Push ``pkg`` to ``<prefix>/<tenant>/<service>:<version>``, as ``helm push``
        would, with its provenance as annotations (``source``: the repository's URL for
        ``org.opencontainers.image.source``). An existing tag with the same content is a
        no-op; with other content, `ImmutableVersionError`."""
        repo = om.repository(self.prefix, pkg.tenant, pkg.service)
        tag = om.tag_for(pkg.version)
        reference = f"oci://{self.address}/{repo}:{tag}"
        archive = pkg.path.read_bytes()
        chart = om.chart_yaml(archive)
        # Checked before the first request: what is pushed must be what was packaged.
        if str(chart.get("version")) != pkg.version or om.sha256(archive)[7:] != pkg.digest:
            raise DigestMismatchError(
                f"{pkg.path} is not the package of {pkg.tenant}/{pkg.service} {pkg.version} "
                f"(Chart.yaml says version {chart.get('version')}; sha256 "
                f"{om.sha256(archive)[7:]}, packaged as {pkg.digest})",
                fix="package the chart again (`tenantry publish` does) and push what it made",
            )
        existing = self._manifest(repo, tag)
        if existing is not None:
            data, digest = existing
            found = om.parse_manifest(data, what=reference)
            notes = found.annotations
            if notes.get(om.CONTENT_DIGEST) != pkg.content_digest:
                raise ImmutableVersionError(
                    f"{pkg.tenant}/{pkg.service} {pkg.version} is already published in "
                    f"{self.address} with different content (commit "
                    f"{notes.get(om.GIT_COMMIT) or notes.get(om.REVISION) or '?'})",
                    fix="versions are immutable: bump `version` in the service's descriptor "
                    "or Chart.yaml",
                )
            chart_digest = str(found.layer.get("digest", "")).removeprefix("sha256:")
            return Pushed(reference, digest, chart_digest, "unchanged")
        provenance = om.Provenance(
            tenant=pkg.tenant, service=pkg.service, version=pkg.version,
            git_commit=pkg.provenance.git_commit, author=pkg.provenance.author,
            published_at=pkg.provenance.time, content_digest=pkg.content_digest,
            archive_sha256=pkg.digest,
        )  # fmt: skip
        config = om.config_json(chart)
        manifest = om.manifest(
            config, archive, om.chart_annotations(chart, provenance, source=source)
        )
        # Blobs first; the manifest (which writes the tag) last.
        self._upload(repo, archive)
        self._upload(repo, config)
        response = self._request(
            "PUT", f"/v2/{repo}/manifests/{tag}", what=f"pushing the manifest of {reference}",
            ok=(201,), content=manifest, headers={"Content-Type": om.MANIFEST_MEDIA_TYPE},
        )  # fmt: skip
        digest = om.sha256(manifest)
        stored = response.headers.get("Docker-Content-Digest", digest)
        if stored != digest:
            raise DigestMismatchError(
                f"registry {self.address} stored {reference} as {stored}, not {digest}",
                fix="the registry rewrote the manifest; use one that stores it as sent",
            )
        return Pushed(reference, digest, pkg.digest, "published")


# ``<service>-<version>.tgz``: a service is a DNS label (no dots), so the version starts
# at the first ``-`` followed by ``N.N.N``.
_ARCHIVE = re.compile(
    r"(?P<service>[a-z0-9-]+?)-(?P<version>\d+\.\d+\.\d+(?:[-+][0-9A-Za-z.+-]*)?)\.tgz"
)


class OciRepositories:
    """Every tenant's Helm repository from a registry, for the Tenantry server
    (`tenantry.artifacts.repositories.ChartRepositories`): the index is built from the
    tags and manifests of ``<prefix>/<tenant>/*``, archives are the chart layers, each
    checked against its content address.

    ``services(tenant)`` names the tenant's services (from the platform repository);
    without it the registry's catalog is listed, which Harbor and GitLab give to
    administrators only."""

    def __init__(
        self,
        registry: Registry,
        *,
        services: Callable[[str], Iterable[str]] | None = None,
        now: Callable[[], str] | None = None,
    ) -> None:
        self._registry = registry
        self._services = services
        self._now = now or _utc_now

    def index_for(self, tenant: str) -> dict[str, Any]:
        """``tenant``'s index.yaml data (an empty index when nothing is published)."""
        names = self._services(tenant) if self._services else None
        try:
            return self._registry.index(tenant, names, generated=self._now())
        except RegistryError as e:
            raise _unavailable(f"the charts of {tenant}", self._registry, e) from e

    def archive(self, tenant: str, file: str) -> bytes:
        """The chart archive ``file`` (``<service>-<version>.tgz``) of ``tenant``."""
        match = _ARCHIVE.fullmatch(file) if index.is_archive_file(file) else None
        if match is None:
            raise ChartNotFoundError(f"{file!r} is not a chart archive's name")
        try:
            return self._registry.fetch(tenant, match["service"], match["version"]).data
        except RegistryError as e:
            raise _unavailable(f"{tenant}/{file}", self._registry, e) from e


def _unavailable(what: str, registry: Registry, e: RegistryError) -> StoreUnavailableError:
    return StoreUnavailableError(
        f"the registry {registry.address} could not give {what}: {e.message}", fix=e.fix
    )


def _utc_now() -> str:
    return datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds")


def _error_detail(response: httpx2.Response) -> str:
    """The registry's own error codes and messages (OCI error body), for the message."""
    try:
        body = response.json()
    except ValueError:
        return ""
    found = [
        f"{e.get('code', '')}: {e.get('message', '')}".strip(": ")
        for e in (body.get("errors") or [] if isinstance(body, dict) else [])
        if isinstance(e, dict)
    ]
    return f" ({'; '.join(found)})" if found else ""


def _next_link(response: httpx2.Response) -> str | None:
    """The next page's URL from a ``Link: <…>; rel="next"`` header."""
    link = response.headers.get("Link", "")
    match = re.match(r'\s*<([^>]+)>\s*;\s*rel="?next"?', link)
    return match.group(1) if match else None


def _json_object(data: bytes) -> dict[str, Any]:
    try:
        value = json.loads(data)
    except ValueError:
        return {}
    return value if isinstance(value, dict) else {}
