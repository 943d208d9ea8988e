"""Verify one service for real: lint, then install it as its tenant into a cluster.

The checks, in order (each timed, each reported):

1. ``helm lint`` — the chart itself (``--strict``);
2. ``render`` — ``helm template`` with the service's values;
3. ``policy`` — `tenantry.charts.policy` on the rendered objects;
4. ``onboard`` — the tenant's objects in a throwaway namespace ``<team>-v<id>``
   (done while 1-3 run, since neither needs the other);
5. ``dry-run`` — server-side dry-run of every object *as the tenant's deployer*:
   RBAC and admission answer, and their reason is shown verbatim;
6. ``install`` — ``helm upgrade --install --wait`` as the deployer, stopped early
   when a pod crash-loops or a ReplicaSet is refused (quota);
7. ``rollout`` — every Deployment and StatefulSet fully ready, no pod failing;
8. ``helm test`` — the chart's test hooks, when it has any;
9. ``cleanup`` — the namespace deleted, whatever happened before.

The render/policy and dry-run checks both run even if policy fails, so a pull
request sees the platform's rule and the API server's own refusal together.
"""

from __future__ import annotations

import secrets
import time
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any, TypeVar

from lightkube.resources.apps_v1 import ReplicaSet, StatefulSet
from lightkube.resources.core_v1 import Namespace, Pod

from tenantry import errors, helm
from tenantry.charts import manifests, policy, render
from tenantry.kube import localcluster, waits
from tenantry.kube.client import Identity, Kube
from tenantry.spec.repository import Repository, ServiceSource
from tenantry.tenancy import objects
from tenantry.verify.results import Check, ServiceReport, Status

T = TypeVar("T")

VERIFICATION_LABEL = "tenantry.dev/verification"
# Container states that will not get better by waiting.
_FATAL_WAITING = frozenset(
    {"CrashLoopBackOff", "ImagePullBackOff", "ErrImagePull", "CreateContainerConfigError",
     "InvalidImageName", "CreateContainerError"}
)  # fmt: skip


@dataclass(frozen=True)
class Options:
    """How to verify."""

    timeout_s: float = 120.0


class _Steps:
    """Runs checks in order, timing each and turning `TenantryError`s into failures."""

    def __init__(self) -> None:
        self.checks: list[Check] = []

    @property
    def failed(self) -> bool:
        return any(c.status == "failed" for c in self.checks)

    def run(self, name: str, action: Callable[[], T]) -> T | None:
        started = time.monotonic()
        try:
            result = action()
        except errors.TenantryError as e:
            self._add(name, "failed", started, _reason(e))
            return None
        self._add(name, "passed", started, _summary(result))
        return result

    def fail(self, name: str, started: float, detail: str) -> None:
        self._add(name, "failed", started, detail)

    def skip(self, name: str, why: str) -> None:
        self.checks.append(Check(name, "skipped", 0.0, why))

    def _add(self, name: str, status: Status, started: float, detail: str) -> None:
        self.checks.append(Check(name, status, round(time.monotonic() - started, 3), detail))


def _reason(e: errors.TenantryError) -> str:
    if isinstance(e, errors.KubeError) and e.status_message:
        return f"{e.reason}: {e.status_message}"
    if isinstance(e, errors.HelmError) and e.stderr:
        return e.stderr
    return str(e)


def _summary(result: object) -> str:
    return result if isinstance(result, str) else ""


def static_checks(
    repo: Repository, service: ServiceSource, *, namespace: str, steps: _Steps | None = None
) -> tuple[list[Check], list[manifests.Rendered] | None]:
    """helm lint, render and policy: no cluster needed (`tenantry lint`)."""
    steps = steps or _Steps()
    source = render.chart_input(service)
    steps.run("helm lint", lambda: _lint(source))
    rendered = steps.run("render", lambda: render.render(service, namespace=namespace))
    if rendered is None:
        steps.skip("policy", "nothing rendered")
        return steps.checks, None
    tenant = repo.tenant(service.tenant)
    context = policy.Context(
        tenant=service.tenant,
        namespace=namespace,
        registries=objects.tenant_registries(tenant, repo.platform),
    )
    started = time.monotonic()
    findings = policy.check(rendered, context)
    if findings:
        steps.fail("policy", started, "\n".join(str(f) for f in findings))
    else:
        steps.checks.append(
            Check("policy", "passed", round(time.monotonic() - started, 3),
                  f"{len(rendered)} objects")
        )  # fmt: skip
    return steps.checks, rendered


