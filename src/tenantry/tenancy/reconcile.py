"""Make every cluster match the platform repository: observe → plan → apply.

`plan_all` reads what each cluster has (one LIST per managed kind, all clusters at
once) and plans with the pure `tenantry.tenancy.plan`; `apply_all` first checks every
destructive step in every cluster (a namespace that still holds Helm releases is
only deleted with ``force``) and only then applies: every cluster at once, each wave
by wave with a small pool of connections (`tenantry.kube.applier`). Applies are
server-side with field manager ``tenantry`` and ``force``, so a hand edit of a
managed field is drift and is put back.

Why all clusters at once: the clusters are separate API servers, so one cluster's
requests never wait for another's. Applied one after another, a thousand tenants into
three local clusters kept two cores ~80 % busy (109 s); at once, ~97 %, and what is
left is the API servers', etcd's and the controller-managers' own CPU per write.
"""

from __future__ import annotations

import copy
import threading
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from lightkube.core.resource import Resource
from lightkube.resources.admissionregistration_v1 import (
    ValidatingAdmissionPolicy,
    ValidatingAdmissionPolicyBinding,
)
from lightkube.resources.core_v1 import (
    LimitRange,
    Namespace,
    ResourceQuota,
    Secret,
    ServiceAccount,
)
from lightkube.resources.networking_v1 import NetworkPolicy
from lightkube.resources.rbac_authorization_v1 import ClusterRole, RoleBinding

from tenantry import errors
from tenantry.kube import localcluster
from tenantry.kube.applier import Writer, open_writer
from tenantry.kube.client import Kube
from tenantry.spec import models
from tenantry.spec.repository import Repository
from tenantry.tenancy import objects
from tenantry.tenancy.plan import Change, ObjectKey, Plan, plan, wave

# Every kind the tenancy planner manages, so observe and delete can find them.
KINDS: dict[str, type[Resource]] = {
    "Namespace": Namespace,
    "ResourceQuota": ResourceQuota,
    "LimitRange": LimitRange,
    "ServiceAccount": ServiceAccount,
    "RoleBinding": RoleBinding,
    "NetworkPolicy": NetworkPolicy,
    "ClusterRole": ClusterRole,
    "ValidatingAdmissionPolicy": ValidatingAdmissionPolicy,
    "ValidatingAdmissionPolicyBinding": ValidatingAdmissionPolicyBinding,
}

# Concurrent applies per cluster. The applies are CPU-bound (API server and etcd), and
# more of them in flight let etcd commit more per batch: 1,000 tenants x 3 clusters took
# 60.6 s with 4, 52.7-54.1 s with 8, 48.8-50.4 s with 16 and 47.4-51.7 s with 32 (a
# thread and connection each, so not more).
WORKERS = 16


@dataclass(frozen=True)
class ClusterTarget:
    """One cluster of one environment, resolved to a kubeconfig."""

    environment: str
    name: str
    kubeconfig: Path
    context: str | None

    def connect(self) -> Kube:
        """An admin connection (the platform's own identity)."""
        return Kube.connect(self.kubeconfig, context=self.context)


@dataclass(frozen=True)
class ApplyReport:
    """What applying one cluster's plan did."""

    cluster: str
    environment: str
    created: int
    updated: int
    deleted: int
    unchanged: int
    seconds: float


def resolve(cluster: models.ClusterRef, environment: str, repo_root: Path) -> ClusterTarget:
    """Where to reach ``cluster``: a local cluster by name, or a kubeconfig and context."""
    if cluster.local is not None:
        kubeconfig = localcluster.get(cluster.local).kubeconfig
    else:
        assert cluster.kubeconfig is not None
        kubeconfig = (repo_root / cluster.kubeconfig).expanduser()
    return ClusterTarget(environment, cluster.name, kubeconfig, cluster.context)


def targets(repo: Repository) -> list[ClusterTarget]:
    """Every cluster of every environment."""
    return [
        resolve(cluster, env.name, repo.root)
        for env in repo.platform.environments
        for cluster in env.clusters
    ]


