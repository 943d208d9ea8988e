"""The local platform's live traffic: each production cluster's ingress, HAProxy in front
of them (one frontend port per service), and the failover watcher (`tenantry traffic
watch`). Ports are chosen once and kept in ``<state dir>/traffic/ports.json`` so every
command finds the same router; every process is stopped by its pid.

A cluster's ingress for a service is, on a cluster with real nodes, the cluster ingress
(`tenantry.traffic.ingress`, run by ``tenantry traffic ingress``): an HAProxy whose
backends are the service's ready pods, from the cluster's EndpointSlices — live traffic
reaches real pods. A kwok-only cluster runs no containers, so there it is a demo app
(`tenantry.local.demoapp`) per service that stands in for the pods.

`Provider` is how the rest of Tenantry reaches all this: the `tenantry.traffic.wiring`
provider for environments on local clusters, registered by `tenantry.local.plugin`.
"""

from __future__ import annotations

import json
import shutil
import sys
from pathlib import Path

import httpx2

from tenantry import errors, paths, processes
from tenantry.kube import localcluster
from tenantry.local import monitoring
from tenantry.spec import models
from tenantry.spec.repository import Repository, ServiceSource
from tenantry.traffic.haproxy import HAProxy
from tenantry.traffic.router import Endpoint, Route
from tenantry.traffic.wiring import route_name

PRODUCTION = "production"
WATCHER = "traffic-watch"


def _dir() -> Path:
    return paths.state_dir() / "traffic"


def _ports(names: list[str]) -> dict[str, int]:
    path = _dir() / "ports.json"
    try:
        saved: dict[str, int] = json.loads(path.read_text())
    except (OSError, ValueError):
        saved = {}
    missing = [n for n in names if n not in saved]
    if missing:
        saved.update({n: processes.free_port() for n in missing})
        _dir().mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(saved))
    return saved


def routes(repo: Repository) -> list[tuple[Route, int]]:
    """Each descriptor service's route over the production clusters, with its front port."""
    production = [e for e in repo.platform.environments if e.name == PRODUCTION]
    if repo.platform.traffic is None or not production:
        return []
    clusters = production[0].clusters
    services = [s for s in repo.services if s.descriptor is not None]
    names = ["stats"] + [f"front:{route_name(s)}" for s in services] + [
        f"app:{route_name(s)}:{c.name}" for s in services for c in clusters
    ]  # fmt: skip
    ports = _ports(names)
    found = []
    for service in services:
        name = route_name(service)
        endpoints = tuple(
            Endpoint(c.name, c.role, c.ingress or f"127.0.0.1:{ports[f'app:{name}:{c.name}']}")
            for c in clusters
        )
        found.append((Route(name, endpoints), ports[f"front:{name}"]))
    return found


def route_for(repo: Repository, service: ServiceSource) -> tuple[Route, int]:
    """The service's route and front port; `UsageError` when it has none."""
    name = route_name(service)
    for route, port in routes(repo):
        if route.name == name:
            return route, port
    raise errors.UsageError(
        f"{service.ref} has no route for live traffic",
        fix="add a traffic section to platform.yaml; describe the service with service.yaml",
    )


def router(repo: Repository) -> HAProxy:
    """The local HAProxy for the repository's routes (not started)."""
    ports = _ports(["stats"])
    return HAProxy.on_loopback(_dir() / "haproxy", routes(repo), stats_port=ports["stats"])


def _app_process(route: Route, cluster: str) -> str:
    return f"demo-{route.name}-{cluster}"


def _controller_process(cluster: str) -> str:
    return f"ingress-controller-{cluster}"


def has_real_nodes(cluster: models.ClusterRef) -> bool:
    """Whether ``cluster`` is a local cluster with real nodes (its pods really run)."""
    if cluster.local is None:
        return False
    try:
        return bool(localcluster.real_node_names(localcluster.get(cluster.local)))
    except errors.ClusterNotFoundError:
        return False


def _production(repo: Repository) -> list[models.ClusterRef]:
    found = [e for e in repo.platform.environments if e.name == PRODUCTION]
    return list(found[0].clusters) if found else []


def _start_ingress(repo: Repository, cluster: models.ClusterRef,
                   found: list[tuple[Route, int]]) -> None:  # fmt: skip
    """The cluster ingress of ``cluster``: its controller starts its HAProxy."""
    listen = []
    for route, _ in found:
        (endpoint,) = [e for e in route.endpoints if e.cluster == cluster.name]
        listen += ["--listen", f"{route.name}={endpoint.address.rsplit(':', 1)[1]}"]
    ports = _ports([f"ingress-stats:{cluster.name}", f"ingress-health:{cluster.name}"])
    health = ports[f"ingress-health:{cluster.name}"]
    processes.start(_controller_process(cluster.name), [
        sys.executable, "-m", "tenantry", "traffic", "ingress", "--cluster", cluster.name,
        *listen, "--stats-port", str(ports[f"ingress-stats:{cluster.name}"]),
        "--dir", str(_dir() / f"ingress-{cluster.name}"), "--port", str(health),
        "--repo", str(repo.root),
    ], port=health)  # fmt: skip


