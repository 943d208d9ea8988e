"""Pure parts of delivery: S3 events, the deploy decision, SemVer order, the Helm index."""

from __future__ import annotations

import json

import pytest
from hypothesis import given
from hypothesis import strategies as st

from tenantry.artifacts import index, store
from tenantry.deploy.decide import decide, semver_key
from tenantry.events import s3


def record(key: str, name: str = "ObjectCreated:Put") -> dict:
    return {"eventName": name, "eventTime": "2026-11-22T00:00:00.000Z",
            "s3": {"bucket": {"name": "charts"}, "object": {"key": key}}}  # fmt: skip


def test_a_chart_upload_with_an_encoded_key() -> None:
    (event,) = s3.parse(json.dumps({"Records": [record("payments%2Fapi-1.4.0%2Bbuild.1.tgz")]}))
    assert event == s3.ChartCreated(
        bucket="charts", key="payments/api-1.4.0+build.1.tgz", tenant="payments",
        service="api", version="1.4.0+build.1", event_time="2026-11-22T00:00:00.000Z",
    )  # fmt: skip


@pytest.mark.parametrize(
    ("key", "tenant", "service", "version"),
    [
        ("payments/ledger-worker-0.9.2.tgz", "payments", "ledger-worker", "0.9.2"),
        ("payments/api-2.0.0-rc.1.tgz", "payments", "api", "2.0.0-rc.1"),
        ("a/b-10.20.30.tgz", "a", "b", "10.20.30"),
    ],
)
def test_keys_split_into_tenant_service_and_version(
    key: str, tenant: str, service: str, version: str
) -> None:
    event = s3.parse_key("charts", key)
    assert isinstance(event, s3.ChartCreated)
    assert (event.tenant, event.service, event.version) == (tenant, service, version)


def test_the_test_event_s3_sends_on_configuration() -> None:
    body = {"Service": "Amazon S3", "Event": "s3:TestEvent", "Bucket": "charts"}
    assert s3.parse(json.dumps(body)) == [s3.TestEvent()]


@pytest.mark.parametrize(
    ("body", "reason"),
    [
        ("not json", "not JSON"),
        ("[1, 2]", "not a JSON object"),
        ("{}", "no Records"),
        (
            json.dumps({"Records": [record("payments/api-1.0.0.tgz", "ObjectRemoved:Delete")]}),
            "is not an object creation",
        ),
        (
            json.dumps({"Records": [record("payments/index.yaml")]}),
            "is not <tenant>/<service>-<semver>.tgz",
        ),
        (json.dumps({"Records": [{"eventName": "ObjectCreated:Put"}]}), "record without"),
    ],
)
def test_anything_else_is_invalid_with_a_reason(body: str, reason: str) -> None:
    (event,) = s3.parse(body)
    assert isinstance(event, s3.Invalid) and reason in event.reason


@given(st.text(max_size=300))
def test_any_body_parses_to_events_without_crashing(body: str) -> None:
    assert s3.parse(body)


@pytest.mark.parametrize(
    ("incoming", "released", "action", "reason"),
    [
        ("1.0.0", None, "deploy", "first release"),
        ("1.1.0", "1.0.0", "deploy", "1.1.0 is newer than 1.0.0"),
        ("1.0.0", "1.0.0", "skip", "duplicate: 1.0.0 is already released"),
        ("0.9.0", "1.0.0", "skip", "out of order: 0.9.0 is older than the released 1.0.0"),
        ("1.0.0", "1.0.0-rc.2", "deploy", "1.0.0 is newer than 1.0.0-rc.2"),
        ("1.0.0-rc.10", "1.0.0-rc.9", "deploy", "newer"),
        ("1.0.10", "1.0.9", "deploy", "newer"),
    ],
)
def test_decide(incoming: str, released: str | None, action: str, reason: str) -> None:
    decision = decide(
        incoming=incoming, incoming_digest="d", released=released, released_digest="d"
    )
    assert decision.action == action and reason in decision.reason


