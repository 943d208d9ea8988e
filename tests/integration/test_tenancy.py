"""Tenants onboarded into a real cluster are isolated by the real API server.

One platform repository (two tenants, alpha and bravo, in one staging cluster: the
session cluster) is applied once for the module; every test then acts as a
tenant's deployer through impersonation and checks what RBAC, quota, Pod Security
and the admission policy decide.
"""

from __future__ import annotations

import shutil
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from lightkube.resources.apps_v1 import Deployment
from lightkube.resources.core_v1 import (
    ConfigMap,
    Namespace,
    Pod,
    ResourceQuota,
    Secret,
    Service,
)
from lightkube.resources.networking_v1 import NetworkPolicy
from lightkube.resources.rbac_authorization_v1 import RoleBinding

from tenantry import errors, helm
from tenantry.kube import localcluster
from tenantry.kube.client import Identity, Kube
from tenantry.spec import repository
from tenantry.tenancy import objects, reconcile
from tests.conftest import CHARTS

REGISTRY = "registry.acme.example"


def _write_repo(root: Path, cluster: str, tenants: dict[str, dict[str, Any]]) -> Path:
    root.mkdir(parents=True, exist_ok=True)
    platform = {
        "apiVersion": "tenantry.dev/v1",
        "kind": "Platform",
        "name": "it",
        "environments": [{"name": "staging", "clusters": [{"name": cluster, "local": cluster}]}],
        "defaults": {
            "quota": {"cpu": "2", "memory": "2Gi", "pods": "10"},
            "container": {
                "requests": {"cpu": "100m", "memory": "64Mi"},
                "limits": {"cpu": "200m", "memory": "128Mi"},
            },
        },
        "registries": [REGISTRY],
    }
    (root / "platform.yaml").write_text(yaml.safe_dump(platform))
    shutil.rmtree(root / "tenants", ignore_errors=True)
    (root / "tenants").mkdir()
    for name, body in tenants.items():
        (root / "tenants" / f"{name}.yaml").write_text(yaml.safe_dump({"name": name, **body}))
    return root


TENANTS = {
    "alpha": {"owners": {"users": ["alice"]}, "environments": ["staging"]},
    "bravo": {
        "owners": {"users": ["bob"]},
        "environments": ["staging"],
        "registries": [f"{REGISTRY}/bravo"],
        "allowFrom": ["alpha"],
    },
}


@pytest.fixture(scope="module")
def repo_root(
    cluster: localcluster.LocalCluster, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Path]:
    root = _write_repo(tmp_path_factory.mktemp("platform-repo"), cluster.name, TENANTS)
    reconcile.apply_all(repository.load(root))
    yield root
    _write_repo(root, cluster.name, {})
    reconcile.apply_all(repository.load(root), force=True)


@pytest.fixture
def deployer(
    cluster: localcluster.LocalCluster, repo_root: Path
) -> Iterator[Callable[[str], Kube]]:
    """``deployer("alpha")`` acts as alpha's deployer ServiceAccount."""
    opened: list[Kube] = []

    def connect(tenant: str) -> Kube:
        kube = Kube.connect(
            cluster.kubeconfig, as_identity=Identity.service_account(tenant, objects.DEPLOYER_SA)
        )
        opened.append(kube)
        return kube

    yield connect
    for kube in opened:
        kube.close()


def pod(name: str, namespace: str, *, image: str = f"{REGISTRY}/app:1", **container: Any) -> dict:
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": name, "namespace": namespace},
        "spec": {
            "securityContext": {
                "runAsNonRoot": True,
                "runAsUser": 1000,
                "seccompProfile": {"type": "RuntimeDefault"},
            },
            "containers": [
                {
                    "name": "app",
                    "image": image,
                    "securityContext": {
                        "allowPrivilegeEscalation": False,
                        "capabilities": {"drop": ["ALL"]},
                    },
                    **container,
                }
            ],
        },
    }


