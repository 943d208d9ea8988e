"""The local platform's monitoring: Prometheus (the pinned build, with Kubernetes
discovery), Alertmanager (Debian's package), the log shipper (otelcol-tenantry) and the
stand-in receivers, on loopback, with the configuration Tenantry generates.

Everything lives under ``<state dir>/monitoring/``: ``config/`` (written by
`tenantry.monitoring.files`, swapped whole), ``data/`` (each server's storage),
``ports.json`` (so a later `apply` in another shell points the configuration at the
same servers) and ``pods/`` (where the local clusters' container logs would be: kwok
runs no containers, so demo lines are written there in the Kubernetes log layout).
Each process is started and stopped by pid (`tenantry.processes`).

Clusters with real nodes run real pods: `watch_cluster` makes Prometheus discover them
through the cluster's API (as a read-only identity, `tenantry.monitoring.discovery`)
and the log shipper tail the files their kubelets write. What it needs is kept in
``clusters/<name>/`` (the CA, the token — both 0600 — and ``access.json``); every
`start` and `apply` asks for a fresh token and forgets clusters that were deleted.
"""

from __future__ import annotations

import json
import os
import re
import secrets as tokens
import shutil
import signal
import sys
from collections.abc import Collection, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path

import httpx2

from tenantry import errors, paths, processes
from tenantry.kube import localcluster, realnode, realnodes
from tenantry.monitoring import discovery, files
from tenantry.observability import config, logs, pods
from tenantry.observability.problems import Problem
from tenantry.spec.repository import Repository
from tenantry.tools import install

PROMETHEUS, ALERTMANAGER, RECEIVERS, COLLECTOR = (
    "prometheus", "alertmanager", "receivers", "otelcol",
)  # fmt: skip
NAMES = (RECEIVERS, ALERTMANAGER, PROMETHEUS, COLLECTOR)  # start order


@dataclass(frozen=True)
class Ports:
    """The loopback ports of the monitoring processes."""

    prometheus: int
    alertmanager: int
    receivers: int
    smtp: int
    collector_health: int

    @classmethod
    def allocate(cls) -> Ports:
        """Fresh free ports."""
        return cls(*(processes.free_port() for _ in range(5)))


@dataclass(frozen=True)
class Stack:
    """Where the running monitoring answers."""

    prometheus: str
    alertmanager: str
    receivers: str
    smtp: str
    config_dir: str
    pod_logs: str


def root() -> Path:
    """The monitoring state directory."""
    return paths.state_dir() / "monitoring"


def saved_ports() -> Ports | None:
    """The ports `start` chose, if it ran."""
    try:
        return Ports(**json.loads((root() / "ports.json").read_text()))
    except (OSError, ValueError, TypeError):
        return None


def ensure_ports() -> Ports:
    """The saved ports, or fresh ones saved for the next command."""
    ports = saved_ports()
    if ports is None:
        ports = Ports.allocate()
        root().mkdir(parents=True, exist_ok=True)
        (root() / "ports.json").write_text(json.dumps(asdict(ports)))
    return ports


def _hec_token() -> str:
    """The local HEC token (the receivers accept only it); made once, kept 0600."""
    path = root() / "hec-token"
    if not path.exists():
        path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "w") as out:
            out.write(tokens.token_hex(16))
    return path.read_text().strip()


def settings(ports: Ports, *, platform_targets: Sequence[str] = (), hold: str | None = "5s",
             interval: str = "1s") -> config.Settings:  # fmt: skip
    """The configuration of the local stack: everything on loopback, alerts in seconds;
    the clusters `watch_cluster` added are discovered and their pods' logs shipped."""
    watched = watched_clusters()
    return config.Settings(
        alertmanagers=[f"127.0.0.1:{ports.alertmanager}"],
        platform_targets=list(platform_targets),
        smtp_smarthost=f"127.0.0.1:{ports.smtp}",
        pagerduty_url=f"http://127.0.0.1:{ports.receivers}/v2/enqueue",
        group_wait="1s",
        group_interval="10s",
        interval=interval,
        hold=hold,
        shipper=logs.Shipper(
            hec_endpoint=f"http://127.0.0.1:{ports.receivers}/services/collector",
            storage_dir=str(root() / "data" / "otelcol"),
            health_port=ports.collector_health,
            log_glob=str(root() / "pods" / "*" / "*" / "*.log"),
            nodes=tuple(node for w in watched for node in w.nodes),
        ),
        clusters=[w.access for w in watched],
    )


@dataclass(frozen=True)
class Watched:
    """A cluster whose pods really run: how Prometheus reaches its API, where its
    kubelets write pod logs."""

    access: pods.ClusterAccess
    nodes: tuple[logs.NodeLogs, ...]


def _clusters_dir() -> Path:
    return root() / "clusters"


