"""The local platform: three real clusters (staging, production primary and canary), the
local S3/SQS server with the platform's bucket and queues, a deployer worker, and the
monitoring stack (Prometheus, Alertmanager, the log shipper, stand-in receivers).

`tenantry up` is the one command that brings everything up; `tenantry down` stops
every process it started, by pid, and removes the clusters.

Each cluster gets the real nodes platform.yaml's ``realNodes`` asks for (unset: one where
this machine can run containers, so the services' pods really run and production's live
traffic reaches them; none elsewhere, and `up` says why). A cluster that already exists
keeps the nodes it was made with.

The clusters' API servers accept the people's own bearer tokens
(`tenantry.local.people`), so the Tenantry server's TokenReview and RBAC see real
user names. kube-apiserver reads its token file only when it starts, so `up`
restarts a running cluster whose API server started with an older file (someone
new in the repository); a cluster created before people had tokens is refused with
the fix (`tenantry down`, then `tenantry up`) rather than silently left without them.
"""

from __future__ import annotations

import os
import secrets as tokens
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from tenantry import aws, errors, paths, processes
from tenantry.artifacts import oci
from tenantry.aws import wiring
from tenantry.kube import localcluster, realnodes
from tenantry.kube.client import Kube
from tenantry.local import awsserver, monitoring, people, registry
from tenantry.local import server as local_server
from tenantry.local import traffic as local_traffic
from tenantry.monitoring import secret_store
from tenantry.observability import secrets
from tenantry.observability.problems import Problem
from tenantry.spec import models, repository
from tenantry.spec.repository import Repository
from tenantry.tenancy import reconcile
from tenantry.verify import run as verification

# The clusters of the local platform, in start order: staging is needed first.
CLUSTERS: tuple[str, ...] = ("staging", "prod-primary", "prod-canary")

Action = Literal["created", "started", "restarted", "running", "deleted", "absent"]


@dataclass(frozen=True)
class ClusterReport:
    """What `up`, `down` or `status` did or found for one cluster."""

    name: str
    action: Action
    reachable: bool
    server: str
    kubeconfig: str
    seconds: float
    real_nodes: int = 0


def _report(cluster: localcluster.LocalCluster, action: Action, started: float) -> ClusterReport:
    return ClusterReport(
        name=cluster.name,
        action=action,
        reachable=cluster.reachable(),
        server=cluster.server,
        kubeconfig=str(cluster.kubeconfig),
        seconds=round(time.monotonic() - started, 1),
        real_nodes=len(localcluster.real_node_names(cluster)),
    )


def real_nodes(repo: Repository) -> tuple[dict[str, int], str | None]:
    """How many real nodes each platform cluster gets, and why none where the machine
    cannot run containers (None when it can). A cluster whose ``realNodes`` asks for some
    on such a machine is an error: `RealNodeUnsupportedError`, with the fix."""
    asked = {c.local: c.real_nodes for e in repo.platform.environments for c in e.clusters
             if c.local in CLUSTERS}  # fmt: skip
    try:
        realnodes.preflight()
        reason = None
    except errors.RealNodeUnsupportedError as e:
        if any(asked.get(name) for name in CLUSTERS):
            raise
        reason = e.message + (f" ({e.fix})" if e.fix else "")
    default = 0 if reason else 1
    counts = {name: default if asked.get(name) is None else int(asked[name] or 0)
              for name in CLUSTERS}  # fmt: skip
    return counts, reason


def _check_token_file(cluster: localcluster.LocalCluster, token_file: Path) -> None:
    used = cluster.token_file
    if used is not None and used.resolve() == token_file.resolve():
        return
    how = f"reads people's tokens from {used}" if used else "was created without people's tokens"
    raise errors.ClusterError(
        f"local cluster {cluster.name!r} {how}, not {token_file}: people's own tokens "
        "would not work there",
        fix="recreate the platform: `tenantry down`, then `tenantry up`",
    )


