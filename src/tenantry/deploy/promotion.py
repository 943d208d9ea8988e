"""Production stays manual: request, approve (by someone else), deploy canary then primary;
and roll back.

* `request` needs the exact version to be the one released in staging and healthy
  there now (helm says deployed, every Deployment of the release fully ready);
  the request records that digest.
* `approve` needs an actor other than the requester (unless the tenant allows
  self-approval) and queues the deploy; `deploy_approved` (a worker) downloads the
  archive, checks it is the recorded digest, and deploys to the production
  clusters, canary first: if the canary fails, the primary keeps serving the
  previous version.
* `decline` rejects or cancels a pending request.
* `plan_rollback` checks and `rollback` redeploys an earlier succeeded version
  (default: the one before the current) to every cluster of an environment.

Who acts is decided by the caller: the server passes the identity the management
cluster proved, and only after `tenantry.server.rights` allowed it. An approval only
queues the deploy (an operation in the ledger); a worker carries it out.
"""

from __future__ import annotations

import contextlib
import json
import tempfile
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

from lightkube.resources.apps_v1 import Deployment

from tenantry import errors, helm
from tenantry.artifacts import source
from tenantry.aws import Clients
from tenantry.deploy import canary_release, release
from tenantry.kube import waits
from tenantry.kube.client import Kube
from tenantry.ledger import Ledger, now, tables
from tenantry.spec import models
from tenantry.spec.repository import Repository
from tenantry.tenancy import reconcile

STAGING = "staging"
# A promotion in one of these states may be approved (a failed one again: a retry) or
# declined; once approved it is the workers' until it is deployed or failed.
APPROVABLE = ("pending", "failed")


class PromotionError(errors.TenantryError):
    """A promotion or approval is refused; the message says why."""


@dataclass(frozen=True)
class Result:
    """How a promotion or rollback ended."""

    promotion: int | None
    status: str
    reason: str


def _canary_first(environment: models.Environment) -> list[models.ClusterRef]:
    return sorted(environment.clusters, key=lambda c: 0 if c.role == "canary" else 1)


def _healthy_in(repo: Repository, tenant: str, service: str, version: str) -> str | None:
    """Why ``version`` is not healthy in every staging cluster now, or None."""
    for cluster in repo.platform.environment(STAGING).clusters:
        target = reconcile.resolve(cluster, STAGING, repo.root)
        releases = helm.list_releases(
            helm.Target(kubeconfig=target.kubeconfig, context=target.context, namespace=tenant)
        )
        found = next((r for r in releases if r.get("name") == service), None)
        if found is None:
            return f"{service} is not installed in staging cluster {cluster.name}"
        if found.get("status") != "deployed" or not str(found.get("chart", "")).endswith(
            f"-{version}"
        ):
            return (
                f"staging cluster {cluster.name} runs {found.get('chart')} "
                f"({found.get('status')}), not {service}-{version}"
            )
        with Kube.connect(target.kubeconfig, context=target.context) as kube:
            for deployment in kube.list(
                Deployment, namespace=tenant, labels={"app.kubernetes.io/instance": service}
            ):
                state = waits.rollout_state(deployment)
                if not state.complete:
                    name = deployment.metadata.name if deployment.metadata else "?"
                    return f"Deployment {name} in staging cluster {cluster.name}: {state}"
    return None


def request(
    repo: Repository, ledger: Ledger, *, ref: str, version: str, environment: str, by: str
) -> tables.Promotion:
    """Record a promotion request after checking the version is healthy in staging."""
    service = repo.service(ref)
    tenant = repo.tenant(service.tenant)
    if environment not in tenant.environments:
        raise PromotionError(f"tenant {tenant.name} does not use environment {environment!r}")
    repo.platform.environment(environment)
    released = ledger.released(tenant=tenant.name, service=service.name, environment=STAGING)
    if released is None or released.version != version:
        current = released.version if released else "nothing"
        raise PromotionError(
            f"{ref} {version} is not what staging runs (staging has {current})",
            fix="promote the version staging runs, or publish and let it reach staging first",
        )
    unhealthy = _healthy_in(repo, tenant.name, service.name, version)
    if unhealthy:
        raise PromotionError(
            f"{ref} {version} is not healthy in staging: {unhealthy}",
            fix="fix staging first; production only takes what staging proved",
        )
    row: tables.Promotion = ledger.add(
        tables.Promotion(
            tenant=tenant.name, service=service.name, version=version, digest=released.digest,
            environment=environment, requested_by=by, requested_at=now(), status="pending",
            reason="",
        )
    )  # fmt: skip
    return row