def watched_clusters() -> list[Watched]:
    """The clusters `watch_cluster` added (and `refresh_clusters` kept), by name."""
    found = []
    for record in sorted(_clusters_dir().glob("*/access.json")):
        try:
            saved = json.loads(record.read_text())
            access = pods.ClusterAccess(**saved["access"])
            nodes = tuple(logs.NodeLogs(access.cluster, d) for d in saved["pod_logs_dirs"])
        except (OSError, ValueError, TypeError, KeyError):
            continue  # half-written by a crashed command: the next watch or refresh rewrites it
        found.append(Watched(access, nodes))
    return found


def _pod_logs_dirs(cluster: localcluster.LocalCluster) -> list[str]:
    """Each real node's ``podLogsDir`` (the subnet does not place any file)."""
    return [
        str(realnode.RealNode(cluster.name, int(d.name), d, realnode.POD_RANGE).pod_logs_dir)
        for d in realnodes.node_dirs(cluster.workdir)
    ]


def _grant(cluster: localcluster.LocalCluster, namespace: str) -> Watched:
    """Apply the discovery identity in ``cluster``, write its token and CA, record it."""
    with cluster.connect() as kube:
        token = discovery.grant(kube, namespace)
    directory = _clusters_dir() / cluster.name
    # Only the cluster's real nodes run pods; its kwok nodes' pod IPs answer nobody.
    access = discovery.write_access(
        directory, cluster=cluster.name, api_server=cluster.server,
        ca_pem=cluster.ca_file.read_bytes(), token=token,
        node_pattern=f"{re.escape(cluster.name)}-real-[0-9]+",
    )  # fmt: skip
    dirs = _pod_logs_dirs(cluster)
    record = {"access": asdict(access), "pod_logs_dirs": dirs}
    tmp = directory / ".access.json.tmp"
    tmp.write_text(json.dumps(record, indent=2))
    tmp.replace(directory / "access.json")
    return Watched(access, tuple(logs.NodeLogs(cluster.name, d) for d in dirs))


def watch_cluster(repo: Repository, name: str) -> Watched:
    """Have the monitoring stack discover the pods of local cluster ``name`` and ship
    their logs, from the next `start` or `apply` on (the discovery identity lives in
    the platform's monitoring namespace). A kwok-only cluster is refused: its pods run
    nothing, and today's file targets cover it."""
    cluster = localcluster.get(name)
    if not realnodes.node_dirs(cluster.workdir):
        raise errors.UsageError(
            f"local cluster {name!r} has no real nodes: its pods run nothing to scrape",
            fix=f"create it with `tenantry cluster create {name} --real-nodes 1`",
        )
    return _grant(cluster, repo.platform.platform_namespaces.monitoring)


def watch_real_clusters(repo: Repository, names: Sequence[str]) -> list[Watched]:
    """`watch_cluster` for each of the local clusters ``names`` that has real nodes;
    kwok-only and missing ones are left to the file targets, as before. What `tenantry
    up` calls with its clusters before `start`."""
    found = []
    for name in names:
        try:
            cluster = localcluster.get(name)
        except errors.ClusterNotFoundError:
            continue
        if realnodes.node_dirs(cluster.workdir):
            found.append(_grant(cluster, repo.platform.platform_namespaces.monitoring))
    return found


def refresh_clusters(repo: Repository) -> list[Watched]:
    """A fresh token for every watched cluster that still exists and answers (a stopped
    one keeps its token, and is discovered again once it runs); forget deleted ones."""
    namespace = repo.platform.platform_namespaces.monitoring
    kept = []
    for watched in watched_clusters():
        try:
            cluster = localcluster.get(watched.access.cluster)
        except errors.ClusterNotFoundError:
            shutil.rmtree(_clusters_dir() / watched.access.cluster, ignore_errors=True)
            continue
        kept.append(_grant(cluster, namespace) if cluster.reachable() else watched)
    return kept


def _binary(name: str, package: str) -> str:
    found = shutil.which(name)
    if found is None:
        raise errors.ToolMissingError(f"{name} is not installed", fix=f"apt-get install {package}")
    return found


