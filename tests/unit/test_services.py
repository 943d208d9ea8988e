"""Service descriptors, the base chart's values, scaffolding, changed services, JUnit."""

from __future__ import annotations

import shutil
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest
import yaml

from tenantry import errors
from tenantry.charts import scaffold
from tenantry.spec import repository, services
from tenantry.verify import changes, junit
from tenantry.verify.results import Check, ServiceReport

EXAMPLE = Path(__file__).resolve().parents[2] / "examples" / "platform-repo"
REPO = repository.load(EXAMPLE)


def test_example_services_are_found() -> None:
    assert [(s.ref, s.descriptor is not None) for s in REPO.services] == [
        ("checkout/web", False),
        ("payments/api", True),
        ("payments/ledger", True),
    ]


def test_values_for_the_base_chart() -> None:
    api = REPO.service("payments/api")
    assert api.descriptor is not None
    values = services.values(api.descriptor, tenant="payments")
    assert values["tenant"] == "payments" and values["service"] == "api"
    assert values["ingress"] == {"host": "api.payments.acme.example"}
    assert values["autoscaling"] == {"enabled": False}
    assert values["slo"] == {"successRate": 99.9, "latencyP99Ms": 300.0}
    ledger = REPO.service("payments/ledger").descriptor
    assert ledger is not None
    assert services.values(ledger, tenant="payments")["autoscaling"] == {
        "enabled": True, "minReplicas": 2, "maxReplicas": 6, "targetCpuUtilizationPercentage": 70,
    }  # fmt: skip


@pytest.fixture
def repo_copy(tmp_path: Path) -> Path:
    shutil.copytree(EXAMPLE, tmp_path / "repo")
    return tmp_path / "repo"


@pytest.mark.parametrize(
    ("body", "expected"),
    [
        ({"name": "api", "version": "1", "image": "registry.acme.example/p/api:1"}, "version: '1' is not SemVer MAJOR.MINOR.PATCH"),
        ({"name": "api", "version": "1.0.0", "image": "registry.acme.example/p/api:1", "replicas": "three"}, "replicas: 'three': Input should be a valid integer"),
        ({"name": "api", "version": "1.0.0", "image": "registry.acme.example/p/api:1", "prot": 80}, "prot: is not a known field"),
        ({"name": "other", "version": "1.0.0", "image": "registry.acme.example/p/api:1"}, "name: is 'other' but the directory is api"),
        ({"name": "api", "version": "1.0.0", "image": "nginx"}, "image: 'nginx' is not REGISTRY/PATH:TAG"),
    ],
)  # fmt: skip
def test_invalid_descriptors_name_file_and_field(
    repo_copy: Path, body: dict, expected: str
) -> None:
    (repo_copy / "services" / "payments" / "api" / "service.yaml").write_text(yaml.safe_dump(body))
    with pytest.raises(errors.SpecError) as raised:
        repository.load(repo_copy)
    found = [str(p) for p in raised.value.problems]
    assert any(
        p.startswith("services/payments/api/service.yaml: ") and expected in p for p in found
    ), found


def test_a_service_of_an_unknown_tenant_is_an_error(repo_copy: Path) -> None:
    shutil.copytree(repo_copy / "services" / "payments", repo_copy / "services" / "ghost")
    with pytest.raises(
        errors.SpecError, match="services/ghost/api: \\(directory\\): 'ghost' is not a tenant"
    ):
        repository.load(repo_copy)


def test_a_service_with_both_descriptor_and_chart_is_an_error(repo_copy: Path) -> None:
    (repo_copy / "services" / "payments" / "api" / "chart").mkdir()
    with pytest.raises(errors.SpecError, match=r"needs exactly one of service\.yaml"):
        repository.load(repo_copy)


OWN_CHART = "services/checkout/web/chart"


def test_a_chart_without_links_loads_unchanged(repo_copy: Path) -> None:
    service = repository.load(repo_copy).service("checkout/web")
    assert service.own_chart == repo_copy / OWN_CHART
    assert repository.chart_link_problems(service) == []


def test_a_link_to_a_file_of_the_machine_in_a_chart_is_refused(repo_copy: Path) -> None:
    (repo_copy / OWN_CHART / "templates" / "secret.yaml").symlink_to("/etc/passwd")
    with pytest.raises(errors.SpecError) as raised:
        repository.load(repo_copy)
    assert [str(p) for p in raised.value.problems] == [
        f"{OWN_CHART}/templates/secret.yaml: (symlink): is a symbolic link (to /etc/passwd); "
        "a chart may hold only regular files, or the link's target on the publishing machine "
        "would be published (replace the link with the file's content)"
    ]