def approve(
    repo: Repository, ledger: Ledger, *, promotion_id: int, by: str
) -> tuple[tables.Promotion, tables.Operation]:
    """Approve a pending promotion and queue its deploy for a worker, in one transaction.

    The pending → approved change is one conditional update: of two concurrent
    approvals exactly one gets the operation, the other a `PromotionError`."""
    row = ledger.promotion(promotion_id)
    if row is None:
        raise errors.UsageError(f"no promotion request {promotion_id}")
    if row.status not in APPROVABLE:
        raise PromotionError(f"promotion {promotion_id} is {row.status}, not pending or failed")
    tenant = repo.tenant(row.tenant)
    if by == row.requested_by and not tenant.self_approval:
        raise PromotionError(
            f"{by} requested promotion {promotion_id} and cannot also approve it",
            fix="ask someone else to approve, or set selfApproval: true in the tenant's file",
        )
    operation = tables.Operation(
        kind="approve", tenant=row.tenant, service=row.service, environment=row.environment,
        params=json.dumps({"promotion": promotion_id}), requested_by=by, status="queued",
        result="", progress="", created=now(),
    )  # fmt: skip
    if not ledger.transition_promotion(
        promotion_id, from_status=row.status, enqueue=operation,
        status="approved", approved_by=by, approved_at=now(), reason="",
    ):  # fmt: skip
        current = ledger.promotion(promotion_id)
        raise PromotionError(
            f"promotion {promotion_id} was {current.status if current else 'removed'} "
            "meanwhile, by someone else"
        )
    approved = ledger.promotion(promotion_id)
    assert approved is not None
    return approved, operation


def decline(
    repo: Repository, ledger: Ledger, *, promotion_id: int, by: str, status: str, reason: str
) -> tables.Promotion:
    """Reject or cancel a pending or failed promotion (``status``: rejected or cancelled)."""
    row = ledger.promotion(promotion_id)
    if row is None:
        raise errors.UsageError(f"no promotion request {promotion_id}")
    repo.tenant(row.tenant)
    words = f"{status} by {by}" + (f": {reason}" if reason else "")
    if not ledger.transition_promotion(
        promotion_id, from_status=APPROVABLE, status=status, reason=words
    ):
        current = ledger.promotion(promotion_id)
        raise PromotionError(
            f"promotion {promotion_id} is {current.status if current else 'gone'}, "
            "not pending or failed"
        )
    declined = ledger.promotion(promotion_id)
    assert declined is not None
    return declined


def deploy_approved(
    repo: Repository,
    ledger: Ledger,
    clients: Clients | None,
    *,
    promotion_id: int,
    timeout_s: float = 300.0,
    log: Callable[[str], None] = lambda _: None,
    guard: Callable[[], None] = lambda: None,
) -> Result:
    """Deploy an approved promotion: canary cluster(s) first, then primary — with a
    canary analysis of live traffic in between when platform.yaml has ``traffic`` and the
    service has a route (a descriptor; a team's own chart has none).
    Workers run this; it never runs in the terminal of the person who approved.

    A promotion already ``deploying`` is resumed (its worker died and another took the
    operation over): clusters that already run the version for this promotion are not
    deployed again, and a canary rollout carries on from its stored step. ``guard`` runs
    before every action (`tenantry.ledger.fence`)."""
    row = ledger.promotion(promotion_id)
    if row is None or row.status not in ("approved", "deploying"):
        raise PromotionError(
            f"promotion {promotion_id} is {row.status if row else 'missing'}, not approved"
        )
    by = row.approved_by or "?"
    actor = f"{by} (approved #{promotion_id})"
    if row.status == "deploying":
        log(f"resuming promotion {promotion_id}: it was deploying when its worker stopped")
    guard()
    ledger.set_promotion(promotion_id, status="deploying")

    def deploy(clusters: Sequence[models.ClusterRef] | None = None) -> str | None:
        return _deploy_version(
            repo, ledger, clients, tenant=row.tenant, service=row.service, version=row.version,
            digest=row.digest, environment=row.environment, actor=actor, timeout_s=timeout_s,
            clusters=clusters, guard=guard, log=log,
        )  # fmt: skip

    source = repo.service(f"{row.tenant}/{row.service}")
    if repo.platform.traffic is not None and source.descriptor is not None:
        # Canary cluster, analysis of live traffic, then the primary (or a rollback).
        log(
            f"deploying {row.tenant}/{row.service} {row.version} to the canary cluster; then "
            "live traffic moves onto it step by step, then the primary"
        )
        failure = canary_release.release(
            repo, ledger, service=source, version=row.version, environment=row.environment,
            deploy=deploy, log=log, guard=guard,
        )  # fmt: skip
    else:
        if repo.platform.traffic is not None:
            # A team's own chart has no route the platform knows, so no live-traffic
            # analysis: it still goes canary cluster first, and a failed canary deploy
            # leaves the primary on its previous version.
            log(f"{source.ref} has its own chart: no live-traffic route, so no canary "
                "analysis; the canary cluster is deployed first, then the primary")  # fmt: skip
        log(f"deploying {row.tenant}/{row.service} {row.version} to {row.environment}")
        failure = deploy()
    status, reason = ("failed", failure) if failure else ("deployed", "")
    guard()
    ledger.set_promotion(promotion_id, status=status, reason=reason)
    return Result(promotion_id, status, reason)


