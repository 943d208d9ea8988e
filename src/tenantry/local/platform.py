"""The local platform: three real clusters (staging, production primary and canary).

Later parts of the platform (S3/SQS server, deployer, monitoring) join here, so
`tenantry up` stays the one command that brings everything up.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Literal

from tenantry.kube import localcluster
from tenantry.verify import run as verification

# The clusters of the local platform, in start order: staging is needed first.
CLUSTERS: tuple[str, ...] = ("staging", "prod-primary", "prod-canary")

Action = Literal["created", "started", "running", "deleted", "absent"]


@dataclass(frozen=True)
class ClusterReport:
    """What `up`, `down` or `status` did or found for one cluster."""

    name: str
    action: Action
    reachable: bool
    server: str
    kubeconfig: str
    seconds: float


def _report(cluster: localcluster.LocalCluster, action: Action, started: float) -> ClusterReport:
    return ClusterReport(
        name=cluster.name,
        action=action,
        reachable=cluster.reachable(),
        server=cluster.server,
        kubeconfig=str(cluster.kubeconfig),
        seconds=round(time.monotonic() - started, 1),
    )


def up(*, nodes: int = 3, on_start: Callable[[str], None] | None = None) -> list[ClusterReport]:
    """Bring every local cluster up: create what is missing, restart what is stopped."""
    reports = []
    existing = {c.name: c for c in localcluster.list_clusters()}
    for name in CLUSTERS:
        started = time.monotonic()
        cluster = existing.get(name)
        if cluster is not None and cluster.reachable():
            reports.append(_report(cluster, "running", started))
            continue
        if on_start:
            on_start(name)
        if cluster is not None:
            cluster = localcluster.start(name)
            action: Action = "started"
        else:
            cluster = localcluster.create(name, nodes=nodes)
            action = "created"
        reports.append(_report(cluster, action, started))
    return reports


def down() -> list[ClusterReport]:
    """Stop and remove every local platform cluster and the verification cluster."""
    reports = []
    for name in (*CLUSTERS, verification.WARM_CLUSTER):
        started = time.monotonic()
        removed = localcluster.delete(name)
        reports.append(
            ClusterReport(
                name=name,
                action="deleted" if removed else "absent",
                reachable=False,
                server="",
                kubeconfig="",
                seconds=round(time.monotonic() - started, 1),
            )
        )
    return reports


def status() -> list[ClusterReport]:
    """Each local platform cluster and whether its API server answers."""
    existing = {c.name: c for c in localcluster.list_clusters()}
    reports = []
    for name in CLUSTERS:
        cluster = existing.get(name)
        if cluster is None:
            reports.append(ClusterReport(name, "absent", False, "", "", 0.0))
        else:
            reports.append(_report(cluster, "running", time.monotonic()))
    return reports
