"""Every tenant's Helm repository as the Tenantry server reads it, whatever the store.

`ChartRepositories` is the whole interface the server needs (`tenantry.server.helmrepo`):
a tenant's index and one of its archives. `S3Repositories` answers it from the bucket
(`tenantry.artifacts.store`); a registry's adapter answers it from the registry's tags
and chart layers (`tenantry.artifacts.oci.OciRepositories`);
`tenantry.artifacts.source.repositories_for` chooses a platform's.

An implementation checks what it hands out against the store's own record (S3: the
sha256 in the object's metadata; a registry: the layer's content address). The server
checks it again against the digest `tenantry publish` recorded in the ledger — the
store's record proves nothing to someone who can write to the store.
"""

from __future__ import annotations

from typing import Any, Protocol

from tenantry import aws, errors
from tenantry.artifacts import index, store
from tenantry.spec import models


class ChartNotFoundError(errors.TenantryError):
    """The tenant's repository has no such archive (HTTP 404)."""


class StoreUnavailableError(errors.TenantryError):
    """The artifact store did not answer or refused the server (HTTP 503)."""

    retryable = True


class ChartRepositories(Protocol):
    """The tenants' Helm repositories of one platform, read-only."""

    def index_for(self, tenant: str) -> dict[str, Any]:
        """``tenant``'s index.yaml, parsed (an empty index when nothing is published)."""
        ...

    def archive(self, tenant: str, file: str) -> bytes:
        """The bytes of ``file`` (``<service>-<version>.tgz``, a name `index.served`
        lists) in ``tenant``'s repository, checked against the store's own record;
        `ChartNotFoundError` if there is none, `store.DigestMismatchError` if it does
        not match, `StoreUnavailableError` if the store does not answer."""
        ...


_MISSING = ("NoSuchKey", "404", "NotFound")


class S3Repositories:
    """The repositories in the platform's S3 bucket: ``<tenant>/index.yaml`` and
    ``<tenant>/<service>-<version>.tgz``."""

    def __init__(self, clients: aws.Clients, bucket: str) -> None:
        self._clients = clients
        self._bucket = bucket

    def index_for(self, tenant: str) -> dict[str, Any]:
        try:
            return store.read_index(self._clients, self._bucket, tenant)
        except aws.AwsError as e:
            raise _unavailable(f"s3://{self._bucket}/{tenant}/index.yaml", e) from e

    def archive(self, tenant: str, file: str) -> bytes:
        # The caller passes names of the served index only; checked again here because a
        # store key built from anything else could leave the tenant's prefix.
        if not index.is_archive_file(file):
            raise ChartNotFoundError(f"{file!r} is not a chart archive's name")
        key = f"{tenant}/{file}"
        try:
            return store.fetch(self._clients, self._bucket, key).data
        except aws.AwsError as e:
            if e.code in _MISSING:
                raise ChartNotFoundError(
                    f"{key} is listed in the index but not in the bucket",
                    fix="publish the service again with `tenantry publish`",
                ) from e
            raise _unavailable(f"s3://{self._bucket}/{key}", e) from e


def _unavailable(what: str, e: errors.TenantryError) -> StoreUnavailableError:
    # The message names the object and AWS's error code; it holds no credentials.
    return StoreUnavailableError(
        f"the artifact store could not give {what}: {e.message}",
        fix="check that the S3 endpoint in platform.yaml answers and that the server's "
        "credentials may read the bucket",
    )


def for_platform(platform: models.Platform) -> ChartRepositories:
    """The repositories of ``platform``'s artifact store."""
    bucket = platform.bucket
    if bucket is not None:
        try:
            clients = aws.clients(platform)
        except errors.TenantryError as e:
            # A named endpoint whose server is not running (the local one before `up`).
            raise StoreUnavailableError(e.message, fix=e.fix) from e
        return S3Repositories(clients, bucket.bucket)
    if platform.artifacts is None:
        raise errors.UsageError(
            "platform.yaml has no artifacts section, so there are no Helm repositories",
            fix="add artifacts: {bucket: NAME} (see examples/platform-repo/platform.yaml)",
        )
    raise errors.UsageError(
        "the charts are in an OCI registry: its repositories are OciRepositories",
        fix="use tenantry.artifacts.source.repositories_for(repo)",
    )
