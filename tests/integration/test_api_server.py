"""The local cluster's API server really enforces RBAC, impersonation and quota."""

from __future__ import annotations

import pytest
from lightkube.resources.core_v1 import ConfigMap, ResourceQuota

from tenantry import errors
from tenantry.kube.client import Identity, Kube
from tenantry.kube.localcluster import LocalCluster
from tests.waiting import wait_for


def _service_account(name: str, namespace: str) -> dict:
    return {
        "apiVersion": "v1",
        "kind": "ServiceAccount",
        "metadata": {"name": name, "namespace": namespace},
    }


def _config_map(name: str, namespace: str) -> dict:
    return {
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": {"name": name, "namespace": namespace},
        "data": {"k": "v"},
    }


def test_impersonated_service_account_without_rights_is_refused_by_rbac(
    cluster: LocalCluster, admin: Kube, namespace: str
) -> None:
    admin.apply(_service_account("nobody", namespace))
    identity = Identity.service_account(namespace, "nobody")
    with (
        Kube.connect(cluster.kubeconfig, as_identity=identity) as kube,
        pytest.raises(errors.ForbiddenError) as refused,
    ):
        kube.apply(_config_map("cm", namespace))
    assert refused.value.code == 403
    assert refused.value.reason == "Forbidden"
    # The API server's own words, naming the impersonated user: proof the header took effect.
    assert (
        f'User "system:serviceaccount:{namespace}:nobody" cannot patch resource "configmaps"'
        in (refused.value.status_message)
    )


def test_impersonated_service_account_gets_exactly_what_its_role_grants(
    cluster: LocalCluster, admin: Kube, namespace: str
) -> None:
    admin.apply(_service_account("writer", namespace))
    admin.apply(
        {
            "apiVersion": "rbac.authorization.k8s.io/v1",
            "kind": "Role",
            "metadata": {"name": "configmaps", "namespace": namespace},
            "rules": [
                {
                    "apiGroups": [""],
                    "resources": ["configmaps"],
                    "verbs": ["get", "patch", "create"],
                }
            ],
        }
    )
    admin.apply(
        {
            "apiVersion": "rbac.authorization.k8s.io/v1",
            "kind": "RoleBinding",
            "metadata": {"name": "writer", "namespace": namespace},
            "roleRef": {
                "apiGroup": "rbac.authorization.k8s.io",
                "kind": "Role",
                "name": "configmaps",
            },
            "subjects": [{"kind": "ServiceAccount", "name": "writer", "namespace": namespace}],
        }
    )
    with Kube.connect(
        cluster.kubeconfig, as_identity=Identity.service_account(namespace, "writer")
    ) as kube:
        kube.apply(_config_map("cm", namespace))
        assert kube.get(ConfigMap, "cm", namespace=namespace).data == {"k": "v"}
        with pytest.raises(errors.ForbiddenError):
            kube.delete(ConfigMap, "cm", namespace=namespace)


def test_resource_quota_rejects_an_over_quota_pod_with_the_api_servers_message(
    admin: Kube, namespace: str
) -> None:
    admin.apply(
        {
            "apiVersion": "v1",
            "kind": "ResourceQuota",
            "metadata": {"name": "small", "namespace": namespace},
            "spec": {"hard": {"requests.cpu": "500m", "limits.cpu": "1", "pods": "5"}},
        }
    )

    # Until the quota controller has counted the namespace, the API server refuses every
    # pod with "status unknown for quota", not with the sums this test is about.
    def counted() -> bool:
        status = admin.get(ResourceQuota, "small", namespace=namespace).status
        return bool(status and status.hard and status.used is not None)

    wait_for(counted, "the quota controller to count the namespace")
    pod = {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": "greedy", "namespace": namespace},
        "spec": {
            "containers": [
                {
                    "name": "app",
                    "image": "registry.example.com/app:1",
                    "resources": {"requests": {"cpu": "2"}, "limits": {"cpu": "2"}},
                }
            ]
        },
    }
    with pytest.raises(errors.QuotaExceededError) as refused:
        admin.create(pod)
    message = refused.value.status_message
    assert "exceeded quota: small" in message
    assert "requested: limits.cpu=2,requests.cpu=2" in message
    assert "limited: limits.cpu=1,requests.cpu=500m" in message


def test_pod_security_admission_is_enforced(admin: Kube, namespace: str) -> None:
    admin.apply(
        {
            "apiVersion": "v1",
            "kind": "Namespace",
            "metadata": {
                "name": namespace,
                "labels": {"pod-security.kubernetes.io/enforce": "restricted"},
            },
        }
    )
    pod = {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": "root", "namespace": namespace},
        "spec": {
            "containers": [
                {
                    "name": "app",
                    "image": "registry.example.com/app:1",
                    "securityContext": {"privileged": True},
                }
            ]
        },
    }
    with pytest.raises(errors.AdmissionDeniedError) as refused:
        admin.create(pod)
    assert 'violates PodSecurity "restricted:latest"' in refused.value.status_message
