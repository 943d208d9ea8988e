"""The platform repository's files: valid ones load, every invalid one is a clear error."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tenantry import errors
from tenantry.spec import models, quantities, repository

EXAMPLE = Path(__file__).resolve().parents[2] / "examples" / "platform-repo"


@pytest.fixture
def repo(tmp_path: Path) -> Path:
    target = tmp_path / "repo"
    shutil.copytree(EXAMPLE, target)
    return target


def problems_of(root: Path) -> list[str]:
    with pytest.raises(errors.SpecError) as raised:
        repository.load(root)
    return [str(p) for p in raised.value.problems]


def write_tenant(root: Path, name: str, body: dict | str) -> None:
    text = body if isinstance(body, str) else yaml.safe_dump(body)
    (root / "tenants" / f"{name}.yaml").write_text(text)


def test_example_repository_is_valid() -> None:
    loaded = repository.load(EXAMPLE)
    assert loaded.platform.name == "acme"
    assert [t.name for t in loaded.tenants] == ["checkout", "payments"]
    assert loaded.tenant("payments").allow_from == ("checkout",)


def test_unknown_tenant_lookup_names_the_known_ones() -> None:
    with pytest.raises(errors.UsageError, match="known: checkout, payments"):
        repository.load(EXAMPLE).tenant("nope")


def test_unknown_environment_lookup_is_a_spec_error_naming_the_known_ones() -> None:
    # publish --wait, the deployer and promotions ask for staging by name; a platform.yaml
    # without it was a bare KeyError traceback.
    with pytest.raises(errors.SpecError) as raised:
        repository.load(EXAMPLE).platform.environment("nope")
    (problem,) = raised.value.problems
    assert problem.file == "platform.yaml"
    assert "no environment 'nope' (there are: staging, production)" in problem.message
    assert "add an environment named nope" in problem.fix


@pytest.mark.parametrize(
    ("body", "expected"),
    [
        ("name: [unclosed\n", "tenants/t.yaml: line 2, column 1: invalid YAML"),
        ("- a list\n", "tenants/t.yaml: (document): is a list, not a mapping"),
        (
            {"name": "t", "owners": {"users": ["u"]}, "environments": ["staging"], "quotas": {}},
            "tenants/t.yaml: quotas: is not a known field",
        ),
        (
            {"name": "t", "owners": {"users": ["u"]}, "environments": ["staging"],
             "quota": {"cpu": "lots"}},
            "tenants/t.yaml: quota.cpu: 'lots' is not a Kubernetes quantity",
        ),
        (
            {"name": "t", "owners": {"users": ["u"]}, "environments": ["qa"]},
            "tenants/t.yaml: environments: 'qa' not an environment of the platform",
        ),
        (
            {"name": "t", "owners": {"users": ["u"]}, "environments": ["staging"],
             "registries": ["docker.io/library"]},
            "tenants/t.yaml: registries: 'docker.io/library' not allowed by the platform",
        ),
        (
            {"name": "t", "owners": {"users": ["u"]}, "environments": ["staging"],
             "registries": ["registry.acme.example.evil.com"]},
            "not allowed by the platform",
        ),
        (
            {"name": "t", "owners": {"users": ["u"]}, "environments": ["staging"],
             "allowFrom": ["ghost"]},
            "tenants/t.yaml: allowFrom: 'ghost' not a tenant of the platform",
        ),
        (
            {"name": "t", "owners": {}, "environments": ["staging"]},
            "owners needs at least one user or group",
        ),
        (
            {"name": "t", "owners": {"users": ["u"]}, "environments": ["staging"],
             "containerDefaults": {"requests": {"cpu": "1", "memory": "1Gi"},
                                   "limits": {"cpu": "500m", "memory": "1Gi"}}},
            "limits.cpu 500m is below requests.cpu 1",
        ),
        (
            {"owners": {"users": ["u"]}, "environments": ["staging"]},
            "tenants/t.yaml: name: is required",
        ),
    ],
)  # fmt: skip
def test_invalid_tenant_files_name_file_field_and_fix(
    repo: Path, body: dict | str, expected: str
) -> None:
    write_tenant(repo, "t", body)
    assert any(expected in p for p in problems_of(repo)), problems_of(repo)


@pytest.mark.parametrize("name", ["kube-system", "default", "kube-anything", "tenantry-ingress"])
def test_system_and_platform_names_are_reserved(repo: Path, name: str) -> None:
    write_tenant(
        repo, name, {"name": name, "owners": {"users": ["u"]}, "environments": ["staging"]}
    )
    assert any("is reserved for the system or the platform" in p for p in problems_of(repo))


@pytest.mark.parametrize("name", ["Payments", "team_a", "-a", "a" * 41])
def test_names_must_be_dns_labels(repo: Path, name: str) -> None:
    write_tenant(repo, "x", {"name": name, "owners": {"users": ["u"]}, "environments": ["staging"]})
    assert any("is not a DNS-1123 label" in p for p in problems_of(repo))


def test_duplicate_tenant_names_are_reported(repo: Path) -> None:
    write_tenant(repo, "payments-2", (repo / "tenants" / "payments.yaml").read_text())
    found = problems_of(repo)
    assert any("name: 'payments' is already used by tenants/payments" in p for p in found)


def test_file_name_must_match_tenant_name(repo: Path) -> None:
    write_tenant(
        repo, "other", {"name": "t", "owners": {"users": ["u"]}, "environments": ["staging"]}
    )
    assert any("rename the file to t.yaml" in p for p in problems_of(repo))


def test_every_problem_in_the_repository_is_reported_at_once(repo: Path) -> None:
    write_tenant(repo, "a", {"name": "a", "owners": {"users": ["u"]}, "environments": ["qa"]})
    write_tenant(
        repo, "b", {"name": "b", "owners": {"users": ["u"]}, "environments": ["staging"], "x": 1}
    )
    found = problems_of(repo)
    assert any(p.startswith("tenants/a.yaml") for p in found)
    assert any(p.startswith("tenants/b.yaml") for p in found)


def test_missing_platform_file(tmp_path: Path) -> None:
    assert problems_of(tmp_path) == ["platform.yaml: (file): does not exist (create platform.yaml)"]


def test_a_cluster_may_serve_only_one_environment(repo: Path) -> None:
    platform = yaml.safe_load((repo / "platform.yaml").read_text())
    platform["environments"][1]["clusters"][0]["name"] = "staging"
    (repo / "platform.yaml").write_text(yaml.safe_dump(platform))
    assert any(
        "cluster 'staging' is already in environment 'staging'" in p for p in problems_of(repo)
    )


def test_an_environment_needs_one_primary(repo: Path) -> None:
    platform = yaml.safe_load((repo / "platform.yaml").read_text())
    platform["environments"][1]["clusters"][0]["role"] = "canary"
    (repo / "platform.yaml").write_text(yaml.safe_dump(platform))
    assert any("needs exactly one cluster with role primary" in p for p in problems_of(repo))


def test_quota_merges_over_the_platform_default() -> None:
    default = models.Quota(cpu="8", memory="16Gi", pods="50")
    assert models.Quota(cpu="2").merged_over(default).as_dict() == {
        "cpu": "2",
        "memory": "16Gi",
        "pods": "50",
    }


@pytest.mark.parametrize(
    ("text", "value"),
    [
        ("500m", "0.5"),
        ("2", "2"),
        ("1Gi", str(2**30)),
        ("1.5k", "1500"),
        ("1e3", "1000"),
        (".5", "0.5"),
    ],
)
def test_quantities_parse_like_the_api_server(text: str, value: str) -> None:
    from decimal import Decimal

    assert quantities.parse(text) == Decimal(value)


@pytest.mark.parametrize("text", ["", "lots", "1 Gi", "1GB", "Gi", "1..5", "--1"])
def test_non_quantities_are_refused(text: str) -> None:
    assert not quantities.is_quantity(text)


_yaml_scalars = st.one_of(st.none(), st.booleans(), st.integers(), st.text(max_size=20))
_yaml_values = st.recursive(
    _yaml_scalars,
    lambda inner: (
        st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=12), inner, max_size=4)
    ),
    max_leaves=12,
)
_tenant_like = st.fixed_dictionaries(
    {},
    optional={
        "name": st.one_of(
            st.sampled_from(["payments", "x", "kube-system", "Bad"]), st.text(max_size=10)
        ),
        "owners": st.one_of(_yaml_values, st.just({"users": ["u"]})),
        "environments": st.one_of(_yaml_values, st.just(["staging"])),
        "quota": st.one_of(_yaml_values, st.dictionaries(
            st.sampled_from(["cpu", "memory", "pods", "bogus"]), st.text(max_size=6), max_size=3)),
        "registries": _yaml_values,
        "allowFrom": _yaml_values,
        "unknownField": _yaml_values,
    },
)  # fmt: skip


@settings(max_examples=300, suppress_health_check=[HealthCheck.too_slow])
@given(st.one_of(_tenant_like, _yaml_values))
def test_any_tenant_document_is_a_model_or_a_spec_error(data: object) -> None:
    try:
        result = repository.load_text(yaml.safe_dump(data), models.Tenant, "tenants/t.yaml")
    except errors.SpecError as e:
        assert e.problems
        assert all(p.file == "tenants/t.yaml" and p.field and p.message for p in e.problems)
    else:
        assert isinstance(result, models.Tenant)


@settings(max_examples=200)
@given(st.text(max_size=200))
def test_any_text_is_a_model_or_a_spec_error(text: str) -> None:
    try:
        repository.load_text(text, models.Tenant, "tenants/t.yaml")
    except errors.SpecError as e:
        assert e.problems


@pytest.mark.parametrize(
    ("traffic", "words"),
    [
        ({"canary": {"steps": [5, 5, 25]}}, "weights must increase"),
        ({"canary": {"steps": [0, 50]}}, "between 1 and 100"),
        ({"canary": {"steps": [50, 101]}}, "between 1 and 100"),
        ({"scrapeIntervalS": 15, "canary": {"intervalS": 10}}, "shorter than scrapeIntervalS"),
        ({"router": "route53"}, "needs route53"),
        ({"router": "nginx"}, "traffic.router"),
    ],
)
def test_bad_traffic_settings_are_refused_before_anything_changes(
    repo: Path, traffic: dict, words: str
) -> None:
    platform = yaml.safe_load((repo / "platform.yaml").read_text())
    platform["traffic"] = traffic
    (repo / "platform.yaml").write_text(yaml.safe_dump(platform))
    found = problems_of(repo)
    assert any("platform.yaml" in p and words in p for p in found), found


def test_a_service_canary_interval_below_the_scrape_interval_is_refused(repo: Path) -> None:
    path = repo / "services" / "payments" / "api" / "service.yaml"
    descriptor = yaml.safe_load(path.read_text())
    descriptor["canary"] = {"intervalS": 0.5}
    path.write_text(yaml.safe_dump(descriptor))
    (problem,) = problems_of(repo)
    assert "services/payments/api/service.yaml: canary.intervalS: 0.5 is shorter" in problem


def test_the_management_cluster_must_be_a_cluster_of_the_platform(repo: Path) -> None:
    data = yaml.safe_load((repo / "platform.yaml").read_text())
    data["server"]["managementCluster"] = "elsewhere"
    (repo / "platform.yaml").write_text(yaml.safe_dump(data))
    assert problems_of(repo) == [
        "platform.yaml: server.managementCluster: 'elsewhere' is not a cluster of any "
        "environment (name one of: prod-canary, prod-primary, staging)"
    ]


def test_a_missing_artifacts_or_queue_section_is_an_error_naming_it(repo: Path) -> None:
    data = yaml.safe_load((repo / "platform.yaml").read_text())
    for section in ("artifacts", "queue", "traffic"):
        data.pop(section)
    (repo / "platform.yaml").write_text(yaml.safe_dump(data))
    loaded = repository.load(repo)
    with pytest.raises(errors.UsageError, match=r"platform.yaml has no artifacts section") as e:
        loaded.artifacts()
    assert e.value.fix and "bucket" in e.value.fix
    with pytest.raises(errors.UsageError, match=r"platform.yaml has no queue section"):
        loaded.queue()


def own_chart(root: Path, tenant: str, directory: str) -> None:
    """A copy of checkout/web's own chart in ``services/<tenant>/<directory>/chart``."""
    shutil.copytree(
        root / "services" / "checkout" / "web" / "chart",
        root / "services" / tenant / directory / "chart",
    )


