"""`verify` on a real cluster with real Helm: good charts pass, each bad one fails for the
right reason, shown as the API server or Helm said it, and nothing is left behind.

The session's cluster has kwok nodes only, so pods here are simulated (and reports say
so); test_verify_real_nodes.py verifies where containers really run."""

from __future__ import annotations

import shutil
import time

import pytest
import yaml
from lightkube.resources.core_v1 import Namespace

from tenantry.kube import localcluster
from tenantry.kube.client import Kube
from tenantry.spec import repository
from tenantry.verify import run as verification
from tenantry.verify.results import ServiceReport
from tests.conftest import CHARTS

CASES = ["good", "cross-namespace", "over-quota", "bad-registry", "never-ready", "template-error"]


@pytest.fixture(scope="module")
def repo(tmp_path_factory: pytest.TempPathFactory) -> repository.Repository:
    root = tmp_path_factory.mktemp("verify-repo")
    platform = {
        "name": "it",
        "environments": [{"name": "staging", "clusters": [{"name": "staging", "local": "unused"}]}],
        "defaults": {
            "quota": {"cpu": "2", "memory": "2Gi", "pods": "10"},
            "container": {"requests": {"cpu": "100m", "memory": "64Mi"},
                          "limits": {"cpu": "200m", "memory": "128Mi"}},
        },
        "registries": ["registry.acme.example"],
    }  # fmt: skip
    (root / "platform.yaml").write_text(yaml.safe_dump(platform))
    (root / "tenants").mkdir()
    (root / "tenants" / "alpha.yaml").write_text(
        yaml.safe_dump(
            {
                "name": "alpha",
                "owners": {"users": ["a"]},
                "environments": ["staging"],
                "registries": ["registry.acme.example/alpha"],
            }
        )
    )
    for case in CASES:
        shutil.copytree(CHARTS / case, root / "services" / "alpha" / case / "chart")
    return repository.load(root)


def verify(
    repo: repository.Repository, cluster: localcluster.LocalCluster, case: str
) -> ServiceReport:
    return verification.verify_service(
        repo,
        repo.service(f"alpha/{case}"),
        cluster=cluster,
        options=verification.Options(timeout_s=30),
    )


def check(report: ServiceReport, name: str) -> verification.Check:
    return next(c for c in report.checks if c.name == name)


def assert_nothing_left(admin: Kube, timeout_s: float = 60) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        left = admin.list(Namespace, labels={verification.VERIFICATION_LABEL: "true"})
        if not left:
            return
        time.sleep(0.25)
    raise AssertionError(f"verification namespaces left behind: {[n.metadata.name for n in left]}")


def test_a_good_chart_passes_every_check_and_is_cleaned_up(
    repo: repository.Repository, cluster: localcluster.LocalCluster, admin: Kube
) -> None:
    report = verify(repo, cluster, "good")
    assert report.passed, report
    statuses = {c.name: c.status for c in report.checks}
    assert statuses == {
        "helm lint": "passed", "render": "passed", "policy": "passed", "onboard": "passed",
        "dry-run": "passed", "images": "skipped", "install": "passed", "rollout": "passed",
        "helm test": "skipped", "cleanup": "passed", "secrets": "skipped",
    }  # fmt: skip
    assert check(report, "secrets").detail == "the chart reads no secrets"
    assert "Deployment/good 1/1 ready" in check(report, "rollout").detail
    # The session's cluster has kwok nodes only: the report says its pods did not run.
    assert "pods were simulated by kwok" in check(report, "rollout").detail
    assert "pods were simulated by kwok" in check(report, "images").detail
    assert_nothing_left(admin)


def test_a_chart_writing_into_another_namespace_is_refused_by_rbac(
    repo: repository.Repository, cluster: localcluster.LocalCluster, admin: Kube
) -> None:
    report = verify(repo, cluster, "cross-namespace")
    assert not report.passed
    assert (
        "metadata.namespace: is 'kube-system', outside the tenant's namespace"
        in check(report, "policy").detail
    )
    refused = check(report, "dry-run")
    assert refused.status == "failed"
    assert refused.detail.startswith("Forbidden: ")
    assert (
        'cannot patch resource "deployments" in API group "apps" in the namespace "kube-system"'
        in refused.detail
    )
    assert ":tenantry-deployer" in refused.detail
    assert check(report, "install").status == "skipped"
    assert_nothing_left(admin)


def test_a_chart_over_the_tenants_quota_fails_with_the_quota_message(
    repo: repository.Repository, cluster: localcluster.LocalCluster, admin: Kube
) -> None:
    report = verify(repo, cluster, "over-quota")
    install = check(report, "install")
    assert install.status == "failed"
    assert "exceeded quota: tenantry-quota" in install.detail
    assert "FailedCreate" in install.detail
    assert_nothing_left(admin)


def test_an_image_from_a_registry_not_allowed_is_refused_by_the_admission_policy(
    repo: repository.Repository, cluster: localcluster.LocalCluster, admin: Kube
) -> None:
    report = verify(repo, cluster, "bad-registry")
    assert (
        "'docker.io/library/nginx:1.27' is not from the tenant's registries"
        in check(report, "policy").detail
    )
    refused = check(report, "dry-run").detail
    assert "ValidatingAdmissionPolicy 'tenantry-tenant-guardrails'" in refused
    assert (
        "images docker.io/library/nginx:1.27 are not from the tenant's allowed registries"
        in refused
    )
    assert_nothing_left(admin)


def test_a_rollout_that_never_becomes_ready_fails_fast_with_the_pod_state(
    repo: repository.Repository, cluster: localcluster.LocalCluster, admin: Kube
) -> None:
    report = verify(repo, cluster, "never-ready")
    install = check(report, "install")
    assert install.status == "failed"
    # Reported from the pod's own state, not as helm's "context deadline exceeded".
    assert "container app: CrashLoopBackOff" in install.detail
    assert "deadline" not in install.detail
    assert check(report, "rollout").status == "skipped"
    assert_nothing_left(admin)


def test_a_template_error_names_the_file_and_line_and_installs_nothing(
    repo: repository.Repository, cluster: localcluster.LocalCluster, admin: Kube
) -> None:
    report = verify(repo, cluster, "template-error")
    lint = check(report, "helm lint")
    assert lint.status == "failed"
    assert (
        'template-error/templates/deployment.yaml:30): function "notAFunction" not defined'
        in lint.detail
    )
    assert check(report, "render").status == "failed"
    for name in ("dry-run", "install", "rollout"):
        assert check(report, name).status == "skipped"
    assert check(report, "cleanup").status == "passed"
    assert_nothing_left(admin)


def test_services_verify_in_parallel(
    repo: repository.Repository, cluster: localcluster.LocalCluster, admin: Kube
) -> None:
    services = [repo.service("alpha/good"), repo.service("alpha/never-ready")]
    reports = verification.verify_all(
        repo, services, cluster=cluster, jobs=2, options=verification.Options(timeout_s=30)
    )
    assert [r.ref for r in reports] == ["alpha/good", "alpha/never-ready"]
    assert [r.passed for r in reports] == [True, False]
    assert_nothing_left(admin)
