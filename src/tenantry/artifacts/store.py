"""The S3 bucket as Helm repositories: ``<tenant>/index.yaml`` + ``<tenant>/<svc>-<ver>.tgz``.

One repository per tenant (service names may repeat across tenants, and a tenant's
index is only contended by its own publishers). The bucket is private: people read a
repository through the Tenantry server (``helm repo add payments
https://<server>/helm/payments --username … --password-stdin``, `tenantry.server.helmrepo`).

* Versions are immutable: an archive is written with ``If-None-Match: *``; if the
  version exists, identical content (by content digest) is a no-op and different
  content is `ImmutableVersionError`.
* The index is updated by compare-and-swap: read it with its ETag, add the entry,
  write with ``If-Match`` (or ``If-None-Match: *`` when there is none yet), and on
  412 start again — so concurrent publishers never lose an entry.
"""

from __future__ import annotations

import hashlib
import random
import time
from dataclasses import dataclass
from email.charset import Charset
from email.header import decode_header, make_header
from typing import Any, Literal

from tenantry import errors
from tenantry.artifacts import index
from tenantry.artifacts.package import Package
from tenantry.aws import AwsError, Clients, translate

# How many times a conflicting index update is retried before giving up; with
# jittered backoff this rides out dozens of simultaneous publishers.
_INDEX_ATTEMPTS = 60

META_DIGEST = "sha256"
META_CONTENT = "content-digest"

# S3 sends user metadata as HTTP headers, so botocore refuses any value that is not
# ASCII; a commit author is free text ("José Müller <jose@acme.example>"). Such a
# value travels as one RFC 2047 encoded-word, the way mail headers carry names.
_UTF8 = Charset("utf-8")


def encode_metadata_value(value: str) -> str:
    """``value`` as S3 can carry it: unchanged if plain printable ASCII, else an encoded-word.

    A plain value that merely looks like an encoded-word (contains ``=?``) is encoded
    too, so that decoding never turns it into something else; so are control
    characters such as newlines, which cannot appear in a header.
    """
    if value.isascii() and value.isprintable() and "=?" not in value:
        return value
    return _UTF8.header_encode(value)


def decode_metadata_value(value: str) -> str:
    """The text `encode_metadata_value` was given (plain values come back as they are)."""
    if "=?" not in value:
        return value
    try:
        return str(make_header(decode_header(value)))
    except (ValueError, LookupError, UnicodeDecodeError):
        # Written by someone else and not a valid encoded-word: show it as stored.
        return value


def _encode_metadata(metadata: dict[str, str]) -> dict[str, str]:
    return {key: encode_metadata_value(value) for key, value in metadata.items()}


def _decode_metadata(metadata: dict[str, str]) -> dict[str, str]:
    return {key: decode_metadata_value(value) for key, value in metadata.items()}


class ImmutableVersionError(errors.TenantryError):
    """That chart version is already published with different content."""


class DigestMismatchError(errors.TenantryError):
    """A downloaded archive's sha256 is not the one recorded when it was published."""


@dataclass(frozen=True)
class Fetched:
    """A chart archive read back from the store, its digest verified."""

    key: str
    data: bytes
    digest: str
    metadata: dict[str, str]


def _precondition_failed(e: AwsError) -> bool:
    return e.code in ("PreconditionFailed", "412", "ConditionalRequestConflict")