HOSTILE = 'web"} or up{tenant="payments'


@pytest.mark.parametrize(
    "directory", [HOSTILE, "Web", "web_2", "web.2", "2web", "web-", "w" * 41, "web\nx"]
)
def test_a_service_directory_must_be_a_dns_label(repo: Path, directory: str) -> None:
    # An own chart's name is its directory's: it reaches PromQL selectors, S3 keys and
    # helm release names, so it must be as tame as a tenant name.
    own_chart(repo, "checkout", directory)
    (problem,) = problems_of(repo)
    assert problem.startswith(f"services/checkout/{directory}: (directory): {directory!r} ")
    assert "is not a DNS-1123 label of at most 40 characters" in problem
    assert "rename the directory" in problem


def test_a_bad_service_directory_is_reported_with_every_other_problem(repo: Path) -> None:
    own_chart(repo, "checkout", HOSTILE)
    shutil.copytree(repo / "services" / "payments" / "api", repo / "services" / "payments" / "A_pi")
    write_tenant(repo, "a", {"name": "a", "owners": {"users": ["u"]}, "environments": ["qa"]})
    found = problems_of(repo)
    assert any(p.startswith(f"services/checkout/{HOSTILE}: (directory)") for p in found), found
    assert any(p.startswith("services/payments/A_pi: (directory): 'A_pi'") for p in found), found
    assert any(p.startswith("tenants/a.yaml") for p in found), found


