"""Where the deployer reads published charts: one small interface per artifact store.

The deployer needs two things of a store, whatever it is:

* ``fetch(tenant, service, version)`` — the archive's bytes and their sha256, checked
  against what the store recorded beside it (the deployer then also checks the digest
  against the ledger's publications, which alone it trusts);
* ``newest(tenant)`` — the newest published version of each of a tenant's services, with
  its digest: what the resync compares with what staging runs.

`S3Charts` answers both from the bucket (the archive, and the tenant's ``index.yaml``);
an OCI registry answers them from its tags and manifests.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

from tenantry import errors
from tenantry.artifacts import index, store
from tenantry.aws import AwsError, Clients


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
    """What the deployer reads charts from."""

    def key(self, tenant: str, service: str, version: str) -> str:
        """Where the store keeps one version, as records and events name it."""
        ...

    def fetch(self, tenant: str, service: str, version: str) -> Chart:
        """The archive of one version; `ChartMissingError` if the store lacks it,
        `store.DigestMismatchError` if it is not what the store recorded."""
        ...

    def newest(self, tenant: str) -> dict[str, Listed]:
        """Each of ``tenant``'s services' newest published version (by SemVer)."""
        ...


class S3Charts:
    """Charts in the platform's S3 bucket: ``<tenant>/<service>-<version>.tgz``."""

    def __init__(self, clients: Clients, bucket: str) -> None:
        self.clients = clients
        self.bucket = bucket

    def key(self, tenant: str, service: str, version: str) -> str:
        """The object key of one version."""
        return f"{tenant}/{service}-{version}.tgz"

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
