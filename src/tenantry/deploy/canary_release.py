"""A production release through the canary cluster: deploy the canary cluster, let the
canary controller move live traffic onto it step by step while it analyses the
metrics, then deploy the primary — or roll the canary back.

Everything that can be wrong is checked before the first deploy: the platform has a
``traffic`` section, the environment has a canary and a primary cluster, the service
has a route (a descriptor service), and the router and Prometheus are reachable.

On rollback: weight 0 on the canary, ``helm rollback`` on the canary cluster(s) as
the tenant, a ledger entry, and an alert to the tenant (through Alertmanager when one
runs). On the local platform the clusters' ingresses are demo apps, told which
version they now serve.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

from tenantry import aws, errors, helm
from tenantry.kube.client import Identity
from tenantry.ledger import Ledger, now, tables
from tenantry.local import monitoring
from tenantry.local import traffic as local_traffic
from tenantry.spec import models
from tenantry.spec.repository import Repository, ServiceSource
from tenantry.tenancy import objects, reconcile
from tenantry.traffic import canary, policy
from tenantry.traffic.route53 import Route53
from tenantry.traffic.router import Endpoint, Route, Router

Deploy = Callable[[Sequence[models.ClusterRef]], str | None]


class CanaryError(errors.TenantryError):
    """The canary release cannot start; nothing was deployed."""


@dataclass(frozen=True)
class Wiring:
    """Where the canary's traffic and metrics are."""

    route: Route
    router: Router
    prometheus: str
    local: bool


def _split(
    environment: models.Environment,
) -> tuple[list[models.ClusterRef], list[models.ClusterRef]]:
    canaries = [c for c in environment.clusters if c.role == "canary"]
    primaries = [c for c in environment.clusters if c.role == "primary"]
    if not canaries or not primaries:
        raise CanaryError(
            f"environment {environment.name} needs a cluster with role: canary and one with "
            "role: primary for a canary release",
            fix="add role: canary to one cluster in platform.yaml, or remove the traffic section",
        )
    return canaries, primaries


def wiring(repo: Repository, service: ServiceSource, environment: str) -> Wiring:
    """Resolve the route, the router and Prometheus; `CanaryError` naming what is missing."""
    traffic = repo.platform.traffic
    assert traffic is not None
    if service.descriptor is None:
        raise CanaryError(f"{service.ref} has its own chart and no route for live traffic",
                          fix="describe it with service.yaml to get a canary release")  # fmt: skip
    clusters = repo.platform.environment(environment).clusters
    local = all(c.local is not None for c in clusters)
    stack = monitoring.running() if local else None
    prometheus = traffic.prometheus_url or (stack.prometheus if stack else None)
    if prometheus is None:
        raise CanaryError(
            "no Prometheus to analyse the canary with",
            fix="set traffic.prometheusUrl, or start the local platform (`tenantry up`)",
        )
    if local:
        route, _ = local_traffic.route_for(repo, service)
        return Wiring(route, local_traffic.router(repo), prometheus, local=True)
    missing = [c.name for c in clusters if c.ingress is None]
    if missing:
        raise CanaryError(
            f"cluster(s) {', '.join(missing)} have no ingress address",
            fix="set ingress: host:port on every production cluster in platform.yaml",
        )
    route = Route(local_traffic.route_name(service),
                  tuple(Endpoint(c.name, c.role, c.ingress or "") for c in clusters))  # fmt: skip
    if traffic.router != "route53" or traffic.route53 is None:
        raise CanaryError(
            "an HAProxy router is driven only on the local platform",
            fix="use router: route53 for clusters outside this machine",
        )
    zone = traffic.route53
    return Wiring(route, Route53(aws.route53_client(), zone.zone_id, zone.domain), prometheus,
                  local=False)  # fmt: skip