def start(
    repo: Repository,
    *,
    secret_values: dict[str, str],
    secret_problems: list[Problem],
    platform_targets: Sequence[str] = (),
    tuned: config.Settings | None = None,
) -> tuple[Stack, files.Rendered]:
    """Render the configuration and start (or reload) every monitoring process;
    ``tuned`` replaces the local settings (benchmarks make alerts faster still)."""
    ports = ensure_ports()
    already = {name for name in NAMES if processes.running(name)}
    (root() / "pods").mkdir(exist_ok=True)
    refresh_clusters(repo)
    token = _hec_token()
    config = root() / "config"
    rendered = files.write(
        repo, config, tuned or settings(ports, platform_targets=platform_targets),
        secret_values=secret_values, secret_problems=secret_problems,
    )  # fmt: skip
    data = root() / "data"
    start_receivers(ports)
    processes.start(ALERTMANAGER, [
        _binary("prometheus-alertmanager", "prometheus-alertmanager"),
        f"--config.file={config / 'alertmanager.yml'}",
        f"--storage.path={data / 'alertmanager'}",
        f"--web.listen-address=127.0.0.1:{ports.alertmanager}",
        "--cluster.listen-address=",  # one instance: no gossip port
    ], port=ports.alertmanager)  # fmt: skip
    processes.start(PROMETHEUS, [
        # The pinned build: Debian's has no Kubernetes discovery (real pods need it).
        str(install.binary("prometheus")),
        f"--config.file={config / 'prometheus.yml'}",
        f"--storage.tsdb.path={data / 'prometheus'}",
        f"--web.listen-address=127.0.0.1:{ports.prometheus}",
        "--web.enable-lifecycle",  # POST /-/reload after `monitoring apply`
        "--enable-feature=extra-scrape-metrics",  # scrape_sample_limit, for the platform alert
        "--rules.alert.resend-delay=1s",
    ], port=ports.prometheus)  # fmt: skip
    processes.start(COLLECTOR, [
        str(install.binary("otelcol-tenantry")), "--config", str(config / "collector.yaml"),
    ], port=ports.collector_health, env={logs.TOKEN_ENV: token})  # fmt: skip
    reload(already)  # new processes read the new configuration as they start
    return stack(ports), rendered


def start_receivers(ports: Ports) -> None:
    """Start the stand-in receivers (they keep what arrived across restarts)."""
    processes.start(RECEIVERS, [
        sys.executable, "-m", "tenantry.local.receivers", "--dir", str(root() / "received"),
        "--http-port", str(ports.receivers), "--smtp-port", str(ports.smtp),
        "--hec-token-file", str(root() / "hec-token"),
    ], port=ports.receivers)  # fmt: skip


def stack(ports: Ports) -> Stack:
    """The addresses of the stack on ``ports``."""
    return Stack(
        prometheus=f"http://127.0.0.1:{ports.prometheus}",
        alertmanager=f"http://127.0.0.1:{ports.alertmanager}",
        receivers=f"http://127.0.0.1:{ports.receivers}",
        smtp=f"127.0.0.1:{ports.smtp}",
        config_dir=str(root() / "config"),
        pod_logs=str(root() / "pods"),
    )


def running() -> Stack | None:
    """The running stack, if `start` left one."""
    ports = saved_ports()
    if ports is None or not all(processes.running(n) for n in NAMES):
        return None
    return stack(ports)


def post_alert(labels: dict[str, str], summary: str) -> bool:
    """Post one alert to the running Alertmanager, as Prometheus would, so it takes the
    real routes; False when no stack runs."""
    stack = running()
    if stack is None:
        return False
    alert = {"labels": labels, "annotations": {"summary": summary}}
    httpx2.post(f"{stack.alertmanager}/api/v2/alerts", json=[alert], timeout=10).raise_for_status()
    return True


def reload(names: Collection[str] = NAMES) -> None:
    """Make the running servers among ``names`` read their configuration again."""
    for name in (PROMETHEUS, ALERTMANAGER):
        process = processes.running(name) if name in names else None
        if process is not None:
            httpx2.post(f"{process.endpoint}/-/reload", timeout=30).raise_for_status()
    collector = processes.running(COLLECTOR) if COLLECTOR in names else None
    if collector is not None:
        os.kill(collector.pid, signal.SIGHUP)  # the collector reloads its file on SIGHUP


def apply(
    repo: Repository,
    *,
    secret_values: dict[str, str],
    secret_problems: list[Problem],
    platform_targets: Sequence[str] = (),
) -> files.Rendered:
    """Render the configuration for the running stack and reload it."""
    ports = saved_ports()
    if ports is None or running() is None:
        raise errors.TenantryError(
            "no local monitoring stack is running",
            fix="start it with `tenantry up`, or write files with `tenantry monitoring render`",
        )
    refresh_clusters(repo)
    rendered = files.write(
        repo, root() / "config", settings(ports, platform_targets=platform_targets),
        secret_values=secret_values, secret_problems=secret_problems,
    )  # fmt: skip
    reload()
    return rendered


def stop(*, forget: bool = False) -> list[str]:
    """Stop every monitoring process (by pid); the names of those that ran. ``forget``
    also removes the stack's data, configuration and what the receivers got."""
    stopped = [name for name in reversed(NAMES) if processes.stop(name)]
    if forget:
        shutil.rmtree(root(), ignore_errors=True)
    return stopped
