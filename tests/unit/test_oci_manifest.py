"""A chart as an OCI artifact: what helm push writes, Tenantry's provenance, and back."""

from __future__ import annotations

import io
import json
import tarfile

import pytest
import yaml
from hypothesis import given
from hypothesis import strategies as st

from tenantry import errors
from tenantry.artifacts import oci_manifest as om

PROVENANCE = om.Provenance(
    tenant="payments",
    service="api",
    version="1.4.0",
    git_commit="3f2a9c1",
    author="José Müller <jose@acme.example>",
    published_at="2026-11-29T17:00:00+00:00",
    content_digest="c" * 64,
    archive_sha256="a" * 64,
)
CHART = {
    "apiVersion": "v2",
    "name": "api",
    "version": "1.4.0",
    "appVersion": "2.1",
    "description": "payments/api, from the platform's base chart",
    "sources": ["https://git.acme.example/payments"],
    "annotations": {
        "tenantry.dev/tenant": "payments",
        "org.opencontainers.image.version": "9.9.9",  # helm never lets a chart override it
    },
}


def _archive(chart_yaml: object, name: str = "api") -> bytes:
    out = io.BytesIO()
    with tarfile.open(fileobj=out, mode="w:gz") as tar:
        data = yaml.safe_dump(chart_yaml).encode()
        info = tarfile.TarInfo(f"{name}/Chart.yaml")
        info.size = len(data)
        tar.addfile(info, io.BytesIO(data))
    return out.getvalue()


def test_config_is_the_charts_metadata_in_gos_field_order_without_empty_fields() -> None:
    chart = {**CHART, "keywords": [], "icon": "", "maintainers": [{"email": "a@b", "name": "A"}]}
    config = json.loads(om.config_json(chart))
    assert list(config) == [
        "name", "sources", "version", "description", "maintainers", "apiVersion",
        "appVersion", "annotations",
    ]  # fmt: skip
    assert list(config["maintainers"][0]) == ["name", "email"]
    assert list(config["annotations"]) == sorted(config["annotations"])


def test_config_escapes_html_characters_as_go_does_and_keeps_versions_strings() -> None:
    text = om.config_json({"name": "api", "version": 1.0, "description": "a <b> & c"})
    assert b"\\u003cb\\u003e \\u0026 c" in text
    assert json.loads(text)["version"] == "1.0"


def test_manifest_is_helms_oci_image_manifest_with_one_chart_layer() -> None:
    config, layer = om.config_json(CHART), b"archive bytes"
    data = om.manifest(config, layer, om.chart_annotations(CHART, PROVENANCE))
    document = json.loads(data)
    assert document["schemaVersion"] == 2
    assert "mediaType" not in document  # helm's manifest leaves it out, as Go's omitempty does
    assert document["config"] == {
        "mediaType": om.CONFIG_MEDIA_TYPE, "digest": om.sha256(config), "size": len(config)
    }  # fmt: skip
    assert document["layers"] == [
        {"mediaType": om.CHART_LAYER_MEDIA_TYPE, "digest": om.sha256(layer), "size": len(layer)}
    ]
    parsed = om.parse_manifest(data, what="x")
    assert parsed.layer["digest"] == om.sha256(layer)


def test_annotations_are_helms_then_tenantrys_provenance() -> None:
    notes = om.chart_annotations(CHART, PROVENANCE, source="https://git.acme.example/platform")
    assert notes[om.TITLE] == "api" and notes[om.VERSION] == "1.4.0"  # not the chart's 9.9.9
    assert notes[om.DESCRIPTION] == CHART["description"]
    assert notes[om.SOURCE] == "https://git.acme.example/platform"
    assert notes[om.REVISION] == notes[om.GIT_COMMIT] == "3f2a9c1"
    assert notes[om.AUTHORS] == notes[om.AUTHOR] == "José Müller <jose@acme.example>"
    assert notes[om.CREATED] == notes[om.PUBLISHED_AT] == PROVENANCE.published_at
    assert notes[om.CONTENT_DIGEST] == "c" * 64 and notes[om.ARCHIVE_SHA256] == "a" * 64
    assert notes[om.TENANT] == "payments" and notes[om.SERVICE] == "api"
    assert list(notes) == sorted(notes)


def test_provenance_reads_back_from_the_manifest_alone() -> None:
    layer = b"archive"
    found = om.parse_manifest(
        om.manifest(om.config_json(CHART), layer, om.chart_annotations(CHART, PROVENANCE)),
        what="x",
    )
    back = om.provenance_of(found, tenant="payments", service="api", version="1.4.0")
    assert back == om.Provenance(**{**PROVENANCE.__dict__, "archive_sha256": om.sha256(layer)[7:]})


