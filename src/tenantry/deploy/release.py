"""Install one chart archive into clusters as the tenant, recording each in the ledger.

Shared by the deployer (staging), promotion (production: canary, then primary) and
rollback, so every deploy is the same action: `helm upgrade --install --wait
--rollback-on-failure` as the tenant's deployer ServiceAccount, one ledger row per
cluster, stopping at the first cluster that fails so later ones keep serving.

``guard`` is called before each cluster's helm run: a worker whose lease lapsed
(`tenantry.ledger.fence`) stops there instead of racing the worker that took over. The
worker that took over first clears a release the dead one's helm left pending.

When helm fails, the cluster is asked whether the tenant is onboarded there at all (its
namespace and deployer ServiceAccount): publishing before `tenantry tenants apply` makes
helm answer "forbidden", which reads like a rights problem; the ledger says the cause
and the fix instead ("tenant payments is not onboarded in cluster staging: run tenantry
tenants apply"), followed by helm's own words.

A local cluster with real nodes reaches no registry: before helm runs there, the
tenant's own images of the chart (`tenantry.charts.images`) are built and loaded into
its real nodes (`localcluster.load_images`), as the tenant's build would have pushed
them. Any other image is left to the kubelet, which says why it cannot pull it.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

from lightkube import operators
from lightkube.resources.core_v1 import Namespace, Secret, ServiceAccount

from tenantry import errors, faults, helm
from tenantry.artifacts import package
from tenantry.charts import images as chart_images
from tenantry.charts import manifests
from tenantry.helm.sdk import Helmd
from tenantry.kube import localcluster
from tenantry.kube.client import Identity, Kube
from tenantry.ledger import Ledger, now, tables
from tenantry.spec import models
from tenantry.spec.repository import Repository
from tenantry.tenancy import objects, reconcile


@dataclass(frozen=True)
class Artifact:
    """A verified chart archive on disk."""

    tenant: str
    service: str
    version: str
    digest: str
    path: Path


def deploy(
    repo: Repository,
    ledger: Ledger,
    artifact: Artifact,
    *,
    environment: str,
    clusters: Sequence[models.ClusterRef],
    actor: str,
    timeout_s: float = 300.0,
    observe: Callable[[float], None] | None = None,
    guard: Callable[[], None] = lambda: None,
    helmd: Helmd | None = None,
) -> str | None:
    """Deploy to ``clusters`` in order; the first failure's reason, or None if all succeeded.
    Through ``helmd`` (Helm's SDK in a helper process) when given, else the helm CLI."""
    upgrade_install = helmd.upgrade_install if helmd is not None else helm.upgrade_install
    tenant = repo.tenant(artifact.tenant)
    try:
        values = secret_values(ledger, artifact, environment)
    except MissingSecretError as e:
        if clusters:  # recorded where it would have gone first; nothing was installed
            ledger.finish_deployment(ledger.add(tables.Deployment(
                tenant=artifact.tenant, service=artifact.service, version=artifact.version,
                digest=artifact.digest, environment=environment, cluster=clusters[0].name,
                actor=actor, result="running", reason="", started=now(),
            )).id, result="failed", reason=str(e))  # fmt: skip
        return f"{environment}: {e}"
    for cluster in clusters:
        target = reconcile.resolve(cluster, environment, repo.root)
        guard()
        row = ledger.add(
            tables.Deployment(
                tenant=artifact.tenant, service=artifact.service, version=artifact.version,
                digest=artifact.digest, environment=environment, cluster=cluster.name,
                actor=actor, result="running", reason="", started=now(),
            )
        )  # fmt: skip
        started = time.monotonic()
        faults.point("deploy.before-helm")
        helm_target = helm.Target(
            kubeconfig=target.kubeconfig,
            context=target.context,
            namespace=tenant.name,
            identity=Identity.service_account(tenant.name, objects.DEPLOYER_SA),
        )
        try:
            load_images(repo, cluster, artifact)
            # Holding the release's lease, a pending release is one a cut-short helm run
            # left behind (its worker died, or the API server went away mid-run).
            recovered = None
            if left_pending(target.connect, tenant.name, artifact.service):
                recovered = helm.recover_interrupted(
                    helm_target, release=artifact.service, timeout_s=timeout_s
                )
            upgrade_install(
                helm_target,
                release=artifact.service,
                chart=artifact.path,
                values=values or None,
                wait=True,
                rollback_on_failure=True,
                timeout_s=timeout_s,
            )
        except errors.TenantryError as e:
            reason = e.stderr if isinstance(e, errors.HelmError) and e.stderr else str(e)
            cause = not_onboarded(target.connect, tenant.name, cluster.name)
            if cause is not None:
                reason = f"{cause}; helm said: {reason}"
            ledger.finish_deployment(row.id, result="failed", reason=reason)
            return f"{cluster.name}: {reason}"
        finally:
            if observe:
                observe(time.monotonic() - started)
        faults.point("deploy.after-helm")
        ledger.finish_deployment(row.id, result="succeeded", reason=recovered or "")
    return None


class MissingSecretError(errors.TenantryError):
    """The chart's pods read a secret key that has no value in the environment."""


def secret_values(ledger: Ledger, artifact: Artifact, environment: str) -> dict[str, str]:
    """For a chart whose pods read secret keys (`package.secret_keys`): refuse, before
    helm runs, when one has no value in ``environment`` (its pods could never start);
    else the keys' versions, which the base chart puts in the pods' annotations so a
    deploy after a rotation rolls them."""
    refs = package.secret_keys(artifact.path)
    if not refs:
        return {}
    versions = {(r.name, r.key): r.version
                for r in ledger.secret_keys(tenant=artifact.tenant, environment=environment)
                if r.result == "done"}  # fmt: skip
    missing = [(name, key) for name, key in refs if (name, key) not in versions]
    if missing:
        name, key = missing[0]
        raise MissingSecretError(
            f"{artifact.tenant}/{artifact.service} reads "
            f"{', '.join(f'{n}/{k}' for n, k in missing)}, which has no value in {environment}",
            fix=f"an owner sets it (printf %s VALUE | tenantry secrets set "
            f"{artifact.tenant}/{name} {key} --env {environment}), then deploys again",
        )
    return {"secretVersions": ",".join(f"{n}/{k}={versions[(n, k)]}" for n, k in refs)}


def left_pending(connect: Callable[[], Kube], namespace: str, release: str) -> bool:
    """Whether Helm's storage (its Secrets, labelled by release and status) holds a pending
    revision of ``release``: one API request, where asking helm for the history costs a
    whole helm process on every deploy."""
    with connect() as kube:
        return bool(kube.list(Secret, namespace=namespace, labels={
            "owner": "helm", "name": release, "status": operators.in_(list(helm.PENDING)),
        }))  # fmt: skip


NOT_ONBOARDED = "is not onboarded in cluster"


def not_onboarded(connect: Callable[[], Kube], tenant: str, cluster: str) -> str | None:
    """Why ``tenant`` cannot be deployed into ``cluster`` for want of onboarding — its
    namespace or its deployer ServiceAccount missing — or None when both are there (or
    the cluster cannot say: the caller keeps helm's own reason then)."""
    fix = f"tenant {tenant} {NOT_ONBOARDED} {cluster}: run tenantry tenants apply"
    try:
        with connect() as kube:
            try:
                kube.get(Namespace, tenant)
            except errors.NotFoundError:
                return f"{fix} (namespace {tenant} does not exist)"
            try:
                kube.get(ServiceAccount, objects.DEPLOYER_SA, namespace=tenant)
            except errors.NotFoundError:
                return f"{fix} (ServiceAccount {tenant}/{objects.DEPLOYER_SA} does not exist)"
    except errors.TenantryError:
        return None
    return None


def load_images(repo: Repository, cluster: models.ClusterRef, artifact: Artifact) -> list[str]:
    """Load the tenant's own images of ``artifact`` into the real nodes of ``cluster`` when
    it is a local cluster that has some; the images loaded (none elsewhere: a real
    cluster pulls from its registry, a kwok node runs nothing)."""
    if cluster.local is None:
        return []
    local = localcluster.get(cluster.local)
    if not localcluster.real_node_names(local):
        return []
    tenant = repo.tenant(artifact.tenant)
    rendered = manifests.split(helm.template(artifact.path, release=artifact.service,
                                             namespace=tenant.name))  # fmt: skip
    registries = (*repo.platform.registries, *tenant.registries)
    refs = chart_images.tenant_images(chart_images.workload_images(rendered), registries,
                                      tenant.name)  # fmt: skip
    localcluster.load_images(local, refs)
    return refs