def deployment(name: str, namespace: str, image: str) -> dict:
    spec = pod(name, namespace, image=image, resources={
        "requests": {"cpu": "100m", "memory": "64Mi"}, "limits": {"cpu": "100m", "memory": "64Mi"}})["spec"]  # fmt: skip
    return {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": name, "namespace": namespace},
        "spec": {
            "replicas": 1,
            "selector": {"matchLabels": {"app": name}},
            "template": {"metadata": {"labels": {"app": name}}, "spec": spec},
        },
    }


SAMPLES: dict[str, tuple[type, Callable[[str], dict]]] = {
    "pods": (Pod, lambda ns: pod("x", ns, image=f"{REGISTRY}/{ns}/app:1")),
    "deployments": (Deployment, lambda ns: deployment("x", ns, f"{REGISTRY}/{ns}/app:1")),
    "secrets": (Secret, lambda ns: {"apiVersion": "v1", "kind": "Secret", "metadata": {"name": "x", "namespace": ns}}),
    "configmaps": (ConfigMap, lambda ns: {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "x", "namespace": ns}}),
    "services": (Service, lambda ns: {"apiVersion": "v1", "kind": "Service", "metadata": {"name": "x", "namespace": ns},
                                      "spec": {"ports": [{"port": 80}]}}),
    "rolebindings": (RoleBinding, lambda ns: {
        "apiVersion": "rbac.authorization.k8s.io/v1", "kind": "RoleBinding", "metadata": {"name": "x", "namespace": ns},
        "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole", "name": "view"},
        "subjects": [{"kind": "ServiceAccount", "name": "default", "namespace": ns}]}),
}  # fmt: skip


@pytest.mark.parametrize("resource", sorted(SAMPLES))
@pytest.mark.parametrize("verb", ["get", "list", "create", "update", "delete"])
def test_a_tenant_is_refused_everything_in_another_tenants_namespace(
    deployer: Callable[[str], Kube], admin: Kube, resource: str, verb: str
) -> None:
    kind, sample = SAMPLES[resource]
    manifest = sample("bravo")
    if verb in ("get", "update", "delete") and resource not in ("rolebindings", "pods"):
        admin.apply(manifest)  # so a refusal is RBAC's, not a 404
    alpha = deployer("alpha")
    actions = {
        "get": lambda: alpha.get(kind, "x", namespace="bravo"),
        "list": lambda: alpha.list(kind, namespace="bravo"),
        "create": lambda: alpha.create(manifest),
        "update": lambda: alpha.apply(manifest),
        "delete": lambda: alpha.delete(kind, "x", namespace="bravo"),
    }
    with pytest.raises(errors.ForbiddenError) as refused:
        actions[verb]()
    assert "system:serviceaccount:alpha:tenantry-deployer" in refused.value.status_message
    assert 'in the namespace "bravo"' in refused.value.status_message


@pytest.mark.parametrize(
    "manifest",
    [
        {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "alpha-extra"}},
        {"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "ClusterRole", "metadata": {"name": "alpha-role"}, "rules": []},
        {"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "ClusterRoleBinding", "metadata": {"name": "alpha-admin"},
         "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole", "name": "cluster-admin"},
         "subjects": [{"kind": "ServiceAccount", "name": "tenantry-deployer", "namespace": "alpha"}]},
        {"apiVersion": "v1", "kind": "Node", "metadata": {"name": "alpha-node"}},
        {"apiVersion": "admissionregistration.k8s.io/v1", "kind": "ValidatingAdmissionPolicyBinding",
         "metadata": {"name": objects.POLICY_NAME}, "spec": {"policyName": "x", "validationActions": ["Audit"]}},
    ],
    ids=lambda m: m["kind"],
)  # fmt: skip
def test_a_tenant_is_refused_every_cluster_scoped_write(
    deployer: Callable[[str], Kube], manifest: dict
) -> None:
    with pytest.raises(errors.ForbiddenError):
        deployer("alpha").apply(manifest)