@dataclass(frozen=True)
class RollbackPlan:
    """What a rollback will do: from the current version to an earlier succeeded one."""

    ref: str
    environment: str
    current: str
    target: str
    digest: str


def plan_rollback(
    repo: Repository, ledger: Ledger, *, ref: str, environment: str, to_version: str | None
) -> RollbackPlan:
    """Check a rollback can happen, before anything is queued: `PromotionError` if not."""
    service = repo.service(ref)
    repo.platform.environment(environment)
    history = [
        d
        for d in ledger.history(tenant=service.tenant, service=service.name, limit=500)
        if d.environment == environment and d.result == "succeeded"
    ]
    if not history:
        raise PromotionError(f"{ref} has never been deployed to {environment}")
    current = history[0].version
    if to_version is None:
        earlier = [d for d in history if d.version != current]
        if not earlier:
            raise PromotionError(f"{ref} has no version before {current} in {environment}")
        target = earlier[0]
    else:
        matches = [d for d in history if d.version == to_version]
        if not matches:
            raise PromotionError(
                f"{ref} {to_version} never succeeded in {environment}",
                fix=f"pick one of: {', '.join(sorted({d.version for d in history}))}",
            )
        target = matches[0]
    return RollbackPlan(ref, environment, current, target.version, target.digest)


def rollback(
    repo: Repository,
    ledger: Ledger,
    clients: Clients | None,
    *,
    plan: RollbackPlan,
    by: str,
    timeout_s: float = 300.0,
    log: Callable[[str], None] = lambda _: None,
    guard: Callable[[], None] = lambda: None,
) -> Result:
    """Redeploy ``plan``'s earlier succeeded version to every cluster of its environment
    (a cluster already back on it, after a worker that died, is not deployed again)."""
    service = repo.service(plan.ref)
    log(f"rolling {plan.ref} back in {plan.environment}: {plan.current} → {plan.target}")
    failure = _deploy_version(
        repo, ledger, clients, tenant=service.tenant, service=service.name, version=plan.target,
        digest=plan.digest, environment=plan.environment,
        actor=f"{by} (rollback from {plan.current})", timeout_s=timeout_s, guard=guard, log=log,
    )  # fmt: skip
    return Result(
        None,
        "failed" if failure else "rolled-back",
        failure or f"{plan.current} → {plan.target}",
    )


def _deploy_version(
    repo: Repository,
    ledger: Ledger,
    clients: Clients | None,
    *,
    tenant: str,
    service: str,
    version: str,
    digest: str,
    environment: str,
    actor: str,
    timeout_s: float,
    clusters: Sequence[models.ClusterRef] | None = None,
    guard: Callable[[], None] = lambda: None,
    log: Callable[[str], None] = lambda _: None,
) -> str | None:
    chosen = clusters or _canary_first(repo.platform.environment(environment))
    # Deployed already by this same action (a worker that died after it): not again.
    last = _last_on(ledger, tenant, service, environment)
    done = {c.name for c in chosen if last.get(c.name) == (version, actor, "succeeded")}
    for name in sorted(done):
        log(f"{name} already runs {version} for this action: not deployed again")
    todo = [c for c in chosen if c.name not in done]
    if not todo:
        return None
    with contextlib.closing(source.for_repository(repo, clients)) as charts:
        fetched = charts.fetch(tenant, service, version)
    if fetched.digest != digest:
        return f"the archive's sha256 {fetched.digest} is not the recorded {digest}"
    with tempfile.TemporaryDirectory(prefix="tenantry-promote-") as workdir:
        archive = Path(workdir) / f"{service}-{version}.tgz"
        archive.write_bytes(fetched.data)
        return release.deploy(
            repo,
            ledger,
            release.Artifact(tenant, service, version, digest, archive),
            environment=environment,
            clusters=todo,
            actor=actor,
            timeout_s=timeout_s,
            guard=guard,
        )


def _last_on(
    ledger: Ledger, tenant: str, service: str, environment: str
) -> dict[str, tuple[str, str, str]]:
    """(version, actor, result) of the newest finished deployment on each cluster, from
    one read of the service's history."""
    last: dict[str, tuple[str, str, str]] = {}
    for d in ledger.history(tenant=tenant, service=service, limit=200):
        if d.environment == environment and d.result != "running":
            last.setdefault(d.cluster, (d.version, d.actor, d.result))
    return last