def test_the_same_version_with_another_digest_is_not_deployed() -> None:
    decision = decide(incoming="1.0.0", incoming_digest="b", released="1.0.0", released_digest="a")
    assert decision.action == "skip" and "versions are immutable" in decision.reason


def test_semver_precedence() -> None:
    ordered = ["1.0.0-alpha", "1.0.0-alpha.1", "1.0.0-alpha.beta", "1.0.0-beta", "1.0.0-beta.2",
               "1.0.0-beta.11", "1.0.0-rc.1", "1.0.0", "1.0.1", "1.10.0", "2.0.0"]  # fmt: skip
    assert sorted(ordered, key=semver_key) == ordered


def test_index_entries_are_added_replaced_and_kept() -> None:
    idx = index.empty()
    idx = index.with_entry(idx, {"name": "api", "version": "1.0.0", "digest": "a"}, generated="t1")
    idx = index.with_entry(idx, {"name": "api", "version": "1.1.0", "digest": "b"}, generated="t2")
    idx = index.with_entry(idx, {"name": "web", "version": "1.0.0", "digest": "c"}, generated="t3")
    idx = index.with_entry(idx, {"name": "api", "version": "1.0.0", "digest": "a2"}, generated="t4")
    parsed = index.parse(index.dump(idx))
    assert [(e["version"], e["digest"]) for e in parsed["entries"]["api"]] == [
        ("1.0.0", "a2"),
        ("1.1.0", "b"),
    ]
    assert index.contains(parsed, "web", "1.0.0") and not index.contains(parsed, "web", "2.0.0")
    assert index.parse(b"") == index.empty()


def test_the_newest_version_of_each_chart_is_by_semver_not_by_order() -> None:
    idx = index.empty()
    for name, version, digest in (("api", "1.10.0", "a"), ("api", "1.9.0", "b"),
                                  ("api", "2.0.0-rc.1", "c"), ("web", "0.1.0", "d"),
                                  ("web", "latest", "e")):  # fmt: skip
        idx = index.with_entry(idx, {"name": name, "version": version, "digest": digest},
                               generated="t")  # fmt: skip
    # A pre-release is newer than the releases before it; a tag that is not SemVer
    # (not written by `tenantry publish`) is passed over.
    assert index.newest(idx) == {"api": ("2.0.0-rc.1", "c"), "web": ("0.1.0", "d")}
    assert index.newest(index.empty()) == {}
    assert index.newest({"entries": {"odd": "not a list", "x": [{"version": "1.0.0"}]}}) == {
        "x": ("1.0.0", "")
    }


@pytest.mark.parametrize("text", ["garbage: [", "- a list", "entries: [1, 2]"])
def test_a_corrupt_index_is_an_error_not_a_fresh_start(text: str) -> None:
    from tenantry import errors

    with pytest.raises(errors.TenantryError, match=r"restore index\.yaml"):
        index.parse(text)


@pytest.mark.parametrize(
    "value",
    ["Dev <dev@example.com>", "0f3c9a1e", "2026-11-22T10:00:00+00:00", ""],
)
def test_plain_ascii_metadata_is_stored_unchanged(value: str) -> None:
    assert store.encode_metadata_value(value) == value
    assert store.decode_metadata_value(value) == value


@pytest.mark.parametrize(
    "value",
    [
        "José Müller <jose@acme.example>",
        'Ana "the builder" Núñez <ana@acme.example>',
        "two\nlines",
        "tab\tand\rreturn",
        "looks like =?utf-8?q?an_encoded_word?= but is not",
        "李雷 <li@acme.example>" * 20,
    ],
)
def test_free_text_metadata_is_ascii_and_round_trips(value: str) -> None:
    encoded = store.encode_metadata_value(value)
    # What botocore demands of S3 metadata: ASCII, and one header line.
    assert encoded.isascii() and encoded.isprintable(), encoded
    assert store.decode_metadata_value(encoded) == value


@given(st.text())
def test_any_text_round_trips_through_metadata(value: str) -> None:
    encoded = store.encode_metadata_value(value)
    assert encoded.isascii() and encoded.isprintable()
    assert store.decode_metadata_value(encoded) == value