def release(
    repo: Repository,
    ledger: Ledger,
    *,
    service: ServiceSource,
    version: str,
    environment: str,
    deploy: Deploy,
    log: Callable[[str], None],
    decide_within_s: float = 600.0,
) -> str | None:
    """Canary cluster, analysis, primary. The failure's reason, or None when promoted.

    A rollout with no decision within ``decide_within_s`` (no traffic, say) is aborted
    and rolled back rather than left half-way."""
    env = repo.platform.environment(environment)
    canaries, primaries = _split(env)
    rollout_policy = policy.policy(repo.platform, service)
    wired = wiring(repo, service, environment)
    wired.router.state(wired.route)  # the router answers, before anything is deployed
    previous = {c.name: _serving(ledger, service, c.name) for c in canaries}
    failure = deploy(canaries)
    if failure:
        return failure
    if wired.local:
        for cluster in canaries:
            local_traffic.set_version(wired.route, cluster.name, version)
    target = canary.Target(service.tenant, service.name, version, wired.route,
                           policy.objectives(service), rollout_policy)  # fmt: skip
    outcome: dict[str, str | None] = {}

    def promote(_: canary.Target) -> None:
        outcome["failure"] = deploy(primaries)
        if wired.local and outcome["failure"] is None:
            for cluster in primaries:
                local_traffic.set_version(wired.route, cluster.name, version)

    def roll_back(_: canary.Target, reason: str) -> None:
        for cluster in canaries:
            _helm_rollback(repo, ledger, service, cluster, environment, version, reason,
                           previous=previous.get(cluster.name))  # fmt: skip
            if wired.local and previous.get(cluster.name):
                local_traffic.set_version(wired.route, cluster.name, str(previous[cluster.name]))
        _alert(service, f"canary {version} rolled back: {reason}")

    controller = canary.Controller(
        target, router=wired.router, ledger=ledger,
        observe=lambda t: canary.observe(wired.prometheus, t, rollout_policy.interval_s),
        on_rollback=roll_back, on_promote=promote, log=log,
    )  # fmt: skip
    rollout = controller.run(max_intervals=max(1, int(decide_within_s / rollout_policy.interval_s)))
    if rollout.status in ("running", "paused"):
        reason = f"no decision within {decide_within_s:g} s ({rollout.reason})"
        canary.set_status(ledger, service.tenant, service.name, "aborted", reason)
        controller.abort(reason)
        return f"canary aborted: {reason}"
    if rollout.status == "promoted":
        return outcome.get("failure")
    return f"canary {rollout.status}: {rollout.reason}"


def _serving(ledger: Ledger, service: ServiceSource, cluster: str) -> str | None:
    for deployment in ledger.history(tenant=service.tenant, service=service.name, limit=200):
        if deployment.cluster == cluster and deployment.result == "succeeded":
            return deployment.version
    return None


def _helm_rollback(
    repo: Repository, ledger: Ledger, service: ServiceSource, cluster: models.ClusterRef,
    environment: str, version: str, reason: str, *, previous: str | None,
) -> None:  # fmt: skip
    """Back to the release before ``version``; a first release has none, so it goes."""
    target = reconcile.resolve(cluster, environment, repo.root)
    helm_target = helm.Target(
        kubeconfig=target.kubeconfig, context=target.context, namespace=service.tenant,
        identity=Identity.service_account(service.tenant, objects.DEPLOYER_SA),
    )  # fmt: skip
    if previous is None:
        helm.uninstall(helm_target, release=service.name)
    else:
        helm.rollback(helm_target, release=service.name)
    ledger.add(tables.Deployment(
        tenant=service.tenant, service=service.name, version=version, digest="",
        environment=environment, cluster=cluster.name, actor="canary controller",
        result="rolled-back", reason=reason, started=now(), finished=now(),
    ))  # fmt: skip


def _alert(service: ServiceSource, summary: str) -> None:
    """Tell the tenant through Alertmanager, when the local stack runs one."""
    labels = {"alertname": "CanaryRolledBack", "tenant": service.tenant,
              "service": service.name, "severity": "warning"}  # fmt: skip
    monitoring.post_alert(labels, summary)
