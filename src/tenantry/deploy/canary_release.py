"""A production release through the canary cluster: deploy the canary cluster, let the
canary controller move live traffic onto it step by step while it analyses the
metrics, then deploy the primary — or roll the canary back.

Everything that can be wrong is checked before the first deploy: the platform has a
``traffic`` section, the environment has a canary and a primary cluster, the service
has a route (a descriptor service), and the router and Prometheus are reachable.

On rollback: weight 0 on the canary, ``helm rollback`` on the canary cluster(s) as
the tenant, a ledger entry, and an alert to the tenant. The router, the route,
Prometheus and the alert come from the environment's `tenantry.traffic.wiring`
provider, which is also told each version a cluster now serves (the local platform's
ingresses are demo apps that need telling; a real ingress does not).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

from tenantry import errors, helm
from tenantry.kube.client import Identity
from tenantry.ledger import Ledger, now, tables
from tenantry.spec import models
from tenantry.spec.repository import Repository, ServiceSource
from tenantry.tenancy import objects, reconcile
from tenantry.traffic import canary, policy
from tenantry.traffic import wiring as traffic_wiring
from tenantry.traffic.router import Route, Router

Deploy = Callable[[Sequence[models.ClusterRef]], str | None]


class CanaryError(errors.TenantryError):
    """The canary release cannot start; nothing was deployed."""


@dataclass(frozen=True)
class Wiring:
    """Where the canary's traffic and metrics are, and who is told what a cluster serves."""

    route: Route
    router: Router
    prometheus: str
    provider: traffic_wiring.Provider


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
    if service.descriptor is None:
        raise CanaryError(f"{service.ref} has its own chart and no route for live traffic",
                          fix="describe it with service.yaml to get a canary release")  # fmt: skip
    try:
        provider = traffic_wiring.provider(repo, environment)
        prometheus = provider.prometheus(repo)
        if prometheus is None:
            raise CanaryError(
                "no Prometheus to analyse the canary with",
                fix="set traffic.prometheusUrl, or start the local platform (`tenantry up`)",
            )
        return Wiring(provider.route(repo, service), provider.router(repo), prometheus, provider)
    except traffic_wiring.WiringError as e:
        raise CanaryError(e.message, fix=e.fix) from e


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
    guard: Callable[[], None] = lambda: None,
) -> str | None:
    """Canary cluster, analysis, primary. The failure's reason, or None when promoted.

    A rollout with no decision within ``decide_within_s`` (no traffic, Prometheus or the
    router unreachable all along, say) is aborted and rolled back rather than left
    half-way. A rollout of this version still running or paused in the ledger (its
    worker died) is resumed at its stored step, not started again. ``guard`` runs before
    every action."""
    env = repo.platform.environment(environment)
    canaries, primaries = _split(env)
    rollout_policy = policy.policy(repo.platform, service)
    wired = wiring(repo, service, environment)
    wired.router.state(wired.route)  # the router answers, before anything is deployed
    previous = {c.name: _serving(ledger, service, c.name, before=version) for c in canaries}
    failure = deploy(canaries)
    if failure:
        return failure
    for cluster in canaries:
        wired.provider.serving(wired.route, cluster.name, version)
    target = canary.Target(service.tenant, service.name, version, wired.route,
                           policy.objectives(service), rollout_policy)  # fmt: skip
    outcome: dict[str, str | None] = {}

    def promote(_: canary.Target) -> None:
        outcome["failure"] = deploy(primaries)
        if outcome["failure"] is None:
            for cluster in primaries:
                wired.provider.serving(wired.route, cluster.name, version)

    def roll_back(_: canary.Target, reason: str) -> None:
        for cluster in canaries:
            _helm_rollback(repo, ledger, service, cluster, environment, version, reason,
                           previous=previous.get(cluster.name))  # fmt: skip
            if previous.get(cluster.name):
                wired.provider.serving(wired.route, cluster.name, str(previous[cluster.name]))
        _alert(wired.provider, service, f"canary {version} rolled back: {reason}")

    controller = canary.Controller(
        target, router=wired.router, ledger=ledger,
        observe=lambda t: canary.observe(wired.prometheus, t, rollout_policy.interval_s),
        on_rollback=roll_back, on_promote=promote, log=log, guard=guard,
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


def _serving(ledger: Ledger, service: ServiceSource, cluster: str, *, before: str) -> str | None:
    """The version ``cluster`` served before ``before`` (a resumed rollout has already
    deployed ``before`` there)."""
    for deployment in ledger.history(tenant=service.tenant, service=service.name, limit=200):
        if (deployment.cluster == cluster and deployment.result == "succeeded"
                and deployment.version != before):  # fmt: skip
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


def _alert(provider: traffic_wiring.Provider, service: ServiceSource, summary: str) -> None:
    """Tell the tenant, through the platform's alerting."""
    labels = {"alertname": "CanaryRolledBack", "tenant": service.tenant,
              "service": service.name, "severity": "warning"}  # fmt: skip
    provider.alert(labels, summary)
