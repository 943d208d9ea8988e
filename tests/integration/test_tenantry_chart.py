"""Tenantry's own Helm chart (deploy/chart/tenantry) with the real helm and a real API server.

The chart is checked the way a platform team would meet it: `helm lint --strict`,
its values schema refusing bad values before anything renders, the rendered objects,
the same policy `tenantry lint` applies to tenants' charts, and an install with
`--wait` into a real cluster whose RBAC then says, through SubjectAccessReviews,
exactly what the platform's identities may and may not do.
"""

from __future__ import annotations

import tomllib
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

import pytest
import yaml
from lightkube.resources.core_v1 import Pod

from tenantry import errors, helm
from tenantry.charts import manifests, policy
from tenantry.kube import localcluster
from tenantry.kube.client import Kube
from tenantry.tenancy import objects
from tests.conftest import SESSION_ID, TEST_LABEL

ROOT = Path(__file__).resolve().parents[2]
CHART = ROOT / "deploy" / "chart" / "tenantry"
RELEASE = "tenantry"
SERVER_SA = "tenantry-platform"
WORKER_SA = "tenantry-worker"

# An empty `configMap` switches the default source off.
GIT_SOURCE: dict[str, Any] = {
    "platformRepo": {
        "configMap": "",
        "git": {"url": "https://git.example.com/platform/platform-repo.git", "ref": "v42"},
    }
}
PLAINTEXT_PASSWORD = "s3cret-pw"


def _render(namespace: str, values: Mapping[str, Any] | None = None) -> list[manifests.Rendered]:
    return manifests.split(
        helm.template(CHART, release=RELEASE, namespace=namespace, values=values)
    )


def _by_ref(rendered: list[manifests.Rendered]) -> dict[str, Mapping[str, Any]]:
    return {obj.ref: obj.manifest for obj in rendered}


def _container(deployment: Mapping[str, Any]) -> Mapping[str, Any]:
    (container,) = deployment["spec"]["template"]["spec"]["containers"]
    assert isinstance(container, Mapping)
    return container


def test_app_version_is_the_package_version() -> None:
    chart = yaml.safe_load((CHART / "Chart.yaml").read_text())
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    assert chart["appVersion"] == project["version"]


@pytest.mark.parametrize("values", [None, GIT_SOURCE], ids=["defaults", "git-source"])
def test_helm_lint_passes(values: dict[str, Any] | None) -> None:
    report = helm.lint(CHART, values=values)
    assert "0 chart(s) failed" in report


@pytest.mark.parametrize(
    ("values", "expected"),
    [
        pytest.param(
            {"platformRepo": {"git": GIT_SOURCE["platformRepo"]["git"]}},
            [
                "at '/platformRepo/configMap'",
                "because platformRepo.git.url is set",
                "exactly one source",
            ],
            id="both-sources",
        ),
        pytest.param(
            {"platformRepo": {"configMap": ""}},
            [
                "at '/platformRepo'",
                "configMap or git.url: the platform repository needs exactly one",
            ],
            id="no-source",
        ),
        pytest.param(
            {"database": {"url": f"postgresql://tenantry:{PLAINTEXT_PASSWORD}@db/ledger"}},
            ["at '/database'", "additional properties 'url' not allowed"],
            id="plaintext-database-url",
        ),
        pytest.param(
            {"deployer": {"serviceAccountName": objects.DEPLOYER_SA}},
            ["at '/deployer/serviceAccountName'", "a name other than tenantry-deployer"],
            id="worker-named-like-a-tenant-deployer",
        ),
    ],
)
def test_schema_refuses_bad_values(values: dict[str, Any], expected: list[str]) -> None:
    with pytest.raises(errors.HelmError) as caught:
        helm.template(CHART, release=RELEASE, namespace="tenantry-system", values=values)
    message = str(caught.value)
    assert "values don't meet the specifications of the schema" in message
    for text in expected:
        assert text in message
    # The refusal of a plaintext URL must not echo the password it refuses.
    assert PLAINTEXT_PASSWORD not in message


def test_server_and_workers_must_not_share_a_service_account() -> None:
    values = {"deployer": {"serviceAccountName": SERVER_SA}}
    with pytest.raises(errors.HelmError, match="must differ"):
        helm.template(CHART, release=RELEASE, namespace="tenantry-system", values=values)


