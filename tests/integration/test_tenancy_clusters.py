"""Applying tenants to several real clusters at once, and the applier it goes through.

Three clusters of their own (staging; production's primary and canary), so pruning
here never touches the session cluster's tenants. `apply_all` applies the clusters
concurrently; these tests hold it to what the sequential version promised: a refused
deletion in any cluster applies nothing anywhere, and a failure in one cluster is
raised, not lost among the others, which still finish.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from lightkube.resources.core_v1 import ConfigMap, Namespace
from lightkube.resources.rbac_authorization_v1 import RoleBinding

from tenantry import errors, helm
from tenantry.kube import applier, localcluster
from tenantry.kube.client import Kube
from tenantry.spec import repository
from tenantry.tenancy import objects, reconcile
from tests.conftest import CHARTS, SESSION_ID
from tests.waiting import wait_for

REGISTRY = "registry.acme.example"
ROLES = (("staging", "primary"), ("production", "primary"), ("production", "canary"))


@pytest.fixture(scope="module")
def clusters(state_dir: Path) -> Iterator[list[localcluster.LocalCluster]]:
    """Staging, production primary, production canary: one kwok node each."""
    made: list[localcluster.LocalCluster] = []
    try:
        for suffix in ("stg", "prd", "can"):
            made.append(localcluster.create(f"mc-{SESSION_ID}-{suffix}", nodes=1))
        yield made
    finally:
        for cluster in made:
            localcluster.delete(cluster.name)


def write_repo(root: Path, clusters: list[localcluster.LocalCluster], tenants: list[str]) -> Path:
    environments: dict[str, list[dict[str, str]]] = {}
    for cluster, (environment, role) in zip(clusters, ROLES, strict=True):
        environments.setdefault(environment, []).append(
            {"name": cluster.name, "local": cluster.name, "role": role}
        )
    platform = {
        "name": "it-multi",
        "environments": [{"name": e, "clusters": c} for e, c in environments.items()],
        "defaults": {
            "quota": {"cpu": "2", "memory": "2Gi", "pods": "10"},
            "container": {
                "requests": {"cpu": "100m", "memory": "64Mi"},
                "limits": {"cpu": "200m", "memory": "128Mi"},
            },
        },
        "registries": [REGISTRY],
    }
    root.mkdir(parents=True, exist_ok=True)
    (root / "platform.yaml").write_text(yaml.safe_dump(platform))
    shutil.rmtree(root / "tenants", ignore_errors=True)
    (root / "tenants").mkdir()
    for name in tenants:
        tenant = {"name": name, "owners": {"users": [f"{name}@acme.example"]},
                  "environments": list(environments)}  # fmt: skip
        (root / "tenants" / f"{name}.yaml").write_text(yaml.safe_dump(tenant))
    return root


def namespaces(cluster: localcluster.LocalCluster) -> dict[str, bool]:
    """Each namespace of the cluster, and whether it is being deleted."""
    with cluster.connect() as kube:
        return {
            ns.metadata.name: ns.metadata.deletionTimestamp is not None
            for ns in kube.list(Namespace)
            if ns.metadata is not None and ns.metadata.name is not None
        }


def matches(loaded: repository.Repository) -> dict[str, bool]:
    """Whether each cluster already holds exactly what the repository says."""
    return {target.name: plan.empty for target, plan in reconcile.plan_all(loaded)}


def gone_from(cluster: localcluster.LocalCluster, *names: str) -> Callable[[], bool]:
    """A check: none of the namespaces ``names`` exists in ``cluster`` any more."""
    return lambda: not set(names) & set(namespaces(cluster))


def test_a_refused_deletion_in_the_last_cluster_applies_nothing_in_any(
    clusters: list[localcluster.LocalCluster], tmp_path: Path
) -> None:
    staging, _, canary = clusters
    root = write_repo(tmp_path / "repo", clusters, ["alpha", "charlie", "delta"])
    reconcile.apply_all(repository.load(root))
    # A Helm release in delta's namespace, in the canary cluster only (applied last
    # when the clusters went one after another; now at the same time as the others).
    helm.upgrade_install(
        helm.Target(kubeconfig=canary.kubeconfig, namespace="delta"), release="web",
        chart=CHARTS / "rollout", values={"image": f"{REGISTRY}/web:1", "replicas": 1},
        wait=False, timeout_s=60,
    )  # fmt: skip

    # charlie and delta leave, echo arrives: creates in every cluster, deletes in every
    # cluster, one of which the canary cluster must refuse.
    write_repo(root, clusters, ["alpha", "echo"])
    try:
        with pytest.raises(errors.TenantryError, match=rf"{canary.name}/delta \(web\)"):
            reconcile.apply_all(repository.load(root))
        for cluster in clusters:
            found = namespaces(cluster)
            assert "echo" not in found, f"{cluster.name} was applied despite the refusal"
            assert found.get("charlie") is False and found.get("delta") is False, cluster.name
    finally:
        reports = reconcile.apply_all(repository.load(root), force=True)
    # echo's 8 objects (it has no members); 2 namespaces (what is in them goes with them)
    assert [(r.cluster, r.created, r.deleted) for r in reports] == [
        (c.name, 8, 2) for c in clusters
    ]
    for cluster in clusters:
        wait_for(
            gone_from(cluster, "charlie", "delta"), f"charlie and delta gone from {cluster.name}"
        )
    assert matches(repository.load(root)) == {c.name: True for c in clusters}
    assert staging.reachable()


def test_a_failure_in_one_cluster_is_raised_and_the_others_still_finish(
    clusters: list[localcluster.LocalCluster], tmp_path: Path
) -> None:
    staging, primary, canary = clusters
    # In production primary only, foxtrot's deployer binding already exists bound to
    # another role: a RoleBinding's roleRef cannot change, so that apply must fail.
    with primary.connect() as kube:
        kube.apply({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "foxtrot"}})
        kube.apply({
            "apiVersion": "rbac.authorization.k8s.io/v1", "kind": "RoleBinding",
            "metadata": {"name": objects.DEPLOYER_SA, "namespace": "foxtrot"},
            "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole", "name": "view"},
            "subjects": [{"kind": "ServiceAccount", "name": "default", "namespace": "foxtrot"}],
        })  # fmt: skip
    root = write_repo(tmp_path / "repo", clusters, ["alpha", "echo", "foxtrot"])
    loaded = repository.load(root)

    with pytest.raises(errors.InvalidError) as failed:
        reconcile.apply_all(loaded)
    assert failed.value.message.startswith(f"cluster {primary.name}: apply RoleBinding/foxtrot/")
    assert "roleRef" in failed.value.status_message
    assert matches(loaded) == {staging.name: True, primary.name: False, canary.name: True}

    with primary.connect() as kube:
        kube.delete(RoleBinding, objects.DEPLOYER_SA, namespace="foxtrot")
    reconcile.apply_all(loaded)
    assert matches(loaded) == {c.name: True for c in clusters}


def test_the_command_reports_every_cluster_on_lines_of_its_own(
    clusters: list[localcluster.LocalCluster], tmp_path: Path
) -> None:
    root = write_repo(tmp_path / "repo", clusters, ["alpha", "echo", "foxtrot", "golf"])
    expected = []
    for target, plan in reconcile.plan_all(repository.load(root)):
        counts = plan.summary()
        expected.append(
            f"{target.name} ({target.environment}): {counts['create']} create, "
            f"{counts['update']} change, {counts['delete']} delete"
        )
    done = subprocess.run(
        [sys.executable, "-m", "tenantry", "--output", "json", "tenants", "apply", "--repo", str(root)],
        capture_output=True, text=True, check=False, env=dict(os.environ), timeout=300,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert done.stderr.splitlines() == expected  # one whole line per cluster, in order
    reports = json.loads(done.stdout)
    assert [r["cluster"] for r in reports] == [c.name for c in clusters]
    assert matches(repository.load(root)) == {c.name: True for c in clusters}


def cm(name: str, namespace: str, **data: str) -> dict[str, Any]:
    return {"apiVersion": "v1", "kind": "ConfigMap",
            "metadata": {"name": name, "namespace": namespace}, "data": data}  # fmt: skip


def test_the_applier_applies_like_kube_and_refuses_like_it(
    clusters: list[localcluster.LocalCluster],
) -> None:
    cluster = clusters[0]
    endpoint = applier.Endpoint.of(cluster.kubeconfig)
    assert endpoint is not None  # the admin kubeconfig: a client certificate
    bulk = applier.Applier(endpoint)
    with Kube.connect(cluster.kubeconfig) as kube:
        try:
            bulk.apply({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "bulk"}})
            bulk.apply(cm("a", "bulk", k="1"))
            first = kube.get(ConfigMap, "a", namespace="bulk")
            assert first.data == {"k": "1"}
            managers = {m.manager: m.operation for m in first.metadata.managedFields}
            assert managers == {"tenantry": "Apply"}
            bulk.apply(cm("a", "bulk", k="1"))  # the same again: nothing changes
            again = kube.get(ConfigMap, "a", namespace="bulk")
            assert again.metadata.resourceVersion == first.metadata.resourceVersion

            # Another manager's edit of a field tenantry owns is taken back (force).
            kube.client.apply(
                Kube.load(cm("a", "bulk", k="hand")), field_manager="someone", force=True
            )
            bulk.apply(cm("a", "bulk", k="1"))
            assert kube.get(ConfigMap, "a", namespace="bulk").data == {"k": "1"}

            with pytest.raises(errors.NotFoundError, match="apply ConfigMap/nowhere/a"):
                bulk.apply(cm("a", "nowhere"))
            with pytest.raises(errors.InvalidError) as invalid:
                bulk.apply(cm("Not_A_Name", "bulk"))
            assert "metadata.name" in invalid.value.status_message
            # An unknown field: the API server's answer (a 500, as it happens), classified
            # exactly as through lightkube.
            unknown = {**cm("b", "bulk"), "spec": {"unknown": True}}
            with pytest.raises(errors.KubeError) as by_kube:
                kube.apply(unknown)
            with pytest.raises(errors.KubeError) as by_bulk:
                bulk.apply(unknown)
            assert type(by_bulk.value) is type(by_kube.value)
            assert by_bulk.value.message == by_kube.value.message
            assert "field not declared in schema" in by_bulk.value.status_message

            assert bulk.delete(ConfigMap, "a", namespace="bulk") is True
            assert bulk.delete(ConfigMap, "a", namespace="bulk") is False
        finally:
            kube.delete(Namespace, "bulk")
            bulk.close()


def test_the_applier_reconnects_after_the_api_server_restarts(
    clusters: list[localcluster.LocalCluster],
) -> None:
    cluster = clusters[2]
    endpoint = applier.Endpoint.of(cluster.kubeconfig)
    assert endpoint is not None
    bulk = applier.Applier(endpoint)
    try:
        bulk.apply(cm("before", "default"))  # opens and keeps the connection
        localcluster.restart_component(cluster.name, "kube-apiserver")
        bulk.apply(cm("after", "default"))  # the kept one is dead: a new one is opened
        with cluster.connect() as kube:
            assert kube.get(ConfigMap, "after", namespace="default")
            kube.delete(ConfigMap, "before", namespace="default")
            kube.delete(ConfigMap, "after", namespace="default")
    finally:
        bulk.close()
