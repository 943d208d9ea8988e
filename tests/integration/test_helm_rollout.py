"""`helm upgrade --install --wait` completes on a local cluster: Deployments really roll out."""

from __future__ import annotations

import pytest

from tenantry import errors, helm
from tenantry.kube import waits
from tenantry.kube.client import Identity, Kube
from tenantry.kube.localcluster import LocalCluster
from tests.conftest import CHARTS


def test_deployment_installed_with_wait_becomes_ready(
    cluster: LocalCluster, admin: Kube, namespace: str
) -> None:
    target = helm.Target(kubeconfig=cluster.kubeconfig, namespace=namespace)
    release = helm.upgrade_install(
        target, release="web", chart=CHARTS / "rollout", wait=True, timeout_s=120
    )
    assert release.status == "deployed"
    assert release.revision == 1
    state = waits.wait_for_rollout(admin, namespace=namespace, name="web", timeout_s=10)
    assert (state.desired, state.ready, state.available) == (3, 3, 3)

    upgraded = helm.upgrade_install(
        target,
        release="web",
        chart=CHARTS / "rollout",
        values={"replicas": 5},
        wait=True,
        timeout_s=120,
    )
    assert upgraded.revision == 2
    assert waits.wait_for_rollout(admin, namespace=namespace, name="web", timeout_s=10).ready == 5
    assert [r["name"] for r in helm.list_releases(target)] == ["web"]
    helm.uninstall(target, release="web")
    assert helm.list_releases(target) == []


def test_helm_as_an_identity_without_rights_is_refused(
    cluster: LocalCluster, admin: Kube, namespace: str
) -> None:
    admin.apply(
        {
            "apiVersion": "v1",
            "kind": "ServiceAccount",
            "metadata": {"name": "nobody", "namespace": namespace},
        }
    )
    target = helm.Target(
        kubeconfig=cluster.kubeconfig,
        namespace=namespace,
        identity=Identity.service_account(namespace, "nobody"),
    )
    with pytest.raises(errors.HelmError) as refused:
        helm.upgrade_install(
            target, release="web", chart=CHARTS / "rollout", wait=True, timeout_s=60
        )
    assert "forbidden" in refused.value.stderr
    assert f"system:serviceaccount:{namespace}:nobody" in refused.value.stderr
