"""OCI registry notifications (the CNCF Distribution registry's webhook, as Harbor and
GitLab's registry send it too) → typed events (pure).

The registry posts an *envelope* — ``{"events": [...]}`` — for manifest and blob
pushes and pulls. Only a manifest **push with a tag** under
``<prefix>/<tenant>/<service>`` whose tag is a SemVer version is a chart release; a
blob event, a pull, a push by digest alone (no tag) is nothing to do and skipped; a push
outside the prefix or with a tag that is not a version is `Invalid` — recorded, never
deployed. Whether the artifact really is a Helm chart is checked by the worker when it
fetches it (the event carries only the manifest's media type).
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass

from tenantry.artifacts import oci_manifest as om
from tenantry.events.s3 import Invalid

_VERSION = re.compile(r"\d+\.\d+\.\d+(-[0-9A-Za-z.-]+)?(\+[0-9A-Za-z.-]+)?")
_DIGEST = re.compile(r"sha256:[0-9a-f]{64}")
_MANIFEST_TYPES = frozenset({
    om.MANIFEST_MEDIA_TYPE, "application/vnd.docker.distribution.manifest.v2+json",
})  # fmt: skip
# An envelope carries a handful of events; thousands are a malformed or hostile body.
MAX_EVENTS = 100


@dataclass(frozen=True)
class ChartPushed:
    """A chart version was pushed to the registry."""

    repository: str
    tenant: str
    service: str
    version: str
    digest: str
    event_id: str
    event_time: str


@dataclass(frozen=True)
class Skipped:
    """An event that is not a release (a pull, a blob, a push by digest); ``what``."""

    what: str


Event = ChartPushed | Skipped | Invalid


def parse_event(event: object, prefix: str) -> Event:
    """One event of an envelope, for charts under ``prefix``."""
    if not isinstance(event, dict):
        return Invalid("an event that is not a JSON object")
    action, target = event.get("action"), event.get("target")
    if not isinstance(target, dict):
        return Invalid("an event without a target")
    media_type = str(target.get("mediaType", ""))
    if action != "push" or media_type not in _MANIFEST_TYPES:
        return Skipped(f"{action} of {media_type or 'unknown media type'}")
    repository, tag = str(target.get("repository", "")), target.get("tag")
    if not tag:
        return Skipped(f"push of {repository} by digest only (no tag)")
    digest = str(target.get("digest", ""))
    where = f"{repository}:{tag}"
    if not _DIGEST.fullmatch(digest):
        return Invalid(f"{where}: digest {digest[:80]!r} is not sha256:<64 hex>", key=where)
    found = om.tenant_service(prefix, repository)
    if found is None:
        return Invalid(f"{where} is not under {prefix}/<tenant>/<service>", key=where)
    version = om.version_for(str(tag))  # helm writes SemVer's "+" as "_" in a tag
    if not _VERSION.fullmatch(version):
        return Invalid(f"{where}: tag {str(tag)[:80]!r} is not a SemVer version", key=where)
    return ChartPushed(
        repository=repository, tenant=found[0], service=found[1],
        version=version, digest=digest, event_id=str(event.get("id", "")),
        event_time=str(event.get("timestamp", "")),
    )  # fmt: skip


def parse(body: bytes | str, prefix: str) -> list[Event]:
    """Every event of one notification envelope."""
    try:
        envelope = json.loads(body)
    except (ValueError, TypeError, RecursionError):
        return [Invalid("not JSON")]
    events = envelope.get("events") if isinstance(envelope, dict) else None
    if not isinstance(events, list):
        return [Invalid("not a notification envelope: no events list")]
    if len(events) > MAX_EVENTS:
        return [Invalid(f"{len(events)} events in one envelope (at most {MAX_EVENTS})")]
    return [parse_event(event, prefix) for event in events]