def test_a_valid_service_directory_of_40_characters_loads(repo: Path) -> None:
    own_chart(repo, "checkout", "w" * 40)
    loaded = repository.load(repo)
    assert f"checkout/{'w' * 40}" in [s.ref for s in loaded.services]


@pytest.mark.parametrize("name", ["Api", "api_2", "api.v2", "a" * 41])
def test_a_descriptor_name_must_be_a_dns_label(repo: Path, name: str) -> None:
    path = repo / "services" / "payments" / "api" / "service.yaml"
    descriptor = yaml.safe_load(path.read_text())
    descriptor["name"] = name
    path.write_text(yaml.safe_dump(descriptor))
    found = problems_of(repo)
    assert any(
        p.startswith("services/payments/api/service.yaml: name: ") and "DNS-1123" in p
        for p in found
    ), found


def test_a_bad_service_directory_problem_suggests_a_valid_name(repo: Path) -> None:
    own_chart(repo, "checkout", "Web_2")
    assert problems_of(repo) == [
        "services/checkout/Web_2: (directory): 'Web_2' is not a DNS-1123 label of at most "
        "40 characters (lowercase letters, digits and '-', starting with a letter): the "
        "directory names the service (rename the directory, e.g. to web-2)"
    ]


def _with_artifacts(root: Path, artifacts: dict) -> None:
    platform = yaml.safe_load((root / "platform.yaml").read_text())
    platform["artifacts"] = artifacts
    (root / "platform.yaml").write_text(yaml.safe_dump(platform))