def desired(repo: Repository, environment: str) -> list[objects.Manifest]:
    """Everything a cluster of ``environment`` should hold (pure); people may write in
    tenant namespaces only if the environment allows it (``peopleWrite``)."""
    may_write = repo.platform.environment(environment).people_may_write
    manifests = objects.platform_objects(repo.platform)
    for tenant in repo.tenants:
        if environment in tenant.environments:
            manifests += objects.tenant_objects(
                tenant, repo.platform, environment=environment, people_may_write=may_write
            )
    return manifests


def observe(kube: Kube) -> dict[ObjectKey, dict[str, Any]]:
    """Every object in the cluster that the platform manages, by key (as the API
    server's JSON: at a thousand tenants typed models cost more than the requests)."""
    found: dict[ObjectKey, dict[str, Any]] = {}
    for kind, resource in KINDS.items():
        for manifest in kube.list_raw(resource, labels=objects.MANAGED_BY):
            manifest["kind"] = kind
            found[ObjectKey.of(manifest)] = manifest
    return found


def plan_cluster(repo: Repository, target: ClusterTarget) -> Plan:
    """The plan for one cluster."""
    with target.connect() as kube:
        return plan(target.name, desired(repo, target.environment), observe(kube))


def plan_all(repo: Repository) -> list[tuple[ClusterTarget, Plan]]:
    """Plans for every cluster, read from all clusters at once; reads only."""
    every = targets(repo)
    with ThreadPoolExecutor(max_workers=max(1, len(every))) as pool:
        plans = list(pool.map(lambda target: plan_cluster(repo, target), every))
    return list(zip(every, plans, strict=True))


def helm_releases(kube: Kube, namespace: str) -> list[str]:
    """Names of the Helm releases stored in ``namespace``."""
    secrets = kube.list(Secret, namespace=namespace, labels={"owner": "helm"})
    return sorted({(s.metadata.labels or {}).get("name", "?") for s in secrets if s.metadata})


def check_deletions(plans: list[tuple[ClusterTarget, Plan]], *, force: bool) -> None:
    """Refuse, before anything is applied, to delete a namespace that has Helm releases."""
    if force:
        return
    blocked = []
    for target, cluster_plan in plans:
        namespaces = [c.key.name for c in cluster_plan.of("delete") if c.key.kind == "Namespace"]
        if not namespaces:
            continue
        with target.connect() as kube:
            for ns in namespaces:
                releases = helm_releases(kube, ns)
                if releases:
                    blocked.append(f"{target.name}/{ns} ({', '.join(releases)})")
    if blocked:
        raise errors.TenantryError(
            "refusing to delete tenant namespaces that still have Helm releases: "
            + "; ".join(blocked),
            fix="uninstall those releases first, or run `tenantry tenants apply --force` "
            "to delete the namespaces with everything in them",
        )


@contextmanager
def _pool(target: ClusterTarget) -> Iterator[Callable[[], Writer]]:
    # One connection per worker thread: simpler than reasoning about sharing one pool.
    local = threading.local()
    opened: list[Writer] = []
    lock = threading.Lock()

    def get() -> Writer:
        writer: Writer | None = getattr(local, "writer", None)
        if writer is None:
            writer = open_writer(target.kubeconfig, target.context)
            local.writer = writer
            with lock:
                opened.append(writer)
        return writer

    try:
        yield get
    finally:
        for writer in opened:
            writer.close()


def _execute(writer: Writer, change: Change) -> None:
    if change.action in ("create", "update"):
        assert change.manifest is not None
        writer.apply(change.manifest)
    elif change.action == "delete":
        writer.delete(
            KINDS[change.key.kind], change.key.name, namespace=change.key.namespace or None
        )


def _in_cluster(error: errors.TenantryError, target: ClusterTarget) -> errors.TenantryError:
    """``error`` (same type and fields) with the cluster named in its message."""
    named = copy.copy(error)
    named.message = f"cluster {target.name}: {error.message}"
    named.args = (named.message,)
    return named