def test_a_link_to_a_directory_outside_the_chart_is_refused_not_followed(
    repo_copy: Path, tmp_path: Path
) -> None:
    outside = tmp_path / "outside"
    (outside / "deep").mkdir(parents=True)
    (outside / "deep" / "key.pem").write_text("secret")
    (outside / "deep" / "inner").symlink_to("/etc")
    (repo_copy / OWN_CHART / "files").symlink_to(outside)
    # A relative link that stays inside the chart is refused as well: it is still not
    # the file's content, and helm would follow it.
    (repo_copy / OWN_CHART / "templates" / "copy.yaml").symlink_to("service.yaml")
    with pytest.raises(errors.SpecError) as raised:
        repository.load(repo_copy)
    assert [p.file for p in raised.value.problems] == [
        f"{OWN_CHART}/files",
        f"{OWN_CHART}/templates/copy.yaml",
    ]
    assert all(p.fix == "replace the link with the file's content" for p in raised.value.problems)


def test_a_chart_directory_that_is_a_link_is_refused(repo_copy: Path, tmp_path: Path) -> None:
    shutil.move(repo_copy / OWN_CHART, tmp_path / "elsewhere")
    (repo_copy / OWN_CHART).symlink_to(tmp_path / "elsewhere")
    with pytest.raises(errors.SpecError, match=f"{OWN_CHART}: \\(symlink\\): is a symbolic link"):
        repository.load(repo_copy)


def test_scaffold_writes_a_valid_descriptor_and_refuses_to_overwrite(repo_copy: Path) -> None:
    path = scaffold.write(
        repo_copy,
        "payments",
        "refunds",
        image="registry.acme.example/payments/refunds:0.1.0",
        port=9000,
    )
    assert path == repo_copy / "services" / "payments" / "refunds" / "service.yaml"
    service = repository.load(repo_copy).service("payments/refunds")
    assert service.descriptor is not None and service.descriptor.port == 9000
    with pytest.raises(errors.UsageError, match="already exists"):
        scaffold.write(repo_copy, "payments", "refunds", image="x/y:1", port=1)


@pytest.mark.parametrize("name", ["Refunds", "re_funds", "re.funds", "r" * 41, ".."])
def test_scaffold_refuses_a_name_the_loader_would_refuse_and_writes_nothing(
    repo_copy: Path, name: str
) -> None:
    before = sorted((repo_copy / "services").rglob("*"))
    with pytest.raises(errors.UsageError, match="is not a DNS-1123 label") as raised:
        scaffold.write(repo_copy, "payments", name, image="x/y:1", port=1)
    assert "choose a service name" in str(raised.value.fix)
    assert sorted((repo_copy / "services").rglob("*")) == before


@pytest.mark.parametrize(
    ("paths", "expected"),
    [
        ([], []),
        (["README.md"], []),
        (["services/payments/api/service.yaml"], ["payments/api"]),
        (["services/checkout/web/chart/templates/deployment.yaml"], ["checkout/web"]),
        (["tenants/payments.yaml"], ["payments/api", "payments/ledger"]),
        (["platform.yaml"], ["checkout/web", "payments/api", "payments/ledger"]),
        (["services/payments/deleted/service.yaml"], []),
    ],
)
def test_changed_paths_map_to_services(paths: list[str], expected: list[str]) -> None:
    assert [s.ref for s in changes.affected(paths, REPO)] == expected


def test_junit_has_a_testcase_per_check_with_failures_and_skips() -> None:
    reports = [
        ServiceReport("payments/api", (Check("render", "passed", 0.5), Check("install", "failed", 1.25, "Forbidden: no\nmore"))),
        ServiceReport("checkout/web", (Check("helm test", "skipped", 0.0, "no hooks"),)),
    ]  # fmt: skip
    root = ET.fromstring(junit.to_xml(reports))  # noqa: S314 - our own output
    suite = root.find("testsuite")
    assert suite is not None
    assert (suite.get("tests"), suite.get("failures"), suite.get("skipped")) == ("3", "1", "1")
    cases = suite.findall("testcase")
    assert [(c.get("classname"), c.get("name")) for c in cases] == [
        ("payments.api", "render"), ("payments.api", "install"), ("checkout.web", "helm test"),
    ]  # fmt: skip
    failure = cases[1].find("failure")
    assert failure is not None and failure.get("message") == "Forbidden: no"
    assert failure.text == "Forbidden: no\nmore"