def up(
    *,
    repo_root: Path,
    nodes: int = 3,
    on_start: Callable[[str], None] | None = None,
    on_restart: Callable[[str], None] | None = None,
    on_progress: Callable[[str], None] | None = None,
) -> list[ClusterReport]:
    """Bring every local cluster up: create what is missing, restart what is stopped.

    First gives everyone ``repo_root``'s repository names a token (`people.ensure`);
    every cluster's API server accepts them. A running cluster whose API server read
    an older token file is restarted (``on_restart``) so new people's tokens work. A new
    cluster gets its real nodes (`real_nodes`; ``on_progress`` hears how they start).
    """
    loaded = repository.load(repo_root)
    counts, _ = real_nodes(loaded)
    token_file = people.ensure(loaded).token_file
    reports = []
    existing = {c.name: c for c in localcluster.list_clusters() if c.name in CLUSTERS}
    # Every cluster is checked before any is touched: refuse all or nothing.
    for found in existing.values():
        _check_token_file(found, token_file)
    for name in CLUSTERS:
        started = time.monotonic()
        cluster = existing.get(name)
        if cluster is not None and cluster.reachable():
            if not cluster.token_file_changed():
                reports.append(_report(cluster, "running", started))
                continue
            if on_restart:
                on_restart(name)
            cluster = localcluster.restart(name)
            reports.append(_report(cluster, "restarted", started))
            continue
        if on_start:
            on_start(name)
        if cluster is not None:
            cluster = localcluster.start(name)
            action: Action = "started"
        else:
            cluster = localcluster.create(
                name, nodes=nodes, token_file=token_file, real_nodes=counts[name],
                on_progress=on_progress,
            )  # fmt: skip
            action = "created"
        reports.append(_report(cluster, action, started))
    return reports


@dataclass(frozen=True)
class Services:
    """The local platform's processes besides the clusters."""

    store: str  # the chart store and how releases reach the deployer, in words
    server: str
    workers: tuple[str, ...]


def start_services(repo_root: Path) -> Services | None:
    """Start the chart store — the S3/SQS server with the bucket and queues wired, or
    the OCI registry over TLS whose push notifications go to the server — and the
    Tenantry server and its two workers (deployers that also carry out production
    operations).

    Only for a platform repository whose charts live on this machine
    (``artifacts.endpoint: local`` or ``artifacts.registry: local``); None for any other.
    """
    loaded = repository.load(repo_root)
    artifacts, queue = loaded.platform.artifacts, loaded.platform.queue
    in_registry = isinstance(artifacts, models.OciArtifacts) and artifacts.registry == oci.LOCAL
    if isinstance(artifacts, models.Artifacts) and queue and artifacts.endpoint == "local":
        aws_server = awsserver.start()
        wiring.setup(aws.clients(loaded.platform), loaded.platform)
        store = (f"S3/SQS server {aws_server.endpoint} (bucket {artifacts.bucket}, "
                 f"queue {queue.name})")  # fmt: skip
    elif not in_registry:
        return None
    # The server before the registry (whose notifications go to it), the registry before
    # the workers (which resolve `registry: local` when they start).
    url = local_server.start(loaded.root) if loaded.platform.server is not None else ""
    if isinstance(artifacts, models.OciArtifacts):
        # The server proves the registry by this secret (`registry.endpoint` hands it
        # to the server when platform.yaml names none).
        secret = registry.events_secret_file().read_text().strip()
        found = registry.start(notify_url=f"{url}/api/v1/events/registry" if url else None,
                               notify_secret=secret if url else None)  # fmt: skip
        store = (f"OCI registry https://{found.address} (charts under "
                 f"oci://{found.address}/{artifacts.prefix}/, CA {found.ca_file}); its "
                 "push notifications go to the server")  # fmt: skip
    workers = local_server.start_workers(loaded.root)
    return Services(store, url, tuple(f"{w.endpoint}/metrics" for w in workers))