def _run_wave(
    pool: ThreadPoolExecutor,
    connection: Callable[[], Writer],
    batch: list[Change],
    target: ClusterTarget,
    on_change: Callable[[ClusterTarget, Change], None] | None,
) -> None:
    """Share ``batch`` out to the pool's workers; after a failure no new change starts,
    the running ones finish, and the first failure is raised."""
    pending = iter(batch)
    lock = threading.Lock()
    failures: list[Exception] = []

    def work() -> None:
        writer = connection()
        while True:
            with lock:
                change = None if failures else next(pending, None)
            if change is None:
                return
            try:
                _execute(writer, change)
            except Exception as e:
                with lock:
                    failures.append(e)
                return
            if on_change:
                on_change(target, change)

    workers = [pool.submit(work) for _ in range(min(WORKERS, len(batch)))]
    for worker in workers:
        worker.result()
    if failures:
        raise failures[0]


def _by_wave(changes: list[Change], *, reverse: bool = False) -> list[list[Change]]:
    """``changes`` grouped by wave, in wave order (deletes go in reverse)."""
    levels = sorted({wave(c.key) for c in changes}, reverse=reverse)
    return [[c for c in changes if wave(c.key) == level] for level in levels]


def apply_plan(
    target: ClusterTarget,
    cluster_plan: Plan,
    *,
    on_change: Callable[[ClusterTarget, Change], None] | None = None,
) -> ApplyReport:
    """Apply one cluster's plan: waves in order, changes within a wave concurrently
    (`WORKERS` threads, a connection each); a failed wave stops the ones after it."""
    started = time.monotonic()
    todo = [c for c in cluster_plan.changes if c.action != "unchanged"]
    applies = [c for c in todo if c.action != "delete"]
    deletes = [c for c in todo if c.action == "delete"]
    waves = _by_wave(applies) + _by_wave(deletes, reverse=True)
    with _pool(target) as connection, ThreadPoolExecutor(max_workers=WORKERS) as pool:
        for batch in waves:
            _run_wave(pool, connection, batch, target, on_change)
    counts = cluster_plan.summary()
    return ApplyReport(
        cluster=target.name,
        environment=target.environment,
        created=counts["create"],
        updated=counts["update"],
        deleted=counts["delete"],
        unchanged=counts["unchanged"],
        seconds=round(time.monotonic() - started, 2),
    )


def apply_all(
    repo: Repository,
    *,
    force: bool = False,
    on_plan: Callable[[ClusterTarget, Plan], None] | None = None,
    on_change: Callable[[ClusterTarget, Change], None] | None = None,
) -> list[ApplyReport]:
    """Plan every cluster, check every deletion, then apply every cluster at once.

    Nothing is applied anywhere until every cluster's deletions have passed
    `check_deletions`. The clusters are then applied concurrently (each has its
    own API server; one at a time left the two cores half idle); one cluster's
    failure does not stop the others, and once all have finished the first failure,
    in cluster order, is raised with its cluster named. ``on_plan`` is called for
    every cluster before any apply starts; ``on_change`` from worker threads, but
    never two at once, so a callback that prints needs no lock of its own.
    """
    plans = plan_all(repo)
    check_deletions(plans, force=force)
    if on_plan:
        for target, cluster_plan in plans:
            on_plan(target, cluster_plan)
    callback = on_change
    if on_change is not None:
        one_at_a_time = threading.Lock()

        def serialized(target: ClusterTarget, change: Change) -> None:
            with one_at_a_time:
                on_change(target, change)

        callback = serialized
    with ThreadPoolExecutor(max_workers=max(1, len(plans))) as pool:
        running = [
            pool.submit(apply_plan, target, cluster_plan, on_change=callback)
            for target, cluster_plan in plans
        ]
        outcomes = [
            (target, future.exception()) for (target, _), future in zip(plans, running, strict=True)
        ]
    for target, failure in outcomes:
        if isinstance(failure, errors.TenantryError):
            raise _in_cluster(failure, target) from failure
        if failure is not None:
            raise failure
    return [future.result() for future in running]
