"""A Helm chart as an OCI artifact, and back (pure: bytes in, bytes out).

What `tenantry.artifacts.oci` pushes is exactly what ``helm push`` makes (helm v4's
``pkg/registry``): a config blob of media type ``application/vnd.cncf.helm.config.v1+json``
holding the chart's metadata as JSON (Go's field order, empty fields left out), one layer
``application/vnd.cncf.helm.chart.content.v1.tar+gzip`` that is the packaged archive
byte for byte, and an OCI image manifest whose annotations are helm's (title, version,
description, url, created, source, and the chart's own annotations) plus Tenantry's
provenance: ``org.opencontainers.image.revision`` (the git commit), ``.created`` (when it
was published), ``.authors`` (the commit's author) and the ``tenantry.dev/*`` keys the S3
path keeps as object metadata (tenant, service, git commit, author, time, the chart's
content digest and the archive's sha256). So ``helm pull oci://…`` by a real helm reads
it, and the provenance comes back from the manifest alone.

Repositories are ``<prefix>/<tenant>/<service>``; tags are chart versions, with SemVer's
``+`` written ``_`` (OCI tags cannot hold ``+``; helm does the same).
"""

from __future__ import annotations

import gzip
import hashlib
import io
import json
import re
import tarfile
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

import yaml

from tenantry import errors
from tenantry.artifacts import index

CONFIG_MEDIA_TYPE = "application/vnd.cncf.helm.config.v1+json"
CHART_LAYER_MEDIA_TYPE = "application/vnd.cncf.helm.chart.content.v1.tar+gzip"
MANIFEST_MEDIA_TYPE = "application/vnd.oci.image.manifest.v1+json"

# The OCI annotation keys (image-spec annotations.md).
TITLE = "org.opencontainers.image.title"
VERSION = "org.opencontainers.image.version"
DESCRIPTION = "org.opencontainers.image.description"
URL = "org.opencontainers.image.url"
CREATED = "org.opencontainers.image.created"
SOURCE = "org.opencontainers.image.source"
AUTHORS = "org.opencontainers.image.authors"
REVISION = "org.opencontainers.image.revision"
# Tenantry's own: what the S3 path keeps as the archive object's metadata.
TENANT = "tenantry.dev/tenant"
SERVICE = "tenantry.dev/service"
GIT_COMMIT = "tenantry.dev/git-commit"
AUTHOR = "tenantry.dev/author"
PUBLISHED_AT = "tenantry.dev/published-at"
CONTENT_DIGEST = "tenantry.dev/content-digest"
ARCHIVE_SHA256 = "tenantry.dev/sha256"

# helm never lets a chart's own annotations replace these two.
_IMMUTABLE = (VERSION, TITLE)

# chart.Metadata's JSON fields in Go's declaration order (helm v4 pkg/chart/v2).
_METADATA_FIELDS = (
    "name", "home", "sources", "version", "description", "keywords", "maintainers", "icon",
    "apiVersion", "condition", "tags", "appVersion", "deprecated", "annotations",
    "kubeVersion", "dependencies", "type",
)  # fmt: skip
_MAINTAINER_FIELDS = ("name", "email", "url")
_DEPENDENCY_FIELDS = (
    "name", "version", "repository", "condition", "tags", "enabled", "import-values", "alias",
)  # fmt: skip
_DEPENDENCY_REQUIRED = ("name", "repository")  # no omitempty in Go

# A tag per the OCI distribution spec.
_TAG = re.compile(r"[A-Za-z0-9_][A-Za-z0-9._-]{0,127}")
# A path component of a repository name.
_COMPONENT = re.compile(r"[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*")


def sha256(data: bytes) -> str:
    """The OCI digest of ``data``: ``sha256:<hex>``."""
    return "sha256:" + hashlib.sha256(data).hexdigest()


def repository(prefix: str, tenant: str, service: str) -> str:
    """The repository of one service's charts: ``<prefix>/<tenant>/<service>``."""
    return f"{prefix}/{tenant}/{service}"


def tenant_service(prefix: str, repo: str) -> tuple[str, str] | None:
    """``(tenant, service)`` of a repository under ``prefix``; None for anything else
    (another prefix, a deeper or shallower path) — what a registry event names."""
    head = prefix.rstrip("/") + "/"
    if not repo.startswith(head):
        return None
    parts = repo[len(head) :].split("/")
    if len(parts) != 2 or not all(_COMPONENT.fullmatch(p) for p in parts):
        return None
    return parts[0], parts[1]


def tag_for(version: str) -> str:
    """The tag of chart ``version`` (``+`` is not allowed in a tag; helm writes ``_``)."""
    tag = version.replace("+", "_")
    if not _TAG.fullmatch(tag):
        raise errors.TenantryError(
            f"chart version {version!r} cannot be an OCI tag",
            fix="use a SemVer version such as 1.4.0 in the service's descriptor or Chart.yaml",
        )
    return tag


