"""Local clusters are listed, reachable, and deleted completely, twice safely."""

from __future__ import annotations

from pathlib import Path

from lightkube.resources.core_v1 import Node

from tenantry import processes
from tenantry.kube import localcluster
from tenantry.kube.client import Kube


def test_session_cluster_is_listed_reachable_and_has_ready_nodes(
    cluster: localcluster.LocalCluster, admin: Kube
) -> None:
    assert cluster.name in [c.name for c in localcluster.list_clusters()]
    assert cluster.reachable()
    assert cluster.server.startswith("https://127.0.0.1:")
    nodes = admin.list(Node)
    assert len(nodes) == 3
    for node in nodes:
        assert node.status is not None and node.status.allocatable == {
            "cpu": "8",
            "memory": "32Gi",
            "pods": "110",
        }


def test_second_cluster_runs_beside_the_first_and_delete_is_idempotent(
    cluster: localcluster.LocalCluster, state_dir: Path
) -> None:
    other = localcluster.create(f"{cluster.name}-b", nodes=1)
    try:
        assert other.server != cluster.server
        assert other.reachable() and cluster.reachable()
        pids = [int(p.read_text()) for p in (other.workdir / "pids").glob("*.pid")]
        assert len(pids) >= 5  # etcd, apiserver, controller-manager, scheduler, kwok
    finally:
        assert localcluster.delete(other.name) is True
    assert localcluster.delete(other.name) is False
    assert not other.workdir.exists()
    for pid in pids:
        assert not processes.alive(pid), f"process {pid} of the deleted cluster runs"
    assert cluster.reachable()