def test_a_tenant_cannot_bind_itself_to_cluster_admin(deployer: Callable[[str], Kube]) -> None:
    binding = {
        "apiVersion": "rbac.authorization.k8s.io/v1",
        "kind": "RoleBinding",
        "metadata": {"name": "escalate", "namespace": "alpha"},
        "roleRef": {
            "apiGroup": "rbac.authorization.k8s.io",
            "kind": "ClusterRole",
            "name": "cluster-admin",
        },
        "subjects": [{"kind": "ServiceAccount", "name": objects.DEPLOYER_SA, "namespace": "alpha"}],
    }
    with pytest.raises(errors.ForbiddenError):
        deployer("alpha").create(binding)


@pytest.mark.parametrize(
    ("kind", "name"),
    [(ResourceQuota, "tenantry-quota"), (NetworkPolicy, "tenantry-isolation")],
)
def test_a_tenant_cannot_edit_its_own_guardrails(
    deployer: Callable[[str], Kube], admin: Kube, kind: type, name: str
) -> None:
    current = admin.get(kind, name, namespace="alpha").to_dict()
    current["apiVersion"] = "v1" if kind is ResourceQuota else "networking.k8s.io/v1"
    current["kind"] = kind.__name__
    current["metadata"] = {"name": name, "namespace": "alpha"}
    with pytest.raises(errors.ForbiddenError):
        deployer("alpha").apply(current)
    with pytest.raises(errors.ForbiddenError):
        deployer("alpha").delete(kind, name, namespace="alpha")


def test_positive_control_a_tenant_deploys_in_its_own_namespace(
    deployer: Callable[[str], Kube],
) -> None:
    alpha = deployer("alpha")
    alpha.apply(deployment("web", "alpha", f"{REGISTRY}/web:1"))
    assert alpha.get(Deployment, "web", namespace="alpha").spec.replicas == 1
    assert alpha.delete(Deployment, "web", namespace="alpha")


def test_quota_stops_a_tenant_and_limit_range_fills_missing_requests(
    deployer: Callable[[str], Kube],
) -> None:
    alpha = deployer("alpha")
    with pytest.raises(errors.QuotaExceededError) as refused:
        alpha.create(pod("greedy", "alpha", resources={"requests": {"cpu": "3", "memory": "64Mi"},
                                                         "limits": {"cpu": "3", "memory": "64Mi"}}))  # fmt: skip
    assert "exceeded quota: tenantry-quota" in refused.value.status_message
    created = alpha.create(pod("defaults", "alpha"))
    resources = created["spec"]["containers"][0]["resources"]
    assert resources == {
        "requests": {"cpu": "100m", "memory": "64Mi"},
        "limits": {"cpu": "200m", "memory": "128Mi"},
    }
    alpha.delete(Pod, "defaults", namespace="alpha")


def test_pod_security_rejects_a_privileged_pod(deployer: Callable[[str], Kube]) -> None:
    privileged = pod("root", "alpha")
    privileged["spec"]["containers"][0]["securityContext"] = {"privileged": True}
    with pytest.raises(errors.AdmissionDeniedError) as refused:
        deployer("alpha").create(privileged)
    assert 'violates PodSecurity "restricted:latest"' in refused.value.status_message


def test_admission_policy_rejects_an_image_from_a_registry_not_allowed(
    deployer: Callable[[str], Kube],
) -> None:
    with pytest.raises(errors.AdmissionDeniedError) as refused:
        deployer("bravo").create(deployment("web", "bravo", f"{REGISTRY}/alpha/web:1"))
    message = refused.value.status_message
    assert f"ValidatingAdmissionPolicy '{objects.POLICY_NAME}'" in message
    assert f"images {REGISTRY}/alpha/web:1 are not from the tenant's allowed registries" in message
    assert f"({REGISTRY}/bravo)" in message


def test_admission_policy_requires_resources_on_workloads(deployer: Callable[[str], Kube]) -> None:
    bare = deployment("bare", "alpha", f"{REGISTRY}/web:1")
    del bare["spec"]["template"]["spec"]["containers"][0]["resources"]
    with pytest.raises(errors.AdmissionDeniedError) as refused:
        deployer("alpha").create(bare)
    assert "must set cpu and memory in both resources.requests and resources.limits" in (
        refused.value.status_message
    )