def version_for(tag: str) -> str:
    """The chart version a tag stands for (`tag_for` reversed)."""
    return tag.replace("_", "+")


_SEMVER = re.compile(
    r"v?(0|[1-9]\d*)\.(0|[1-9]\d*)\.(0|[1-9]\d*)"
    r"(?:-([0-9A-Za-z-]+(?:\.[0-9A-Za-z-]+)*))?(?:\+[0-9A-Za-z-]+(?:\.[0-9A-Za-z-]+)*)?"
)


def semver_key(version: str) -> tuple[Any, ...] | None:
    """A sort key giving SemVer precedence (build metadata ignored); None if not SemVer."""
    match = _SEMVER.fullmatch(version)
    if match is None:
        return None
    major, minor, patch, pre = match.groups()
    if pre is None:
        return (int(major), int(minor), int(patch), 1, ())
    fields = tuple((0, int(f), "") if f.isdigit() else (1, 0, f) for f in pre.split("."))
    return (int(major), int(minor), int(patch), 0, fields)


def sorted_versions(tags: Iterable[str]) -> list[str]:
    """The SemVer chart versions among ``tags``, oldest first; other tags are left out."""
    versions = {version_for(t) for t in tags}
    keyed = [(k, v) for v in versions if (k := semver_key(v)) is not None]
    return [v for _, v in sorted(keyed)]


def chart_yaml(archive: bytes) -> dict[str, Any]:
    """The Chart.yaml inside a packaged chart (``<name>/Chart.yaml``, as helm packages it)."""
    try:
        with tarfile.open(fileobj=io.BytesIO(archive), mode="r:gz") as tar:
            for member in tar:
                parts = member.name.split("/")
                if member.isfile() and len(parts) == 2 and parts[1] == "Chart.yaml":
                    extracted = tar.extractfile(member)
                    assert extracted is not None
                    data = yaml.safe_load(extracted.read())
                    if isinstance(data, dict):
                        return data
                    break
    except (tarfile.TarError, gzip.BadGzipFile, EOFError, yaml.YAMLError, OSError) as e:
        raise errors.TenantryError(
            f"the chart archive cannot be read: {e}", fix="package it again with helm package"
        ) from e
    raise errors.TenantryError(
        "the chart archive has no <name>/Chart.yaml mapping",
        fix="package the chart with `helm package` (or `tenantry publish`)",
    )


def _go_ordered(
    data: Mapping[str, Any], fields: Iterable[str], keep: Iterable[str] = ()
) -> dict[str, Any]:
    """``data``'s ``fields`` in that order, empty ones left out (Go's ``omitempty``)."""
    kept = set(keep)
    return {f: data[f] for f in fields if f in data and (data[f] or f in kept)}


def config_json(chart: Mapping[str, Any]) -> bytes:
    """The config blob ``helm push`` writes: the chart's metadata as Go marshals it."""
    meta = _go_ordered(chart, _METADATA_FIELDS)
    if "maintainers" in meta:
        meta["maintainers"] = [_go_ordered(m, _MAINTAINER_FIELDS) for m in meta["maintainers"]]
    if "dependencies" in meta:
        meta["dependencies"] = [
            _go_ordered(d, _DEPENDENCY_FIELDS, _DEPENDENCY_REQUIRED) for d in meta["dependencies"]
        ]
    if "annotations" in meta:
        meta["annotations"] = {str(k): str(v) for k, v in sorted(meta["annotations"].items())}
    for key in ("version", "appVersion", "name"):
        if key in meta:
            meta[key] = str(meta[key])  # YAML may read 1.0 as a number; Go's field is a string
    return _go_json(meta)


def _go_json(document: Any) -> bytes:
    """JSON as Go's encoding/json writes it: compact, UTF-8, HTML characters escaped."""
    text = json.dumps(document, separators=(",", ":"), ensure_ascii=False)
    for char, escaped in (("<", "\\u003c"), (">", "\\u003e"), ("&", "\\u0026"),
                          ("\u2028", "\\u2028"), ("\u2029", "\\u2029")):  # fmt: skip
        text = text.replace(char, escaped)
    return text.encode()


@dataclass(frozen=True)
class Provenance:
    """Where a published chart came from, as its manifest's annotations say."""

    tenant: str
    service: str
    version: str
    git_commit: str
    author: str
    published_at: str
    content_digest: str
    # The archive's sha256 (hex, as the S3 path and Helm's index.yaml write it).
    archive_sha256: str