def test_artifacts_are_s3_unless_they_say_oci(repo: Path) -> None:
    loaded = repository.load(repo)
    assert loaded.platform.bucket is not None and loaded.platform.bucket.kind == "s3"
    _with_artifacts(repo, {"kind": "oci", "registry": "registry.acme.example:5000",
                           "credentials": {"file": "/etc/tenantry/registry"}})  # fmt: skip
    loaded = repository.load(repo)
    assert isinstance(loaded.platform.artifacts, models.OciArtifacts)
    assert (loaded.platform.artifacts.prefix, loaded.platform.artifacts.resync_interval_s) == (
        "charts", 60.0)  # fmt: skip
    assert loaded.platform.bucket is None
    with pytest.raises(errors.UsageError, match="keeps charts in an OCI registry"):
        loaded.artifacts()


@pytest.mark.parametrize(
    ("artifacts", "named"),
    [
        ({"kind": "oci"}, "registry"),
        ({"kind": "oci", "registry": "r.example", "bucket": "b"}, "bucket"),
        ({"kind": "oci", "registry": "https://r.example"}, "registry"),
        ({"kind": "oci", "registry": "r.example", "prefix": "../x"}, "prefix"),
        ({"kind": "oci", "registry": "r.example", "credentials": {}}, "exactly one of"),
        ({"kind": "oci", "registry": "r.example", "resyncIntervalS": 1}, "resyncIntervalS"),
        ({"kind": "gcs", "bucket": "b"}, "kind"),
        ({"bucket": "b", "registry": "r.example"}, "registry"),
    ],
)
def test_bad_artifacts_sections_name_the_field(repo: Path, artifacts: dict, named: str) -> None:
    _with_artifacts(repo, artifacts)
    assert any(named in p for p in problems_of(repo)), problems_of(repo)