def _lint(source: render.ChartInput) -> str:
    helm.lint(source.chart, values=source.values)
    return ""


def verify_service(
    repo: Repository,
    service: ServiceSource,
    *,
    cluster: localcluster.LocalCluster,
    options: Options = Options(),
) -> ServiceReport:
    """Every check for ``service`` on ``cluster``; never leaves its namespace behind.

    Onboarding the throwaway namespace runs while helm lints and renders: the two
    do not depend on each other, and the cluster round trips hide behind helm's.
    """
    namespace = f"{service.tenant}-v{secrets.token_hex(3)}"
    steps = _Steps()
    onboarding = _Steps()
    with cluster.connect() as admin, ThreadPoolExecutor(max_workers=1) as pool:
        onboarded = pool.submit(
            onboarding.run, "onboard", lambda: _onboard(admin, repo, service, namespace=namespace)
        )
        try:
            _, rendered = static_checks(repo, service, namespace=namespace, steps=steps)
            onboarded.result()
            steps.checks.extend(onboarding.checks)
            _in_cluster(steps, admin, service, rendered, cluster, namespace, options)
        finally:
            onboarded.result()
            steps.run("cleanup", lambda: _cleanup(admin, namespace))
    return ServiceReport(service.ref, tuple(steps.checks))


def _in_cluster(
    steps: _Steps,
    admin: Kube,
    service: ServiceSource,
    rendered: list[manifests.Rendered] | None,
    cluster: localcluster.LocalCluster,
    namespace: str,
    options: Options,
) -> None:
    later = ["dry-run", "install", "rollout", "helm test"]
    if rendered is None:
        for name in later:
            steps.skip(name, "the chart did not render")
        return
    if any(c.name == "onboard" and c.status == "failed" for c in steps.checks):
        for name in later:
            steps.skip(name, "onboarding failed")
        return
    deployer = Identity.service_account(namespace, objects.DEPLOYER_SA)
    with Kube.connect(cluster.kubeconfig, as_identity=deployer) as as_tenant:
        steps.run("dry-run", lambda: _dry_run(as_tenant, rendered, namespace=namespace))
    if steps.failed:
        for name in later[1:]:
            steps.skip(name, "an earlier check failed")
        return
    target = helm.Target(kubeconfig=cluster.kubeconfig, namespace=namespace, identity=deployer)
    source = render.chart_input(service)
    installed = steps.run(
        "install", lambda: _install(admin, target, source, namespace=namespace, options=options)
    )
    if installed is None:
        steps.skip("rollout", "install failed")
        steps.skip("helm test", "install failed")
        return
    steps.run("rollout", lambda: _rollout(admin, rendered, namespace=namespace))
    if any(_is_test_hook(obj) for obj in rendered):
        steps.run("helm test", lambda: _test(target, source.release, options))
    else:
        steps.skip("helm test", "the chart has no test hooks")


def _test(target: helm.Target, release: str, options: Options) -> str:
    helm.test(target, release=release, timeout_s=options.timeout_s)
    return "test hooks succeeded"


def _cleanup(admin: Kube, namespace: str) -> str:
    if not admin.delete(Namespace, namespace):
        return f"namespace {namespace} was never created"
    return f"namespace {namespace} deleted"


def _onboard(admin: Kube, repo: Repository, service: ServiceSource, *, namespace: str) -> str:
    tenant = repo.tenant(service.tenant)
    manifests_ = objects.platform_objects(repo.platform) + objects.tenant_objects(
        tenant, repo.platform, environment="verify", namespace=namespace
    )
    for manifest in manifests_:
        if manifest["kind"] == "Namespace" and manifest["metadata"]["name"] == namespace:
            manifest["metadata"]["labels"][VERIFICATION_LABEL] = "true"
        admin.apply(manifest)
    return namespace


def _dry_run(kube: Kube, rendered: list[manifests.Rendered], *, namespace: str) -> str:
    for obj in rendered:
        if _is_hook(obj):
            continue
        manifest: dict[str, Any] = {**obj.manifest}
        meta = {**manifest.get("metadata", {})}
        meta.setdefault("namespace", namespace)
        manifest["metadata"] = meta
        kube.apply(manifest, dry_run=True)
    return f"{len(rendered)} objects accepted"