def start(repo: Repository) -> HAProxy | None:
    """Start each production cluster's ingress (the cluster ingress over real pods, or demo
    apps on a kwok-only cluster) and HAProxy; None when the platform has no traffic
    section."""
    found = routes(repo)
    if not found:
        return None
    real = {c.name for c in _production(repo) if has_real_nodes(c)}
    for cluster in _production(repo):
        if cluster.name in real:
            _start_ingress(repo, cluster, found)
    for route, _ in found:
        service = next(s for s in repo.services if route_name(s) == route.name)
        assert service.descriptor is not None
        for endpoint in route.endpoints:
            if endpoint.cluster in real:
                continue
            port = int(endpoint.address.rsplit(":", 1)[1])
            processes.start(_app_process(route, endpoint.cluster), [
                sys.executable, "-m", "tenantry.local.demoapp", "--port", str(port),
                "--service", service.name, "--cluster", endpoint.cluster,
                "--version", service.descriptor.version,
            ], port=port)  # fmt: skip
    haproxy = router(repo)
    haproxy.start()
    haproxy.apply_wanted()
    port = _ports(["watch"])["watch"]
    processes.start(WATCHER, [
        sys.executable, "-m", "tenantry", "traffic", "watch", "--repo", str(repo.root),
        "--port", str(port),
    ], port=port)  # fmt: skip
    return haproxy


def scrape_targets(repo: Repository) -> list[str]:
    """``host:port`` of HAProxy's exporter and every demo app, for Prometheus (real pods
    are found by Prometheus itself)."""
    found = routes(repo)
    if not found:
        return []
    real = {c.name for c in _production(repo) if has_real_nodes(c)}
    apps = [e.address for route, _ in found for e in route.endpoints if e.cluster not in real]
    return [f"127.0.0.1:{_ports(['stats'])['stats']}", *apps]


def set_version(route: Route, cluster: str, version: str) -> None:
    """What a deploy does to a real ingress: the demo app now serves ``version``. Nothing
    on a cluster whose ingress is the cluster ingress: its pods serve what it runs."""
    if processes.running(_controller_process(cluster)) is not None:
        return
    process = processes.running(_app_process(route, cluster))
    if process is None:
        raise errors.TenantryError(f"the demo app of {route.name} on {cluster} is not running",
                                   fix="start the local platform with `tenantry up`")  # fmt: skip
    httpx2.post(
        f"{process.endpoint}/admin", json={"version": version}, timeout=5
    ).raise_for_status()


def stop() -> None:
    """Stop HAProxy, the cluster ingresses and every demo app (by pid), and forget the
    ports."""
    processes.stop(WATCHER)
    processes.stop("haproxy")
    # Controllers first, so none is left to act on an ingress that is gone.
    for pattern in ("ingress-controller-*", "ingress-*", "demo-*"):
        for entry in sorted(paths.state_dir().glob(pattern)):
            processes.stop(entry.name)
    shutil.rmtree(_dir(), ignore_errors=True)


class Provider:
    """The local platform's `tenantry.traffic.wiring.Provider`: HAProxy over the clusters'
    ingresses, the local monitoring stack's Prometheus and Alertmanager."""

    def router(self, repo: Repository) -> HAProxy:
        """The local HAProxy (started by `tenantry up`)."""
        return router(repo)

    def routes(self, repo: Repository) -> list[tuple[Route, str]]:
        """Each route with its HAProxy frontend on loopback."""
        return [(route, f"http://127.0.0.1:{port}/") for route, port in routes(repo)]

    def route(self, repo: Repository, service: ServiceSource) -> Route:
        """The service's route over the clusters' ingresses."""
        return route_for(repo, service)[0]

    def prometheus(self, repo: Repository) -> str | None:
        """``traffic.prometheusUrl`` if set (tests run their own), else the local stack's."""
        traffic = repo.platform.traffic
        if traffic is not None and traffic.prometheus_url:
            return traffic.prometheus_url
        stack = monitoring.running()
        return stack.prometheus if stack else None

    def alertmanager(self, repo: Repository) -> str | None:
        """``server.alertmanagerUrl`` if set (tests run their own), else the local stack's."""
        server = repo.platform.server
        if server is not None and server.alertmanager_url:
            return server.alertmanager_url
        stack = monitoring.running()
        return stack.alertmanager if stack else None

    def alert(self, labels: dict[str, str], summary: str) -> None:
        """Through the local Alertmanager, when the local stack runs one."""
        monitoring.post_alert(labels, summary)

    def serving(self, route: Route, cluster: str, version: str) -> None:
        """Tell the cluster's demo app which version it serves now (real pods need not be
        told)."""
        set_version(route, cluster, version)
