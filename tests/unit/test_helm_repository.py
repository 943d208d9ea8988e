"""The Helm repositories the server serves: the index it sends (relative archive URLs),
which file names can ever reach the store, and how the credential is read."""

from __future__ import annotations

import base64

import pytest

from tenantry.artifacts import index
from tenantry.server import helmrepo


def stored() -> dict:
    idx = index.empty()
    for name, version, url in [
        ("api", "1.0.0", "api-1.0.0.tgz"),
        ("api", "1.1.0-rc.1+build.7", "https://bucket.example/payments/api-1.1.0-rc.1+build.7.tgz"),
        ("ledger-worker", "0.9.2", "oci://registry.example/charts/payments/ledger-worker:0.9.2"),
    ]:
        idx = index.with_entry(
            idx, {"name": name, "version": version, "digest": "d", "urls": [url]}, generated="t"
        )
    return idx


def test_the_served_index_points_every_archive_back_at_the_server_by_a_relative_name() -> None:
    served = index.served(stored())
    assert {
        name: [(e["version"], e["urls"]) for e in v] for name, v in served["entries"].items()
    } == {
        "api": [
            ("1.1.0-rc.1+build.7", ["api-1.1.0-rc.1+build.7.tgz"]),
            ("1.0.0", ["api-1.0.0.tgz"]),
        ],
        "ledger-worker": [("0.9.2", ["ledger-worker-0.9.2.tgz"])],
    }
    assert served["apiVersion"] == "v1" and served["generated"] == "t"
    assert index.parse(index.dump(served)) == served  # what helm reads is what we mean


@pytest.mark.parametrize(
    ("name", "version"),
    [
        ("api", "../../checkout/api-1.0.0"),
        ("../x", "1.0.0"),
        ("api", "1.0.0/x"),
        ("API", "1.0.0"),
        ("api", "latest"),
        ("api", '1.0.0"'),
        ("api", "1.0.0-a..b"),
        ("api", "1.0.0%2f"),
    ],
)
def test_an_entry_whose_name_or_version_cannot_be_a_safe_file_name_is_not_served(
    name: str, version: str
) -> None:
    idx = index.with_entry(index.empty(), {"name": name, "version": version}, generated="t")
    assert index.served(idx)["entries"] == {}
    assert index.archive_file(name, version) is None


def test_a_malformed_index_serves_what_it_can() -> None:
    idx = {"apiVersion": "v1", "entries": {"api": ["not a mapping", {"version": "1.0.0"}],
                                          "web": "not a list",
                                          "db": [{"name": "other", "version": "1.0.0"}]}}  # fmt: skip
    assert index.served(idx)["entries"] == {
        "api": [{"version": "1.0.0", "urls": ["api-1.0.0.tgz"]}]
    }


@pytest.mark.parametrize(
    "file",
    ["api-1.0.0.tgz", "api-1.1.0-rc.1+build.7.tgz", "ledger-worker-0.9.2.tgz"],
)
def test_a_listed_archive_is_found_by_its_file_name(file: str) -> None:
    entry = index.entry_for_file(stored(), file)
    assert entry is not None and entry["urls"] == [file]


@pytest.mark.parametrize(
    "file",
    [
        "api-2.0.0.tgz",  # well formed, not listed
        "..", "../checkout/api-1.0.0.tgz", "..%2Fcheckout%2Fapi-1.0.0.tgz", "api-1.0.0.tgz/..",
        "%2e%2e", 'api-1.0.0.tgz"', "api'-1.0.0.tgz", "api-1.0.0", "index.yaml", "api-1.0.0.tgz ",
        "api-1..0.tgz", "/etc/passwd", "api-1.0.0.tgz\x00", "api-1.0.0.TGZ", "",
    ],
)  # fmt: skip
def test_nothing_else_is_ever_an_archive(file: str) -> None:
    assert index.entry_for_file(stored(), file) is None


@pytest.mark.parametrize(
    "file", ["..", "../x-1.0.0.tgz", "x%2f-1.0.0.tgz", 'x"-1.0.0.tgz', "x-1.0.0.tgz/", "x-1.0.0"]
)
def test_names_that_could_leave_the_tenant_are_refused_before_any_lookup(file: str) -> None:
    assert not index.is_archive_file(file)


def basic(user: str, password: str) -> str:
    return "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode()


def test_the_token_is_the_basic_password_and_the_username_is_ignored() -> None:
    assert helmrepo.bearer_or_basic(basic("alice", "tok:with:colons")) == "tok:with:colons"
    assert helmrepo.bearer_or_basic(basic("anyone", "tok")) == "tok"
    assert helmrepo.bearer_or_basic("Bearer tok") == "tok"
    assert helmrepo.bearer_or_basic("bearer  tok ") == "tok"


@pytest.mark.parametrize(
    "header",
    ["", "Bearer", "Bearer ", "Basic", "Basic !!!notbase64", basic("alice", ""),
     "Basic " + base64.b64encode(b"no-colon").decode(),
     "Basic " + base64.b64encode(b"\xff\xfe:x").decode(), "Digest abc", "tok"],
)  # fmt: skip
def test_no_or_a_malformed_credential_is_unauthorized(header: str) -> None:
    with pytest.raises(helmrepo.HelmUnauthorizedError) as refused:
        helmrepo.bearer_or_basic(header)
    assert refused.value.fix and "--password-stdin" in refused.value.fix