def _is_hook(obj: manifests.Rendered) -> bool:
    return "helm.sh/hook" in (obj.manifest.get("metadata", {}).get("annotations") or {})


def _is_test_hook(obj: manifests.Rendered) -> bool:
    hook = (obj.manifest.get("metadata", {}).get("annotations") or {}).get("helm.sh/hook", "")
    return "test" in str(hook).split(",")


def _install(
    admin: Kube,
    target: helm.Target,
    source: render.ChartInput,
    *,
    namespace: str,
    options: Options,
) -> str:
    release = helm.upgrade_install(
        target,
        release=source.release,
        chart=source.chart,
        values=source.values,
        wait=True,
        timeout_s=options.timeout_s,
        abort_if=lambda: hopeless(admin, namespace),
    )
    return f"revision {release.revision} {release.status}"


def hopeless(kube: Kube, namespace: str) -> str | None:
    """Why the rollout in ``namespace`` cannot succeed, if that is already certain."""
    for replica_set in kube.list(ReplicaSet, namespace=namespace):
        for condition in (replica_set.status.conditions or []) if replica_set.status else []:
            if condition.type == "ReplicaFailure" and condition.status == "True":
                name = replica_set.metadata.name if replica_set.metadata else "?"
                return f"ReplicaSet {name}: {condition.reason}: {condition.message}"
    for pod in kube.list(Pod, namespace=namespace):
        name = pod.metadata.name if pod.metadata else "?"
        status = pod.status
        if status is None:
            continue
        if status.phase == "Failed":
            return f"pod {name} failed: {status.reason or ''} {status.message or ''}".strip()
        for container in status.containerStatuses or []:
            waiting = container.state.waiting if container.state else None
            if waiting and waiting.reason in _FATAL_WAITING:
                return f"pod {name} container {container.name}: {waiting.reason}" + (
                    f" ({waiting.message})" if waiting.message else ""
                )
    return None


def _rollout(admin: Kube, rendered: list[manifests.Rendered], *, namespace: str) -> str:
    ready = []
    for obj in rendered:
        if obj.kind == "Deployment":
            state = waits.wait_for_rollout(admin, namespace=namespace, name=obj.name, timeout_s=10)
            ready.append(f"{obj.ref} {state}")
        elif obj.kind == "StatefulSet":
            sts = admin.get(StatefulSet, obj.name, namespace=namespace)
            want = (sts.spec.replicas if sts.spec else None) or 1
            have = (sts.status.readyReplicas or 0) if sts.status else 0
            if have < want:
                raise errors.WaitTimeoutError(f"{obj.ref}: {have}/{want} ready")
            ready.append(f"{obj.ref} {have}/{want} ready")
    reason = hopeless(admin, namespace)
    if reason:
        raise errors.WaitTimeoutError(reason)
    return "; ".join(ready) or "no workloads"


# The warm cluster verifications share; created on first use, reused after.
WARM_CLUSTER = "verify"


@contextmanager
def verification_cluster(
    *, fresh: bool, name: str = WARM_CLUSTER
) -> Iterator[localcluster.LocalCluster]:
    """A cluster to verify on: the warm shared one, or a fresh one deleted afterwards."""
    if fresh:
        throwaway = f"{name}-{secrets.token_hex(3)}"
        cluster = localcluster.create(throwaway, nodes=3)
        try:
            yield cluster
        finally:
            localcluster.delete(throwaway)
        return
    try:
        cluster = localcluster.get(name)
    except errors.ClusterNotFoundError:
        cluster = localcluster.create(name, nodes=3)
    else:
        if not cluster.reachable():
            cluster = localcluster.start(name)
    yield cluster


def verify_all(
    repo: Repository,
    services: Sequence[ServiceSource],
    *,
    cluster: localcluster.LocalCluster,
    jobs: int = 1,
    options: Options = Options(),
    on_done: Callable[[ServiceReport], None] | None = None,
) -> list[ServiceReport]:
    """Verify ``services`` on ``cluster``, ``jobs`` at a time; reports in input order."""

    def one(service: ServiceSource) -> ServiceReport:
        report = verify_service(repo, service, cluster=cluster, options=options)
        if on_done:
            on_done(report)
        return report

    with ThreadPoolExecutor(max_workers=max(1, jobs)) as pool:
        return list(pool.map(one, services))