def chart_annotations(
    chart: Mapping[str, Any], provenance: Provenance, *, source: str | None = None
) -> dict[str, str]:
    """The manifest's annotations: helm push's, then Tenantry's provenance."""
    found: dict[str, str] = {}

    def put(key: str, value: object) -> None:
        if value:
            found[key] = str(value)

    put(DESCRIPTION, chart.get("description"))
    put(TITLE, chart.get("name"))
    put(VERSION, chart.get("version"))
    put(URL, chart.get("home"))
    put(SOURCE, (chart.get("sources") or [None])[0])
    for key, value in (chart.get("annotations") or {}).items():
        if key not in _IMMUTABLE:
            found[str(key)] = str(value)
    put(SOURCE, source)
    put(CREATED, provenance.published_at)
    put(REVISION, provenance.git_commit)
    put(AUTHORS, provenance.author)
    found.update({
        TENANT: provenance.tenant,
        SERVICE: provenance.service,
        GIT_COMMIT: provenance.git_commit,
        AUTHOR: provenance.author,
        PUBLISHED_AT: provenance.published_at,
        CONTENT_DIGEST: provenance.content_digest,
        ARCHIVE_SHA256: provenance.archive_sha256,
    })  # fmt: skip
    return dict(sorted(found.items()))  # Go marshals a map's keys sorted


def descriptor(media_type: str, data: bytes) -> dict[str, Any]:
    """An OCI content descriptor of ``data``."""
    return {"mediaType": media_type, "digest": sha256(data), "size": len(data)}


def manifest(config: bytes, layer: bytes, manifest_annotations: Mapping[str, str]) -> bytes:
    """The OCI image manifest ``helm push`` writes for one chart (no provenance file)."""
    document = {
        "schemaVersion": 2,
        "config": descriptor(CONFIG_MEDIA_TYPE, config),
        "layers": [descriptor(CHART_LAYER_MEDIA_TYPE, layer)],
        "annotations": dict(sorted(manifest_annotations.items())),
    }
    return _go_json(document)


@dataclass(frozen=True)
class ChartManifest:
    """A chart manifest read back: where its config and chart layer are, its annotations."""

    config: dict[str, Any]
    layer: dict[str, Any]
    annotations: dict[str, str]


def parse_manifest(data: bytes, *, what: str) -> ChartManifest:
    """A Helm chart manifest; a `TenantryError` naming ``what`` if it is not one (an image,
    an index, garbage)."""
    try:
        document = json.loads(data)
    except ValueError as e:
        raise errors.TenantryError(f"{what}: the manifest is not JSON: {e}") from e
    if not isinstance(document, dict) or not isinstance(document.get("config"), dict):
        raise errors.TenantryError(
            f"{what} is not an OCI image manifest",
            fix="push charts with `tenantry publish` or `helm push`",
        )
    config = document["config"]
    layers = [
        layer for layer in document.get("layers") or []
        if isinstance(layer, dict) and layer.get("mediaType") == CHART_LAYER_MEDIA_TYPE
    ]  # fmt: skip
    if config.get("mediaType") != CONFIG_MEDIA_TYPE or len(layers) != 1:
        raise errors.TenantryError(
            f"{what} is not a Helm chart (config {config.get('mediaType')!r}, "
            f"{len(layers)} chart layer(s))",
            fix="push charts with `tenantry publish` or `helm push`",
        )
    raw = document.get("annotations") or {}
    return ChartManifest(
        config=config,
        layer=layers[0],
        annotations={str(k): str(v) for k, v in raw.items()} if isinstance(raw, dict) else {},
    )


def provenance_of(found: ChartManifest, *, tenant: str, service: str, version: str) -> Provenance:
    """The provenance a chart manifest carries; for a chart pushed by something else
    (plain ``helm push``), what the OCI annotations say, else empty strings."""
    notes = found.annotations
    digest = str(found.layer.get("digest", ""))
    return Provenance(
        tenant=tenant,
        service=service,
        version=version,
        git_commit=notes.get(GIT_COMMIT) or notes.get(REVISION, ""),
        author=notes.get(AUTHOR) or notes.get(AUTHORS, ""),
        published_at=notes.get(PUBLISHED_AT) or notes.get(CREATED, ""),
        content_digest=notes.get(CONTENT_DIGEST, ""),
        archive_sha256=digest.removeprefix("sha256:"),
    )


def index_entry(chart: Mapping[str, Any], provenance: Provenance) -> dict[str, Any]:
    """A tenant index.yaml entry for one pushed chart: the same keys the S3 path writes
    (`tenantry.artifacts.store`), with the archive served as ``<service>-<version>.tgz``."""
    return {
        "apiVersion": str(chart.get("apiVersion", "v2")),
        "name": provenance.service,
        "version": provenance.version,
        "appVersion": str(chart.get("appVersion", "")),
        "digest": provenance.archive_sha256,
        "created": provenance.published_at,
        "urls": [f"{provenance.service}-{provenance.version}.tgz"],
        "annotations": {
            GIT_COMMIT: provenance.git_commit,
            CONTENT_DIGEST: provenance.content_digest,
        },
    }


def tenant_index(entries: Iterable[dict[str, Any]], *, generated: str) -> dict[str, Any]:
    """A tenant's index.yaml data from its charts' entries (newest version first per chart,
    as `index.with_entry` keeps it)."""
    ordered = sorted(entries, key=lambda e: semver_key(str(e["version"])) or ())
    built = index.empty()
    for entry in ordered:
        built = index.with_entry(built, entry, generated=generated)
    built["generated"] = generated
    return built