def test_renders_the_server_the_workers_and_least_privilege_rbac() -> None:
    rendered = _by_ref(_render("tenantry-system"))
    server_role = f"tenantry:tenantry-system:{RELEASE}:server"
    worker_role = f"tenantry:tenantry-system:{RELEASE}:deployer"
    assert set(rendered) == {
        f"ServiceAccount/{SERVER_SA}",
        f"ServiceAccount/{WORKER_SA}",
        f"ClusterRole/{server_role}",
        f"ClusterRole/{worker_role}",
        f"ClusterRoleBinding/{server_role}",
        f"ClusterRoleBinding/{worker_role}",
        "Service/tenantry-server",
        "Deployment/tenantry-server",
        "Deployment/tenantry-deployer",
        "PodDisruptionBudget/tenantry-server",
    }

    server = rendered["Deployment/tenantry-server"]
    container = _container(server)
    assert container["image"] == "registry.example.com/platform/tenantry:0.1.0"
    # Every interface: the pod's address is what the Service reaches.
    assert container["args"][:5] == ["server", "--host", "0.0.0.0", "--port", "8080"]  # noqa: S104
    assert container["ports"] == [{"name": "http", "containerPort": 8080, "protocol": "TCP"}]
    for probe in ("readinessProbe", "livenessProbe"):
        assert container[probe]["httpGet"] == {"path": "/healthz", "port": "http"}
    workers = rendered["Deployment/tenantry-deployer"]
    assert workers["spec"]["replicas"] == 2
    assert _container(workers)["args"][:3] == ["deployer", "--repo", "/platform-repo"]

    for deployment in (server, workers):
        pod = deployment["spec"]["template"]["spec"]
        assert pod["securityContext"]["runAsNonRoot"] is True
        assert pod["securityContext"]["seccompProfile"] == {"type": "RuntimeDefault"}
        container = _container(deployment)
        assert set(container["resources"]) == {"requests", "limits"}
        hardening = container["securityContext"]
        assert hardening["readOnlyRootFilesystem"] is True
        assert hardening["allowPrivilegeEscalation"] is False
        assert hardening["capabilities"] == {"drop": ["ALL"]}
        env = {e["name"]: e for e in container["env"]}
        assert env["TENANTRY_DATABASE_URL"] == {
            "name": "TENANTRY_DATABASE_URL",
            "valueFrom": {"secretKeyRef": {"name": "tenantry-database", "key": "url"}},
        }
        volumes = {v["name"]: v for v in pod["volumes"]}
        assert volumes["platform-repo"]["configMap"] == {"name": "tenantry-platform-repo"}
        assert "initContainers" not in pod

    for role in (server_role, worker_role):
        rules = rendered[f"ClusterRole/{role}"]["rules"]
        for rule in rules:
            for field in ("apiGroups", "resources", "verbs", "resourceNames"):
                assert "*" not in rule.get(field, []), (role, rule)
            assert "secrets" not in rule["resources"]
            # Reads and impersonation only; the one write is creating a TokenReview.
            writes = set(rule["verbs"]) - {"get", "list", "watch", "impersonate"}
            only_token_review = (rule["resources"], rule["verbs"]) == (["tokenreviews"], ["create"])
            assert not writes or only_token_review, rule
        (impersonate,) = [r for r in rules if "impersonate" in r["verbs"]]
        assert impersonate == {
            "apiGroups": [""],
            "resources": ["serviceaccounts"],
            "verbs": ["impersonate"],
            "resourceNames": [objects.DEPLOYER_SA],
        }
    assert any(
        r["resources"] == ["tokenreviews"] for r in rendered[f"ClusterRole/{server_role}"]["rules"]
    )
    assert not any(
        r["resources"] == ["tokenreviews"] for r in rendered[f"ClusterRole/{worker_role}"]["rules"]
    )


def test_git_source_is_checked_out_by_an_init_container_and_ingress_is_optional() -> None:
    values = {**GIT_SOURCE, "server": {"ingress": {"enabled": True, "tlsSecretName": "tls"}}}
    rendered = _by_ref(_render("tenantry-system", values))
    ingress = rendered["Ingress/tenantry-server"]
    assert ingress["spec"]["tls"] == [{"hosts": ["tenantry.example.com"], "secretName": "tls"}]
    for name in ("tenantry-server", "tenantry-deployer"):
        pod = rendered[f"Deployment/{name}"]["spec"]["template"]["spec"]
        (init,) = pod["initContainers"]
        env = {e["name"]: e["value"] for e in init["env"]}
        assert env["REPO_URL"] == GIT_SOURCE["platformRepo"]["git"]["url"]
        assert env["REPO_REF"] == "v42"
        # The URL reaches git as an environment variable, never inside the script.
        assert GIT_SOURCE["platformRepo"]["git"]["url"] not in " ".join(init["args"])
        volumes = {v["name"]: v for v in pod["volumes"]}
        assert volumes["platform-repo"] == {"name": "platform-repo", "emptyDir": {}}


def test_namespaced_objects_pass_the_tenant_chart_policy() -> None:
    """`tenantry lint`'s policy (charts.policy) on the chart rendered into its namespace.

    The ClusterRoles and their bindings are the only findings, and only for being
    cluster-scoped: they are the platform's own component, installed by a cluster
    admin, which is exactly what that rule keeps tenants from doing.
    """
    namespace = "tenantry-system"
    context = policy.Context(
        tenant="tenantry", namespace=namespace, registries=("registry.example.com/platform",)
    )
    for values in (None, GIT_SOURCE):
        rendered = _render(namespace, values)
        findings = policy.check(rendered, context)
        assert {(f.rule, f.object.split("/")[0]) for f in findings} == {
            ("namespaced-only", "ClusterRole"),
            ("namespaced-only", "ClusterRoleBinding"),
        }, [str(f) for f in findings]
        namespaced = [obj for obj in rendered if obj.kind not in policy.CLUSTER_SCOPED]
        assert policy.check(namespaced, context) == []