def secrets_cluster(repo: Repository) -> reconcile.ClusterTarget:
    """Where receiver secrets are read: the platform's first cluster."""
    environment = repo.platform.environments[0]
    return reconcile.resolve(environment.clusters[0], environment.name, repo.root)


def receiver_secrets(repo: Repository, *, seed_local: bool) -> tuple[dict[str, str], list[Problem]]:
    """Read the receivers' secrets from the platform's monitoring namespace. With
    ``seed_local``, first store the local stand-in receivers' addresses in any secret
    that does not exist yet (the local platform has no real Slack or PagerDuty)."""
    namespace = repo.platform.platform_namespaces.monitoring
    wanted = secrets.needs(repo)
    with secrets_cluster(repo).connect() as kube:
        if seed_local:
            _seed_local_secrets(kube, namespace, wanted, monitoring.ensure_ports())
        return secrets.resolve(wanted, secret_store.cluster_reader(kube, namespace))


def _seed_local_secrets(
    kube: Kube, namespace: str, wanted: list[secrets.Need], ports: monitoring.Ports
) -> None:
    kube.apply({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": namespace}})
    read = secret_store.cluster_reader(kube, namespace)
    for need in wanted:
        if read(need.ref) is not None:
            continue
        value = (
            f"http://127.0.0.1:{ports.receivers}/slack/{need.owner}"
            if need.kind == "slack"
            else tokens.token_hex(16)
        )
        kube.apply({
            "apiVersion": "v1", "kind": "Secret",
            "metadata": {"name": need.ref.name, "namespace": namespace,
                         "labels": {"tenantry.dev/local-receiver": "true"}},
            "stringData": {need.ref.key: value},
        })  # fmt: skip


def platform_targets(repo: Repository) -> list[str]:
    """``host:port`` of the platform's own metrics: the workers, HAProxy, the demo apps."""
    workers = [processes.running(name) for name in local_server.WORKERS]
    own = [f"127.0.0.1:{w.port}" for w in workers if w is not None]
    return own + local_traffic.scrape_targets(repo)


def start_traffic(repo_root: Path) -> list[tuple[str, int]]:
    """Start HAProxy and each production cluster's ingress (the cluster ingress over real
    pods where the cluster has real nodes, demo apps elsewhere); each route's name and
    front port."""
    loaded = repository.load(repo_root)
    if local_traffic.start(loaded) is None:
        return []
    return [(route.name, port) for route, port in local_traffic.routes(loaded)]


def start_monitoring(repo_root: Path) -> monitoring.Stack:
    """Start Prometheus, Alertmanager, the log shipper and the stand-in receivers; the
    pods of the clusters with real nodes are discovered through their APIs (their own
    metrics: the canary's latency, a service's SLOs)."""
    loaded = repository.load(repo_root)
    for cluster in localcluster.list_clusters():
        if cluster.name in CLUSTERS and localcluster.real_node_names(cluster):
            monitoring.watch_cluster(loaded, cluster.name)
    values, problems = receiver_secrets(loaded, seed_local=True)
    stack, rendered = monitoring.start(
        loaded, secret_values=values, secret_problems=problems,
        platform_targets=platform_targets(loaded),
    )  # fmt: skip
    for problem in rendered.problems:
        sys.stderr.write(f"monitoring: skipped: {problem}\n")
    return stack


def down() -> list[ClusterReport]:
    """Stop the monitoring stack, the deployer and the S3/SQS server, remove every cluster
    of the platform, and reset the local ledger: what it records happened on clusters
    that no longer exist."""
    monitoring.stop(forget=True)
    local_traffic.stop()
    local_server.stop()
    awsserver.stop()
    registry.stop(forget=True)
    if not os.environ.get("TENANTRY_DATABASE_URL"):
        for suffix in ("", "-wal", "-shm"):
            (paths.state_dir() / f"ledger.sqlite{suffix}").unlink(missing_ok=True)
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
