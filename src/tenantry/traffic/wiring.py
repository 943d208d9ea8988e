"""Where a platform's live traffic, metrics and alerts are: the one interface the canary
release, the failover watcher, `tenantry traffic` and the server ask.

A platform on real clusters is wired by platform.yaml alone (`Configured`): Route 53
weighted records, or on premises an HAProxy of the platform team's own
(``traffic.haproxy``, run by `tenantry router run`), over each production cluster's
``ingress`` address, and the Prometheus at ``traffic.prometheusUrl``. The local
platform has no such addresses — its clusters' ingresses are demo apps or the pods'
cluster ingresses behind a local HAProxy — so it plugs in a
`Provider` of its own from above (`register`, called by the `tenantry` command and
the test fixtures). Nothing below the command line imports the local platform; it
only asks `provider` for the environment's wiring.
"""

from __future__ import annotations

import functools
import logging
from collections.abc import Callable
from pathlib import Path
from typing import Protocol

from tenantry import aws, errors
from tenantry.spec import models
from tenantry.spec.repository import Repository, ServiceSource
from tenantry.traffic.haproxy import ByHost, HAProxy
from tenantry.traffic.route53 import Route53
from tenantry.traffic.router import Endpoint, Route, Router

_log = logging.getLogger(__name__)


class WiringError(errors.TenantryError):
    """The platform's traffic wiring is incomplete: a router, an address or Prometheus."""


def route_name(service: ServiceSource) -> str:
    """The route (router frontend, DNS record) of a service: ``<tenant>-<service>``."""
    return f"{service.tenant}-{service.name}"


class Provider(Protocol):
    """A platform's live traffic: its router, routes, Prometheus and alerts."""

    def router(self, repo: Repository) -> Router:
        """The router for the repository's routes."""

    def routes(self, repo: Repository) -> list[tuple[Route, str]]:
        """Every descriptor service's route with the URL users reach it at."""

    def route(self, repo: Repository, service: ServiceSource) -> Route:
        """The service's route; `errors.UsageError` when it has none."""

    def prometheus(self, repo: Repository) -> str | None:
        """The Prometheus that scrapes the router and the services; None if none."""

    def alertmanager(self, repo: Repository) -> str | None:
        """The Alertmanager whose firing alerts the server shows; None if none."""

    def alert(self, labels: dict[str, str], summary: str) -> None:
        """Post one alert the way Prometheus would, so it takes the real routes."""

    def serving(self, route: Route, cluster: str, version: str) -> None:
        """Called after ``cluster`` got ``version`` of the route's service."""


class Configured:
    """The wiring platform.yaml describes: Route 53 or the platform team's HAProxy over the
    clusters' ingress addresses, and ``traffic.prometheusUrl``."""

    def __init__(self, environment: str = models.PRODUCTION) -> None:
        self.environment = environment

    def _traffic(self, repo: Repository) -> models.Traffic:
        if repo.platform.traffic is None:
            raise WiringError(
                "platform.yaml has no traffic section",
                fix="add traffic: to platform.yaml (see examples/platform-repo)",
            )
        return repo.platform.traffic

    def router(self, repo: Repository) -> Router:
        """Route 53, or the platform team's HAProxy."""
        traffic = self._traffic(repo)
        if traffic.router == "route53" and traffic.route53 is not None:
            zone = traffic.route53
            return Route53(aws.route53_client(), zone.zone_id, zone.domain)
        return self.haproxy(repo)

    def _haproxy(self, repo: Repository) -> models.HAProxyRouter:
        config = self._traffic(repo).haproxy
        if config is None:
            raise WiringError(
                f"environment {self.environment} is on clusters outside this machine and "
                "platform.yaml names no HAProxy for them",
                fix="add traffic.haproxy: {directory, listen, domain, stats} (an HAProxy of "
                "your own, run by `tenantry router run`), or use router: route53",
            )
        return config

    def haproxy(self, repo: Repository) -> HAProxy:
        """The HAProxy ``traffic.haproxy`` describes, for every route (not started:
        `tenantry router run` runs it)."""
        config = self._haproxy(repo)
        routes = [route for route, _ in self.routes(repo)]
        return HAProxy(Path(config.directory), routes,
                       fronts=ByHost(config.listen, config.domain), stats=config.stats)  # fmt: skip

    def _route(self, repo: Repository, service: ServiceSource) -> Route:
        clusters = repo.platform.environment(self.environment).clusters
        missing = [c.name for c in clusters if c.ingress is None]
        if missing:
            raise WiringError(
                f"cluster(s) {', '.join(missing)} have no ingress address",
                fix="set ingress: host:port on every production cluster in platform.yaml",
            )
        endpoints = tuple(Endpoint(c.name, c.role, c.ingress or "") for c in clusters)
        return Route(route_name(service), endpoints)

    def routes(self, repo: Repository) -> list[tuple[Route, str]]:
        """Each descriptor service's route, reached at its Route 53 record or through the
        HAProxy's listener."""
        traffic = self._traffic(repo)
        url: Callable[[Route], str]
        if traffic.router == "route53" and traffic.route53 is not None:
            domain = traffic.route53.domain.rstrip(".")
            url = lambda route: f"http://{route.name}.{domain}/"  # noqa: E731
        else:
            config = self._haproxy(repo)
            url = ByHost(config.listen, config.domain).url
        described = [s for s in repo.services if s.descriptor is not None]
        return [(route, url(route)) for route in (self._route(repo, s) for s in described)]

    def route(self, repo: Repository, service: ServiceSource) -> Route:
        """The service's route over the environment's clusters."""
        self._traffic(repo)
        if service.descriptor is None:
            raise errors.UsageError(
                f"{service.ref} has its own chart and no route for live traffic",
                fix="describe it with service.yaml",
            )
        return self._route(repo, service)

    def prometheus(self, repo: Repository) -> str | None:
        """``traffic.prometheusUrl``."""
        return self._traffic(repo).prometheus_url

    def alertmanager(self, repo: Repository) -> str | None:
        """``server.alertmanagerUrl``."""
        server = repo.platform.server
        return server.alertmanager_url if server else None

    def alert(self, labels: dict[str, str], summary: str) -> None:
        """Logged: platform.yaml names no Alertmanager yet, and the ledger has the record."""
        _log.warning("alert %s: %s", labels.get("alertname", "?"), summary)

    def serving(self, route: Route, cluster: str, version: str) -> None:
        """Nothing to do: a real ingress serves whatever the cluster runs."""


# Makes the local platform's provider; called on first use, so a command that never
# routes traffic never imports it.
_registered: Callable[[], Provider] | None = None


def register(make: Callable[[], Provider]) -> None:
    """Plug in the wiring of local clusters (the local platform's, from the command line)."""
    global _registered
    _registered = functools.cache(make)


def provider(repo: Repository, environment: str = models.PRODUCTION) -> Provider:
    """The wiring of ``environment``: the registered provider when its clusters are
    local clusters, else the one platform.yaml describes."""
    clusters = repo.platform.environment(environment).clusters
    if not all(c.local is not None for c in clusters):
        return Configured(environment)
    if _registered is None:
        raise WiringError(
            f"environment {environment} runs on local clusters, but no local platform is "
            "plugged in",
            fix="run it through the tenantry command (`tenantry …` or `python -m tenantry …`)",
        )
    return _registered()
