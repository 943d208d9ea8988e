"""Where charts are published and read: one small interface per artifact store.

`tenantry publish` puts a package into the store (``publish``, named by ``key`` in the
ledger and in events); the deployer and the production workers need two things more,
whatever the store is:

* ``fetch(tenant, service, version)`` — the archive's bytes and their sha256, checked
  against what the store recorded beside it (the deployer then also checks the digest
  against the ledger's publications, which alone it trusts);
* ``newest(tenant)`` — the newest published version of each of a tenant's services, with
  its digest: what the resync compares with what staging runs.

`S3Charts` answers both from the bucket (the archive, and the tenant's ``index.yaml``);
`OciCharts` from an OCI registry's tags and manifests. `for_repository` picks the one
platform.yaml names.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal, Protocol

from tenantry import errors
from tenantry.artifacts import index, oci, repositories, store
from tenantry.artifacts.package import Package
from tenantry.aws import AwsError, Clients
from tenantry.spec import models
from tenantry.spec.repository import Repository
from tenantry.tenancy import reconcile

Outcome = Literal["published", "unchanged"]


class ChartMissingError(errors.TenantryError):
    """The store no longer holds a chart version it once announced."""


@dataclass(frozen=True)
class Chart:
    """A chart archive read from a store, its digest checked against the store's record."""

    key: str  # where the store keeps it, as records name it
    data: bytes
    digest: str


@dataclass(frozen=True)
class Listed:
    """The newest published version of one service, and its digest ("" if unknown)."""

    version: str
    digest: str


class ChartSource(Protocol):
    """What charts are published to and the deployer reads them from."""

    def key(self, tenant: str, service: str, version: str) -> str:
        """Where the store keeps one version, as records and events name it."""
        ...

    def publish(self, pkg: Package) -> Outcome:
        """Put ``pkg`` in the store: versions are immutable (same content: "unchanged";
        other content: `store.ImmutableVersionError`)."""
        ...

    def fetch(self, tenant: str, service: str, version: str) -> Chart:
        """The archive of one version; `ChartMissingError` if the store lacks it,
        `store.DigestMismatchError` if it is not what the store recorded."""
        ...

    def newest(self, tenant: str) -> dict[str, Listed]:
        """Each of ``tenant``'s services' newest published version (by SemVer)."""
        ...

    def close(self) -> None:
        """Let go of the store's connections."""
        ...


class S3Charts:
    """Charts in the platform's S3 bucket: ``<tenant>/<service>-<version>.tgz``."""

    def __init__(self, clients: Clients, bucket: str) -> None:
        self.clients = clients
        self.bucket = bucket

    def key(self, tenant: str, service: str, version: str) -> str:
        """The object key of one version."""
        return f"{tenant}/{service}-{version}.tgz"

    def publish(self, pkg: Package) -> Outcome:
        """Upload the archive and add it to the tenant's index (compare-and-swap)."""
        return store.publish(self.clients, self.bucket, pkg)

    def close(self) -> None:
        """Nothing: the S3 clients belong to whoever made them."""

    def fetch(self, tenant: str, service: str, version: str) -> Chart:
        """Download one version and check its sha256 against the object's metadata."""
        key = self.key(tenant, service, version)
        try:
            fetched = store.fetch(self.clients, self.bucket, key)
        except AwsError as e:
            if e.code in ("NoSuchKey", "404"):
                raise ChartMissingError(
                    f"{key} no longer exists in bucket {self.bucket}",
                    fix=f"publish {tenant}/{service} {version} again with `tenantry publish`",
                ) from e
            raise
        return Chart(key=key, data=fetched.data, digest=fetched.digest)

    def newest(self, tenant: str) -> dict[str, Listed]:
        """From the tenant's ``index.yaml`` (none yet: nothing published)."""
        return {
            name: Listed(version, digest)
            for name, (version, digest) in index.newest(
                store.read_index(self.clients, self.bucket, tenant)
            ).items()
        }


class OciCharts:
    """Charts in an OCI registry: ``<registry>/<prefix>/<tenant>/<service>:<version>``."""

    def __init__(self, registry: oci.Registry, repo: Repository) -> None:
        self.registry = registry
        self.repo = repo

    def key(self, tenant: str, service: str, version: str) -> str:
        """The chart's OCI reference (``oci://…``), as events and the ledger name it."""
        return self.registry.reference(tenant, service, version)

    def publish(self, pkg: Package) -> Outcome:
        """Push the chart (blobs, then the manifest under its version's tag)."""
        return self.registry.push(pkg).outcome

    def close(self) -> None:
        """Close the registry's HTTP connections."""
        self.registry.close()

    def fetch(self, tenant: str, service: str, version: str) -> Chart:
        """The archive under the version's tag, checked against its manifest; the digest
        returned is the archive's sha256, which the ledger's publication must match (a
        tag moved to other content fails there)."""
        try:
            fetched = self.registry.fetch(tenant, service, version)
        except repositories.ChartNotFoundError as e:
            raise ChartMissingError(e.message, fix=e.fix) from e
        return Chart(self.key(tenant, service, version), fetched.data,
                     fetched.provenance.archive_sha256)  # fmt: skip

    def newest(self, tenant: str) -> dict[str, Listed]:
        """From each of the tenant's services' tags (the catalog is not asked: Harbor and
        GitLab show it to administrators only)."""
        found = {}
        for service in self.repo.services:
            if service.tenant == tenant:
                newest = self.registry.newest(tenant, service.name)
                if newest is not None:
                    found[service.name] = Listed(newest, "")
        return found


def _registry(repo: Repository, spec: models.OciArtifacts) -> oci.Registry:
    return oci.connect(
        spec, root=repo.root, secrets=lambda: reconcile.targets(repo)[0].connect(),
        secrets_namespace=repo.platform.platform_namespaces.monitoring,
    )  # fmt: skip


def repositories_for(repo: Repository) -> repositories.ChartRepositories:
    """Every tenant's Helm repository from the store platform.yaml names, for the server."""
    spec = repo.platform.artifacts
    if not isinstance(spec, models.OciArtifacts):
        return repositories.for_platform(repo.platform)
    try:
        registry = _registry(repo, spec)
    except oci.RegistryError as e:  # the local registry not running, say
        raise repositories.StoreUnavailableError(e.message, fix=e.fix) from e
    return oci.OciRepositories(
        registry, services=lambda t: [s.name for s in repo.services if s.tenant == t]
    )


def for_repository(repo: Repository, clients: Clients | None = None) -> ChartSource:
    """The chart store platform.yaml names: its S3 bucket (through ``clients``) or its
    OCI registry (credentials from a file, or a Secret on the platform's first cluster)."""
    bucket = repo.platform.bucket
    if bucket is not None:
        if clients is None:
            raise errors.UsageError("the S3 chart store needs S3 clients",
                                    fix="pass aws.clients(platform)")  # fmt: skip
        return S3Charts(clients, bucket.bucket)
    spec = repo.platform.artifacts
    if not isinstance(spec, models.OciArtifacts):
        raise errors.UsageError(
            f"{repo.root / 'platform.yaml'} has no artifacts section",
            fix="add artifacts: {bucket: NAME}, or {kind: oci, registry: HOST:PORT}",
        )
    return OciCharts(_registry(repo, spec), repo)