def test_a_plain_helm_push_reads_as_provenance_from_the_oci_keys() -> None:
    notes = {om.REVISION: "abc", om.CREATED: "2026-01-01T00:00:00Z", om.AUTHORS: "Ann"}
    found = om.ChartManifest(config={}, layer={"digest": "sha256:" + "b" * 64}, annotations=notes)
    back = om.provenance_of(found, tenant="t", service="s", version="1.0.0")
    assert (back.git_commit, back.author, back.published_at) == ("abc", "Ann", notes[om.CREATED])
    assert back.content_digest == "" and back.archive_sha256 == "b" * 64


@pytest.mark.parametrize(
    "document",
    [
        b"not json",
        b"[]",
        json.dumps({"schemaVersion": 2, "manifests": []}).encode(),  # an index
        json.dumps({  # a container image
            "config": {"mediaType": "application/vnd.oci.image.config.v1+json"},
            "layers": [{"mediaType": "application/vnd.oci.image.layer.v1.tar+gzip"}],
        }).encode(),
    ],
)  # fmt: skip
def test_anything_but_a_chart_manifest_is_refused_by_name(document: bytes) -> None:
    with pytest.raises(errors.TenantryError, match=r"charts/payments/api:1\.0\.0"):
        om.parse_manifest(document, what="charts/payments/api:1.0.0")


def test_repositories_are_prefix_tenant_service_and_parse_back() -> None:
    assert om.repository("charts", "payments", "api") == "charts/payments/api"
    assert om.tenant_service("charts", "charts/payments/api") == ("payments", "api")
    assert om.tenant_service("team/charts", "team/charts/payments/api") == ("payments", "api")
    for other in ("charts/payments", "charts/payments/api/x", "images/payments/api", "chartsx/a/b"):
        assert om.tenant_service("charts", other) is None


def test_tags_write_semver_build_metadata_with_an_underscore() -> None:
    assert om.tag_for("1.4.0") == "1.4.0"
    assert om.tag_for("1.4.0+build.7") == "1.4.0_build.7"
    assert om.version_for("1.4.0_build.7") == "1.4.0+build.7"
    with pytest.raises(errors.TenantryError, match="cannot be an OCI tag"):
        om.tag_for("1.4.0/evil")


def test_versions_sort_by_semver_precedence_and_skip_other_tags() -> None:
    tags = ["1.10.0", "1.2.0", "latest", "1.10.0-rc.1", "1.10.0-rc.10", "1.10.0-rc.2", "0.9.0"]
    assert om.sorted_versions(tags) == [
        "0.9.0", "1.2.0", "1.10.0-rc.1", "1.10.0-rc.2", "1.10.0-rc.10", "1.10.0",
    ]  # fmt: skip


@given(st.lists(st.from_regex(r"[0-9]{1,3}\.[0-9]{1,3}\.[0-9]{1,3}", fullmatch=True)))
def test_sorted_versions_never_loses_a_semver_tag(tags: list[str]) -> None:
    clean = [t for t in tags if om.semver_key(t) is not None]
    assert sorted(om.sorted_versions(tags)) == sorted(set(clean))


def test_chart_yaml_is_read_from_the_packaged_archive() -> None:
    assert om.chart_yaml(_archive(CHART))["version"] == "1.4.0"
    with pytest.raises(errors.TenantryError, match=r"no <name>/Chart\.yaml"):
        om.chart_yaml(_archive(CHART, name="api/sub"))
    with pytest.raises(errors.TenantryError, match="cannot be read"):
        om.chart_yaml(b"not a tarball")


def test_the_tenant_index_matches_the_s3_paths_entries_newest_first() -> None:
    older = om.Provenance(**{**PROVENANCE.__dict__, "version": "1.3.0"})
    entries = [om.index_entry(CHART, PROVENANCE), om.index_entry(CHART, older)]
    built = om.tenant_index(entries, generated="2026-11-29T17:00:00+00:00")
    api = built["entries"]["api"]
    assert [e["version"] for e in api] == ["1.4.0", "1.3.0"]
    assert api[0] == {
        "apiVersion": "v2", "name": "api", "version": "1.4.0", "appVersion": "2.1",
        "digest": "a" * 64, "created": PROVENANCE.published_at, "urls": ["api-1.4.0.tgz"],
        "annotations": {om.GIT_COMMIT: "3f2a9c1", om.CONTENT_DIGEST: "c" * 64},
    }  # fmt: skip
    assert built["generated"] == "2026-11-29T17:00:00+00:00"
    assert om.tenant_index([], generated="g") == {
        "apiVersion": "v1",
        "entries": {},
        "generated": "g",
    }
