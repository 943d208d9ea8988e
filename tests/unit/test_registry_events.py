"""Registry notifications → chart pushes (pure): what the Distribution registry sends
for `helm push`/`tenantry publish`, and everything else it sends."""

from __future__ import annotations

import json

import pytest

from tenantry.events.registry import MAX_EVENTS, ChartPushed, Skipped, parse
from tenantry.events.s3 import Invalid

DIGEST = "sha256:" + "ab" * 32
OCI = "application/vnd.oci.image.manifest.v1+json"


def event(action: str = "push", repository: str = "charts/payments/api", tag: str | None = "1.4.0",
          media_type: str = OCI, digest: str = DIGEST) -> dict:  # fmt: skip
    target = {"mediaType": media_type, "digest": digest, "repository": repository, "size": 712}
    if tag is not None:
        target["tag"] = tag
    return {"id": "e1", "timestamp": "2026-11-29T17:00:00Z", "action": action, "target": target}


def envelope(*events: dict) -> str:
    return json.dumps({"events": list(events)})


def test_a_tagged_manifest_push_is_a_chart_release() -> None:
    assert parse(envelope(event()), "charts") == [ChartPushed(
        repository="charts/payments/api", tenant="payments", service="api", version="1.4.0",
        digest=DIGEST, event_id="e1", event_time="2026-11-29T17:00:00Z")]  # fmt: skip


def test_helm_writes_build_metadata_with_an_underscore_in_the_tag() -> None:
    (pushed,) = parse(envelope(event(tag="1.4.0_build.7")), "charts")
    assert isinstance(pushed, ChartPushed) and pushed.version == "1.4.0+build.7"


def test_pulls_blobs_and_digest_only_pushes_are_skipped() -> None:
    found = parse(envelope(event(action="pull"), event(media_type="application/octet-stream"),
                           event(tag=None)), "charts")  # fmt: skip
    assert all(isinstance(e, Skipped) for e in found)


@pytest.mark.parametrize(
    ("changed", "says"),
    [
        ({"repository": "other/payments/api"}, "not under charts/<tenant>/<service>"),
        ({"repository": "charts/payments/api/extra"}, "not under"),
        ({"repository": "charts/Payments/api"}, "not under"),
        ({"repository": "charts/../api"}, "not under"),
        ({"tag": "latest"}, "not a SemVer version"),
        ({"tag": "1.4.0\n"}, "not a SemVer version"),
        ({"digest": "sha256:xyz"}, "is not sha256"),
    ],
)
def test_other_pushes_are_invalid_with_the_reason(changed: dict, says: str) -> None:
    (found,) = parse(envelope(event(**changed)), "charts")
    assert isinstance(found, Invalid) and says in found.reason


@pytest.mark.parametrize("body", ["", "[]", "{}", '{"events": 3}', "nope", "[" * 10_000])
def test_a_body_that_is_no_envelope_is_invalid(body: str) -> None:
    (found,) = parse(body, "charts")
    assert isinstance(found, Invalid)


def test_an_envelope_of_too_many_events_is_refused_whole() -> None:
    (found,) = parse(envelope(*[event()] * (MAX_EVENTS + 1)), "charts")
    assert isinstance(found, Invalid) and "at most" in found.reason


def test_a_prefix_with_dots_matches_only_itself() -> None:
    (found,) = parse(envelope(event(repository="aXb/payments/api")), "a.b")
    assert isinstance(found, Invalid)