def publish(c: Clients, bucket: str, pkg: Package) -> Literal["published", "unchanged"]:
    """Upload ``pkg`` and add it to its tenant's index."""
    metadata = {
        META_DIGEST: pkg.digest,
        META_CONTENT: pkg.content_digest,
        "git-commit": pkg.provenance.git_commit,
        "author": pkg.provenance.author,
        "published-at": pkg.provenance.time,
    }
    outcome: Literal["published", "unchanged"] = "published"
    try:
        with translate(f"upload {pkg.key}"):
            c.s3.put_object(
                Bucket=bucket,
                Key=pkg.key,
                Body=pkg.path.read_bytes(),
                IfNoneMatch="*",
                Metadata=_encode_metadata(metadata),
                ContentType="application/gzip",
            )
    except AwsError as e:
        if not _precondition_failed(e):
            raise
        existing = head(c, bucket, pkg.key)
        if existing.get(META_CONTENT) != pkg.content_digest:
            raise ImmutableVersionError(
                f"{pkg.tenant}/{pkg.service} {pkg.version} is already published with "
                f"different content (commit {existing.get('git-commit', '?')})",
                fix="versions are immutable: bump `version` in the service's descriptor "
                "or Chart.yaml",
            ) from e
        outcome = "unchanged"
        metadata = existing
    _add_to_index(c, bucket, pkg, digest=metadata.get(META_DIGEST, pkg.digest))
    return outcome


def head(c: Clients, bucket: str, key: str) -> dict[str, str]:
    """The object's user metadata, decoded (the author's real name)."""
    with translate(f"read {key}"):
        return _decode_metadata(dict(c.s3.head_object(Bucket=bucket, Key=key).get("Metadata", {})))


def _read_index(c: Clients, bucket: str, key: str) -> tuple[dict[str, Any], str | None]:
    try:
        with translate(f"read {key}"):
            got = c.s3.get_object(Bucket=bucket, Key=key)
            return index.parse(got["Body"].read()), str(got["ETag"])
    except AwsError as e:
        if e.code in ("NoSuchKey", "404"):
            return index.empty(), None
        raise


def _add_to_index(c: Clients, bucket: str, pkg: Package, *, digest: str) -> None:
    key = f"{pkg.tenant}/index.yaml"
    entry = {
        "apiVersion": "v2",
        "name": pkg.service,
        "version": pkg.version,
        "appVersion": pkg.app_version,
        "digest": digest,
        "created": pkg.provenance.time,
        "urls": [f"{pkg.service}-{pkg.version}.tgz"],
        "annotations": {
            "tenantry.dev/git-commit": pkg.provenance.git_commit,
            "tenantry.dev/content-digest": pkg.content_digest,
        },
    }
    for attempt in range(_INDEX_ATTEMPTS):
        current, etag = _read_index(c, bucket, key)
        if index.contains(current, pkg.service, pkg.version):
            return
        body = index.dump(index.with_entry(current, entry, generated=pkg.provenance.time))
        condition = {"IfMatch": etag} if etag else {"IfNoneMatch": "*"}
        try:
            with translate(f"update {key}"):
                c.s3.put_object(
                    Bucket=bucket, Key=key, Body=body, ContentType="text/yaml", **condition
                )
            return
        except AwsError as e:
            if not _precondition_failed(e):
                raise
        # Someone else updated the index first: back off with jitter and merge again.
        time.sleep(random.uniform(0, min(0.05 * 2**attempt, 1.0)))  # noqa: S311 - jitter only
    raise errors.TenantryError(
        f"could not add {pkg.key} to {key} after {_INDEX_ATTEMPTS} conflicting updates",
        fix="publish again; the archive is already uploaded, so this only updates the index",
    )


def read_index(c: Clients, bucket: str, tenant: str) -> dict[str, Any]:
    """A tenant's index."""
    return _read_index(c, bucket, f"{tenant}/index.yaml")[0]


def fetch(c: Clients, bucket: str, key: str) -> Fetched:
    """Download an archive and check its sha256 against the published one."""
    with translate(f"download {key}"):
        got = c.s3.get_object(Bucket=bucket, Key=key)
        data: bytes = got["Body"].read()
        metadata = _decode_metadata(dict(got.get("Metadata", {})))
    digest = hashlib.sha256(data).hexdigest()
    expected = metadata.get(META_DIGEST)
    if expected != digest:
        raise DigestMismatchError(
            f"{key}: sha256 {digest} does not match the published {expected or '(none)'}",
            fix="publish the chart with `tenantry publish`; never upload archives by hand",
        )
    return Fetched(key=key, data=data, digest=digest, metadata=metadata)