@pytest.mark.parametrize(
    ("kind", "name"),
    [(ResourceQuota, "tenantry-quota"), (NetworkPolicy, "tenantry-isolation")],
)
def test_apply_repairs_an_object_deleted_by_hand(
    admin: Kube, repo_root: Path, kind: type, name: str
) -> None:
    assert admin.delete(kind, name, namespace="alpha")
    loaded = repository.load(repo_root)
    ((target, cluster_plan),) = reconcile.plan_all(loaded)
    assert [str(c.key) for c in cluster_plan.of("create")] == [f"{kind.__name__}/alpha/{name}"]
    reconcile.apply_all(loaded)
    assert admin.get(kind, name, namespace="alpha")
    assert reconcile.plan_cluster(loaded, target).empty


def test_platform_identity_may_impersonate_deployers_and_nothing_broader(admin: Kube) -> None:
    platform_user = f"system:serviceaccount:{objects.PLATFORM_NAMESPACE}:{objects.PLATFORM_SA}"

    def allowed(namespace: str | None, resource: str, name: str) -> bool:
        review = {
            "apiVersion": "authorization.k8s.io/v1",
            "kind": "SubjectAccessReview",
            "spec": {
                "user": platform_user,
                "resourceAttributes": {
                    "verb": "impersonate", "resource": resource, "name": name,
                    **({"namespace": namespace} if namespace else {}),
                },
            },
        }  # fmt: skip
        result = admin.create(review)
        return bool(result["status"]["allowed"])

    assert allowed("alpha", "serviceaccounts", objects.DEPLOYER_SA)
    assert allowed("bravo", "serviceaccounts", objects.DEPLOYER_SA)
    assert not allowed("alpha", "serviceaccounts", "default")
    assert not allowed("kube-system", "serviceaccounts", objects.DEPLOYER_SA)
    assert not allowed(None, "users", "admin")
    assert not allowed(None, "groups", "system:masters")


def _wait_gone(admin: Kube, namespace: str, timeout_s: float = 60) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        try:
            admin.get(Namespace, namespace)
        except errors.NotFoundError:
            return
        time.sleep(0.25)
    raise AssertionError(f"namespace {namespace} still exists")


def test_removing_a_tenant_removes_its_objects_but_not_under_a_live_release(
    cluster: localcluster.LocalCluster, admin: Kube, repo_root: Path, tmp_path: Path
) -> None:
    # alpha and bravo stay in this repository so the module's tenants are not pruned.
    root = _write_repo(tmp_path / "repo", cluster.name, {**TENANTS,
        "charlie": {"owners": {"users": ["c"]}, "environments": ["staging"]},
        "delta": {"owners": {"users": ["d"]}, "environments": ["staging"]}})  # fmt: skip
    reconcile.apply_all(repository.load(root))
    target = helm.Target(
        kubeconfig=cluster.kubeconfig,
        namespace="delta",
        identity=Identity.service_account("delta", objects.DEPLOYER_SA),
    )
    helm.upgrade_install(
        target, release="web", chart=CHARTS / "rollout",
        values={"image": f"{REGISTRY}/delta/web:1", "replicas": 1}, wait=True, timeout_s=60,
    )  # fmt: skip

    (root / "tenants" / "delta.yaml").unlink()
    (root / "tenants" / "charlie.yaml").unlink()
    with pytest.raises(errors.TenantryError, match=rf"{cluster.name}/delta \(web\)"):
        reconcile.apply_all(repository.load(root))
    # Nothing was applied: charlie, which had no release, is still there too.
    assert admin.get(Namespace, "charlie") and admin.get(Namespace, "delta")

    reconcile.apply_all(repository.load(root), force=True)
    _wait_gone(admin, "charlie")
    _wait_gone(admin, "delta")