@pytest.fixture(params=[None, GIT_SOURCE], ids=["configmap-source", "git-source"])
def installed(
    request: pytest.FixtureRequest, cluster: localcluster.LocalCluster, admin: Kube, namespace: str
) -> Iterator[str]:
    """The chart installed with `--wait` into a fresh namespace that enforces Pod Security
    `restricted` (with each repository source: the git one adds an initContainer);
    uninstalled afterwards, since its ClusterRoles outlive the namespace."""
    admin.apply(
        {
            "apiVersion": "v1",
            "kind": "Namespace",
            "metadata": {
                "name": namespace,
                "labels": {
                    TEST_LABEL: SESSION_ID,
                    "pod-security.kubernetes.io/enforce": "restricted",
                },
            },
        }
    )
    # What the default values expect to exist: the ledger's URL and the platform repository.
    admin.apply(
        {
            "apiVersion": "v1",
            "kind": "Secret",
            "metadata": {"name": "tenantry-database", "namespace": namespace},
            "stringData": {"url": "postgresql://tenantry@db.example.com/ledger"},
        }
    )
    admin.apply(
        {
            "apiVersion": "v1",
            "kind": "ConfigMap",
            "metadata": {"name": "tenantry-platform-repo", "namespace": namespace},
            "data": {"platform.yaml": (ROOT / "examples/platform-repo/platform.yaml").read_text()},
        }
    )
    target = helm.Target(kubeconfig=cluster.kubeconfig, namespace=namespace)
    try:
        release = helm.upgrade_install(
            target, release=RELEASE, chart=CHART, values=request.param, timeout_s=180
        )
        assert release.status == "deployed"
        assert release.app_version == "0.1.0"
        yield namespace
    finally:
        helm.uninstall(target, release=RELEASE)


def _allowed(admin: Kube, user: str, attributes: dict[str, str]) -> bool:
    review = {
        "apiVersion": "authorization.k8s.io/v1",
        "kind": "SubjectAccessReview",
        "spec": {"user": user, "resourceAttributes": attributes},
    }
    # A manifest is sent untyped, so the answer is a dict-like generic resource.
    result: Any = admin.create(review)
    return bool(result["status"]["allowed"])


def test_installs_and_its_identities_may_do_only_what_they_need(
    admin: Kube, installed: str
) -> None:
    namespace = installed
    # --wait returned: both Deployments' pods are Ready, admitted under Pod Security
    # `restricted`, each running as its own ServiceAccount.
    for component, account in (("server", SERVER_SA), ("deployer", WORKER_SA)):
        pods = admin.list(
            Pod, namespace=namespace, labels={"app.kubernetes.io/component": component}
        )
        assert [p.spec.serviceAccountName if p.spec else None for p in pods] == [account] * 2
    server = f"system:serviceaccount:{namespace}:{SERVER_SA}"
    worker = f"system:serviceaccount:{namespace}:{WORKER_SA}"
    token_review = {"group": "authentication.k8s.io", "resource": "tokenreviews", "verb": "create"}

    def impersonate(resource: str, name: str, in_namespace: str = "") -> dict[str, str]:
        attributes = {"verb": "impersonate", "resource": resource, "name": name}
        return {**attributes, "namespace": in_namespace} if in_namespace else attributes

    assert _allowed(admin, server, token_review)
    assert _allowed(admin, server, impersonate("serviceaccounts", objects.DEPLOYER_SA, "payments"))
    assert _allowed(admin, server, impersonate("serviceaccounts", objects.DEPLOYER_SA, "checkout"))
    assert _allowed(admin, server, {"verb": "list", "resource": "namespaces"})
    assert _allowed(
        admin, server, {"verb": "get", "group": "apps", "resource": "deployments", "namespace": "x"}
    )
    refused = [
        impersonate("serviceaccounts", "default", "payments"),
        impersonate("serviceaccounts", WORKER_SA, namespace),
        impersonate("serviceaccounts", "namespace-controller", "kube-system"),
        impersonate("users", "admin"),
        impersonate("groups", "system:masters"),
        {"verb": "create", "resource": "secrets", "namespace": namespace},
        {"verb": "get", "resource": "secrets", "namespace": "payments"},
        {"verb": "create", "resource": "namespaces"},
        {"verb": "patch", "resource": "resourcequotas", "namespace": "payments"},
        {"verb": "create", "group": "rbac.authorization.k8s.io", "resource": "rolebindings",
         "namespace": "payments"},
    ]  # fmt: skip
    assert [a for a in refused if _allowed(admin, server, a)] == []

    # The workers impersonate and read like the server, but never review tokens.
    assert _allowed(admin, worker, impersonate("serviceaccounts", objects.DEPLOYER_SA, "payments"))
    assert not _allowed(admin, worker, token_review)
    assert [a for a in refused if _allowed(admin, worker, a)] == []
