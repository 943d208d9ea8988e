"""Verify one service for real: lint, then install it as its tenant into a cluster.

The checks, in order (each timed, each reported):

1. ``helm lint`` — the chart itself (``--strict``);
2. ``render`` — ``helm template`` with the service's values (while 1 runs);
3. ``policy`` — `tenantry.charts.policy` on the rendered objects;
4. ``onboard`` — the tenant's objects in a throwaway namespace ``<team>-v<id>``
   (done while 1-3 run, since neither needs the other);
5. ``dry-run`` — server-side dry-run of every object *as the tenant's deployer*:
   RBAC and admission answer, and their reason is shown verbatim;
6. ``images`` — on a local cluster with real nodes, the tenant's own images
   (``<registry>/<tenant>/...``) built and loaded into its nodes, standing in for the
   tenant's CI pushing them (while 4 and 5 run); any other image is left to the
   kubelet to pull;
7. ``install`` — ``helm upgrade --install --wait`` as the deployer, stopped early
   when a pod can no longer become ready (a crash loop, an image that cannot be
   pulled) or a ReplicaSet is refused (quota);
8. ``rollout`` — every Deployment and StatefulSet fully ready, no pod failing;
9. ``helm test`` — the chart's test hooks, when it has any;
10. ``cleanup`` — the namespace deleted, whatever happened before.

When pods do not become ready, the failure says why as the kubelet does
(`tenantry.verify.diagnosis`): the container's state and exit code, its warning
events (the last failed readiness probe, the image pull error) and its last log
lines — not helm's "context deadline exceeded".

Where: a local cluster (`verification_cluster`: with a real node where this machine
can run containers, so pods really run; else kwok's simulated pods, which every
report then says), or any existing cluster through a kubeconfig (`external_cluster`),
where nothing is loaded into nodes: the user's CI pushes or loads the images.

The render/policy and dry-run checks both run even if policy fails, so a pull
request sees the platform's rule and the API server's own refusal together.
"""

from __future__ import annotations

import secrets
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from collections.abc import Set as AbstractSet
from concurrent.futures import Future, ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

import yaml
from lightkube.resources.apps_v1 import ReplicaSet, StatefulSet
from lightkube.resources.core_v1 import Namespace, Node, Pod

from tenantry import errors, helm
from tenantry.charts import images, manifests, policy, render, secret_refs
from tenantry.kube import localcluster, realnode, realnodes, waits
from tenantry.kube.client import Identity, Kube, translate
from tenantry.spec import models
from tenantry.spec.repository import Repository, ServiceSource
from tenantry.tenancy import objects
from tenantry.verify import diagnosis, pods
from tenantry.verify.results import Check, Place, ServiceReport, Status

T = TypeVar("T")

VERIFICATION_LABEL = "tenantry.dev/verification"


class RolloutFailedError(errors.TenantryError):
    """The service's pods did not become ready; the message is the kubelet's story of why
    (`tenantry.verify.diagnosis`)."""


@dataclass(frozen=True)
class Cluster:
    """Where services are verified: a kubeconfig (and context) to act through.

    ``local`` is set for a local cluster: its real nodes get the tenant's images.
    ``simulated`` says why pods there do not really run (kwok nodes only), or is empty.
    """

    name: str
    kubeconfig: Path
    context: str | None = None
    local: localcluster.LocalCluster | None = None
    simulated: str = ""

    @classmethod
    def of_local(cls, cluster: localcluster.LocalCluster, *, why_simulated: str = "") -> Cluster:
        """A local cluster; its pods are simulated unless it has a real node."""
        simulated = ""
        if not localcluster.real_node_names(cluster):
            simulated = "pods were simulated by kwok: their containers did not run" + (
                f" ({why_simulated})" if why_simulated else " (the cluster has no real node)"
            )
        return cls(
            name=cluster.name, kubeconfig=cluster.kubeconfig, local=cluster, simulated=simulated
        )

    def describe(self) -> str:
        """Where verification runs and what that means for its pods, for people."""
        if self.local is None:
            return (f"context {self.name} of {self.kubeconfig}; its nodes pull the images "
                    "(nothing is loaded)")  # fmt: skip
        if self.simulated:
            return f"local cluster {self.name}; {self.simulated}"
        return f"local cluster {self.name}; pods run on its real node"

    def connect(self, *, as_identity: Identity | None = None) -> Kube:
        """A connection as the kubeconfig's user, or as ``as_identity`` (impersonated)."""
        return Kube.connect(self.kubeconfig, context=self.context, as_identity=as_identity)

    def helm_target(self, namespace: str, identity: Identity) -> helm.Target:
        return helm.Target(
            kubeconfig=self.kubeconfig, namespace=namespace, identity=identity,
            context=self.context,
        )  # fmt: skip


# tenant -> {environment: {(secret, key), ...}} of the keys that have values there.
KnownKeys = Callable[[str], Mapping[str, AbstractSet[tuple[str, str]]]]


@dataclass(frozen=True)
class KeysUnknown:
    """Nobody can say which secret keys have values, and why (the skipped check says it)."""

    reason: str


NO_SERVER = KeysUnknown(
    "no Tenantry server to ask (tenantry login, or TENANTRY_SERVER and TENANTRY_TOKEN)"
)


class MissingSecretKeyError(errors.TenantryError):
    """The chart reads a secret key that has no value in an environment it deploys to."""


@dataclass(frozen=True)
class Options:
    """How to verify."""

    timeout_s: float = 120.0
    # Which secret keys have values, per environment, for a tenant (the Tenantry
    # server knows); else why nobody can say, and the check says so.
    known_keys: KnownKeys | KeysUnknown = NO_SERVER
    # Called with the namespace once the rollout is ready, before the chart's tests and
    # the cleanup: a caller's own checks of the running service (the tests reach the
    # pods on their IPs).
    on_ready: Callable[[str], None] | None = None


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
            self.add(name, "failed", started, _reason(e))
            return None
        self.add(name, "passed", started, _summary(result))
        return result

    def skip(self, name: str, why: str) -> None:
        self.checks.append(Check(name, "skipped", 0.0, why))

    def add(
        self, name: str, status: Status, started: float, detail: str,
        places: tuple[Place, ...] = (),
    ) -> None:  # fmt: skip
        self.checks.append(
            Check(name, status, round(time.monotonic() - started, 3), detail, places)
        )


def _reason(e: errors.TenantryError) -> str:
    if isinstance(e, errors.KubeError) and e.status_message:
        return f"{e.reason}: {e.status_message}"
    if isinstance(e, RolloutFailedError):
        return e.message  # the kubelet's story; its lines say what to fix
    if isinstance(e, errors.HelmError) and e.stderr:
        return e.stderr
    return str(e)


def _summary(result: object) -> str:
    return result if isinstance(result, str) else ""


def static_checks(
    repo: Repository,
    service: ServiceSource,
    *,
    namespace: str,
    steps: _Steps | None = None,
    known_keys: KnownKeys | KeysUnknown = NO_SERVER,
) -> tuple[list[Check], list[manifests.Rendered] | None]:
    """helm lint, render, policy and the secret keys it reads: no cluster needed
    (`tenantry lint`)."""
    steps = steps or _Steps()
    source = render.chart_input(service)
    # helm lint and helm template are two processes that need nothing of each other.
    linting, rendering = _Steps(), _Steps()
    with ThreadPoolExecutor(max_workers=1) as pool:
        linted = pool.submit(linting.run, "helm lint", lambda: _lint(source))
        rendered = rendering.run("render", lambda: render.render(service, namespace=namespace))
        linted.result()
    steps.checks += linting.checks + rendering.checks
    if rendered is None:
        steps.skip("policy", "nothing rendered")
        steps.skip("secrets", "nothing rendered")
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
        steps.add("policy", "failed", started, "\n".join(str(f) for f in findings),
                   tuple(Place(f.file, f.field, str(f)) for f in findings))  # fmt: skip
    else:
        steps.add("policy", "passed", started, f"{len(rendered)} objects")
    _check_secret_keys(steps, tenant, rendered, known_keys)
    return steps.checks, rendered


def _check_secret_keys(
    steps: _Steps,
    tenant: models.Tenant,
    rendered: list[manifests.Rendered],
    known_keys: KnownKeys | KeysUnknown,
) -> None:
    """Every key the pods read has a value in every environment the tenant deploys to:
    else the deploy there would start pods that cannot run."""
    refs = secret_refs.references(rendered)
    if not refs:
        steps.skip("secrets", "the chart reads no secrets")
        return
    read = ", ".join(f"{name} ({', '.join(sorted(keys)) or 'all keys'})"
                     for name, keys in sorted(refs.items()))  # fmt: skip
    if isinstance(known_keys, KeysUnknown):
        steps.skip("secrets", f"reads {read}; not checked: {known_keys.reason}")
        return

    def check() -> str:
        missing = secret_refs.missing(refs, known_keys(tenant.name), tenant.environments)
        if missing:
            environment, name, key = missing[0]
            raise MissingSecretKeyError(
                "no value in the environment for "
                + "; ".join(f"{n}/{k} in {e}" for e, n, k in missing),
                fix=f"an owner sets it: printf %s VALUE | tenantry secrets set {tenant.name}/"
                f"{name} {key if key != '*' else 'KEY'} --env {environment}",
            )
        return f"reads {read}: set in {', '.join(tenant.environments)}"

    steps.run("secrets", check)


def _lint(source: render.ChartInput) -> str:
    helm.lint(source.chart, values=source.values)
    return ""


def verify_service(
    repo: Repository,
    service: ServiceSource,
    *,
    cluster: Cluster | localcluster.LocalCluster,
    options: Options = Options(),
) -> ServiceReport:
    """Every check for ``service`` on ``cluster``; never leaves its namespace behind.

    Onboarding the throwaway namespace runs while helm lints and renders: the two
    do not depend on each other, and the cluster round trips hide behind helm's.
    """
    where = cluster if isinstance(cluster, Cluster) else Cluster.of_local(cluster)
    namespace = f"{service.tenant}-v{secrets.token_hex(3)}"
    steps = _Steps()
    onboarding = _Steps()
    loading = _Steps()
    loaded: Future[None] | None = None
    with where.connect() as admin, ThreadPoolExecutor(max_workers=2) as pool:
        onboarded = pool.submit(
            onboarding.run, "onboard", lambda: _onboard(admin, repo, service, namespace=namespace)
        )
        try:
            _, rendered = static_checks(repo, service, namespace=namespace, steps=steps,
                                        known_keys=options.known_keys)  # fmt: skip
            if rendered is not None and not steps.failed:
                loaded = pool.submit(_images, loading, repo, service, rendered, where)
            onboarded.result()
            steps.checks.extend(onboarding.checks)
            _in_cluster(steps, admin, repo, service, rendered, where, namespace, options,
                        images=(loaded, loading))  # fmt: skip
        finally:
            onboarded.result()
            if loaded is not None:
                loaded.result()
            steps.run("cleanup", lambda: _cleanup(admin, namespace))
    return ServiceReport(service.ref, tuple(steps.checks))


def _in_cluster(
    steps: _Steps,
    admin: Kube,
    repo: Repository,
    service: ServiceSource,
    rendered: list[manifests.Rendered] | None,
    cluster: Cluster,
    namespace: str,
    options: Options,
    *,
    images: tuple[Future[None] | None, _Steps],
) -> None:
    later = ["dry-run", "images", "install", "rollout", "helm test"]
    if rendered is None:
        for name in later:
            steps.skip(name, "the chart did not render")
        return
    if any(c.name == "onboard" and c.status == "failed" for c in steps.checks):
        for name in later:
            steps.skip(name, "onboarding failed")
        return
    deployer = Identity.service_account(namespace, objects.DEPLOYER_SA)
    with cluster.connect(as_identity=deployer) as as_tenant:
        steps.run("dry-run", lambda: _placeholders(as_tenant, rendered, namespace=namespace)
                  + _dry_run(as_tenant, rendered, namespace=namespace))  # fmt: skip
    loaded, loading = images
    if loaded is None:  # not started: an earlier check failed
        for name in later[1:]:
            steps.skip(name, "an earlier check failed")
        return
    earlier_failed = steps.failed
    loaded.result()
    steps.checks.extend(loading.checks)
    if steps.failed:
        why = "an earlier check failed" if earlier_failed else "the images could not be loaded"
        for name in later[2:]:
            steps.skip(name, why)
        return
    target = cluster.helm_target(namespace, deployer)
    source = render.chart_input(service)
    installed = steps.run(
        "install",
        lambda: _install(admin, target, source, namespace=namespace, options=options,
                         logs=not cluster.simulated),
    )  # fmt: skip
    if installed is None:
        steps.skip("rollout", "install failed")
        steps.skip("helm test", "install failed")
        return
    rolled_out = steps.run(
        "rollout", lambda: _rollout(admin, rendered, namespace=namespace, cluster=cluster)
    )
    if rolled_out is not None and options.on_ready is not None:
        options.on_ready(namespace)
    if any(_is_test_hook(obj) for obj in rendered):
        steps.run("helm test", lambda: _test(target, source.release, options,
                                             logs=not cluster.simulated))  # fmt: skip
    else:
        steps.skip("helm test", "the chart has no test hooks")


def _images(
    steps: _Steps,
    repo: Repository,
    service: ServiceSource,
    rendered: list[manifests.Rendered],
    cluster: Cluster,
) -> None:
    """Load the tenant's own images into the local cluster's real nodes (the stand-in for
    its CI pushing them to the registry); say why nothing is loaded elsewhere. Needs
    only the rendered chart, so it runs while the tenant is onboarded and dry-run."""
    if cluster.local is None:
        steps.skip("images", "not loaded: this cluster pulls them from their registries "
                   "(push or load them before verifying, as CI does)")  # fmt: skip
        return
    if cluster.simulated:
        steps.skip("images", cluster.simulated)
        return
    local = cluster.local
    own = images.tenant_images(
        images.workload_images(rendered), repo.platform.registries, service.tenant
    )
    others = [i for i in images.workload_images(rendered) if i not in own]

    def load() -> str:
        nodes = localcluster.load_images(local, own) if own else []
        said = [f"loaded {', '.join(own)} into {', '.join(nodes)}"] if own else []
        if others:
            said.append(f"left to the kubelet to pull: {', '.join(others)}")
        return "; ".join(said) or "the chart runs no images"

    steps.run("images", load)


def _test(target: helm.Target, release: str, options: Options, *, logs: bool) -> str:
    output = helm.test(target, release=release, timeout_s=options.timeout_s, logs=logs)
    _, marker, pod_logs = output.partition("POD LOGS:")
    return "test hooks succeeded" + (f"\n{marker}{pod_logs}".rstrip() if marker else "")


def _cleanup(admin: Kube, namespace: str) -> str:
    if not admin.delete(Namespace, namespace):
        return f"namespace {namespace} was never created"
    # A throwaway namespace's pods need no graceful stop. Stopped now (the namespace,
    # terminating, takes no new ones), they leave the node at once: a node still
    # stopping the last verification's pods starts the next one's seconds later.
    admin.delete_all(Pod, namespace=namespace, grace_period_s=0)
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


def _placeholders(kube: Kube, rendered: list[manifests.Rendered], *, namespace: str) -> str:
    """The Secrets the pods read, with made-up values, in the throwaway namespace (as the
    tenant): the real values live only in each environment's clusters, and the pods
    must start here all the same."""
    refs = secret_refs.references(rendered)
    for name, keys in sorted(refs.items()):
        kube.apply({
            "apiVersion": "v1", "kind": "Secret", "type": "Opaque",
            "metadata": {"name": name, "namespace": namespace,
                         "labels": {VERIFICATION_LABEL: "placeholder"}},
            "stringData": {key: f"placeholder-{secrets.token_hex(8)}" for key in sorted(keys)},
        })  # fmt: skip
    if not refs:
        return ""
    return f"placeholder values for secret {', '.join(sorted(refs))}; "


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
    logs: bool,
) -> str:
    try:
        release = helm.upgrade_install(
            target,
            release=source.release,
            chart=source.chart,
            values=source.values,
            wait=True,
            timeout_s=options.timeout_s,
            abort_if=lambda: hopeless(admin, namespace),
        )
    except errors.HelmError as e:
        # Stopped early (a pod that cannot become ready) or timed out: say why as the
        # kubelet does. helm's own words only when they add something (not our abort).
        aborted = e.message.endswith(f"stopped: {e.stderr}")
        why = _not_ready(
            admin, namespace, also="" if aborted else f"helm: {e.stderr or e}", logs=logs
        )
        if why is None:
            raise
        raise why from e
    return f"revision {release.revision} {release.status}"


def _replica_set_failures(kube: Kube, namespace: str) -> list[str]:
    failures = []
    for replica_set in kube.list(ReplicaSet, namespace=namespace):
        for condition in (replica_set.status.conditions or []) if replica_set.status else []:
            if condition.type == "ReplicaFailure" and condition.status == "True":
                name = replica_set.metadata.name if replica_set.metadata else "?"
                failures.append(f"ReplicaSet {name}: {condition.reason}: {condition.message}")
    return failures


def hopeless(kube: Kube, namespace: str) -> str | None:
    """Why the rollout in ``namespace`` cannot succeed, if that is already certain."""
    failures = _replica_set_failures(kube, namespace)
    if failures:
        return failures[0]
    for pod in pods.statuses(kube, namespace):
        reason = diagnosis.fatal(pod)
        if reason:
            return reason
    return None


def _not_ready(
    admin: Kube, namespace: str, *, also: str = "", logs: bool = True
) -> RolloutFailedError | None:
    """The error saying why the pods in ``namespace`` are not ready: status, events and
    log tails (`diagnosis.report`), then ``also`` (what the waiting tool said); None
    when no pod or ReplicaSet has anything to say."""
    try:
        story = diagnosis.report(
            pods.observe(admin, namespace, logs=logs),
            problems=_replica_set_failures(admin, namespace),
        )
    except errors.KubeError as e:
        story = f"could not read the pods' state: {e}"
    if not story:
        return None
    return RolloutFailedError(
        "\n".join(part for part in (story, also) if part),
        fix="the kubelet's reason, events and log lines above say what the pods need",
    )


def _rollout(
    admin: Kube, rendered: list[manifests.Rendered], *, namespace: str, cluster: Cluster
) -> str:
    ready = []
    try:
        for obj in rendered:
            if obj.kind == "Deployment":
                state = waits.wait_for_rollout(
                    admin, namespace=namespace, name=obj.name, timeout_s=10
                )
                ready.append(f"{obj.ref} {state}")
            elif obj.kind == "StatefulSet":
                sts = admin.get(StatefulSet, obj.name, namespace=namespace)
                want = (sts.spec.replicas if sts.spec else None) or 1
                have = (sts.status.readyReplicas or 0) if sts.status else 0
                if have < want:
                    raise errors.WaitTimeoutError(f"{obj.ref}: {have}/{want} ready")
                ready.append(f"{obj.ref} {have}/{want} ready")
    except errors.WaitTimeoutError as e:
        why = _not_ready(admin, namespace, also=str(e), logs=not cluster.simulated)
        if why is None:
            raise
        raise why from e
    reason = hopeless(admin, namespace)
    if reason:
        raise _not_ready(admin, namespace, logs=not cluster.simulated) or RolloutFailedError(reason)
    done = "; ".join(ready) or "no workloads"
    return f"{done} ({cluster.simulated})" if cluster.simulated else done


# The warm cluster verifications share; created on first use, reused after.
WARM_CLUSTER = "verify"
# A verification cluster's kwok nodes: one is enough when pods run on the real node.
_KWOK_NODES_BESIDE_REAL = 1
_KWOK_NODES_ALONE = 3


def real_nodes_unsupported() -> str | None:
    """Why this machine cannot run a real node (then pods are simulated), or None."""
    try:
        realnodes.preflight()
    except errors.RealNodeUnsupportedError as e:
        return e.message
    return None


def _create(name: str, *, why_not_real: str | None, say: Callable[[str], None]) -> None:
    if why_not_real is None:
        say(f"creating cluster {name!r} with a real node (pods really run)")
        localcluster.create(name, nodes=_KWOK_NODES_BESIDE_REAL, real_nodes=1, on_progress=say)
    else:
        say(f"creating cluster {name!r}; pods will be simulated by kwok: {why_not_real}")
        localcluster.create(name, nodes=_KWOK_NODES_ALONE)


def _cordon_kwok_nodes(cluster: localcluster.LocalCluster) -> None:
    """Keep pods off the kwok nodes of a cluster with real nodes: kwok turns any pod
    Running and Ready, so a pod there would pass verification without running."""
    with cluster.connect() as admin:
        for node in admin.list(Node):
            labels = (node.metadata.labels if node.metadata else None) or {}
            name = node.metadata.name if node.metadata else None
            if not name or labels.get(realnode.REAL_NODE_LABEL) == "real":
                continue
            if node.spec is not None and node.spec.unschedulable:
                continue
            # A merge patch, not an apply: the node's labels and annotations belong to
            # the field manager that created it, and an apply would take them away.
            with translate(f"cordon node {name}"):
                admin.client.patch(Node, name, {"spec": {"unschedulable": True}})


@contextmanager
def verification_cluster(
    *, fresh: bool, name: str = WARM_CLUSTER, on_progress: Callable[[str], None] | None = None
) -> Iterator[Cluster]:
    """A local cluster to verify on: the warm shared one, or a fresh one deleted afterwards.

    Where this machine can run containers it has a real node, and its kwok nodes are
    cordoned so every pod really runs there; a warm cluster made before (kwok only)
    is replaced. Elsewhere it is kwok only, and every report says pods were simulated.
    """
    say = on_progress or (lambda _: None)
    why_not_real = real_nodes_unsupported()
    if fresh:
        throwaway = f"{name}-{secrets.token_hex(3)}"
        try:
            _create(throwaway, why_not_real=why_not_real, say=say)
            yield _prepared(localcluster.get(throwaway), why_not_real)
        finally:
            localcluster.delete(throwaway)
        return
    try:
        cluster = localcluster.get(name)
    except errors.ClusterNotFoundError:
        _create(name, why_not_real=why_not_real, say=say)
        cluster = localcluster.get(name)
    else:
        if why_not_real is None and not localcluster.real_node_names(cluster):
            say(f"cluster {name!r} has no real node but this machine can run one: recreating it")
            localcluster.delete(name)
            _create(name, why_not_real=why_not_real, say=say)
            cluster = localcluster.get(name)
        elif not cluster.reachable():
            cluster = localcluster.start(name)
    yield _prepared(cluster, why_not_real)


def _prepared(cluster: localcluster.LocalCluster, why_not_real: str | None) -> Cluster:
    if localcluster.real_node_names(cluster):
        _cordon_kwok_nodes(cluster)
    return Cluster.of_local(cluster, why_simulated=why_not_real or "")


def external_cluster(kubeconfig: Path, *, context: str | None = None) -> Cluster:
    """An existing cluster (kind in CI, a shared test cluster) named by a kubeconfig file,
    checked to be readable, to have ``context`` (or a current one) and to answer."""
    path = kubeconfig.expanduser()
    try:
        config = yaml.safe_load(path.read_text())
    except FileNotFoundError:
        raise errors.UsageError(
            f"kubeconfig {path} does not exist",
            fix="pass the path of a kubeconfig file, e.g. `kind get kubeconfig > kind.yaml`",
        ) from None
    except (OSError, UnicodeDecodeError) as e:
        raise errors.UsageError(
            f"cannot read kubeconfig {path}: {e}",
            fix="check the file's permissions (it must be readable by this user)",
        ) from e
    except yaml.YAMLError as e:
        raise errors.UsageError(
            f"kubeconfig {path} is not YAML: {e}", fix="pass a kubeconfig file"
        ) from e
    if config is None:
        raise errors.UsageError(
            f"kubeconfig {path} is empty",
            fix="write the cluster's kubeconfig into it (in CI: from the secret that holds it)",
        )
    if not isinstance(config, dict):
        raise errors.UsageError(f"kubeconfig {path} is not a kubeconfig (no mapping at the top)",
                                fix="pass a kubeconfig file")  # fmt: skip
    names = [str(c.get("name")) for c in config.get("contexts") or [] if isinstance(c, dict)]
    chosen = context or config.get("current-context")
    if not chosen:
        raise errors.UsageError(
            f"kubeconfig {path} sets no current-context",
            fix=f"pass --context, one of: {', '.join(names) or '(it has no contexts)'}",
        )
    if chosen not in names:
        raise errors.UsageError(
            f"kubeconfig {path} has no context {chosen!r}",
            fix=f"pass --context, one of: {', '.join(names) or '(it has no contexts)'}",
        )
    cluster = Cluster(name=str(chosen), kubeconfig=path.resolve(), context=context)
    try:
        with cluster.connect() as kube:
            kube.get(Namespace, "default")
    except errors.ClusterError as e:
        raise errors.UsageError(
            f"kubeconfig {path}, context {chosen!r}: {e.message}", fix=e.fix
        ) from e
    except errors.KubeError as e:
        raise errors.ClusterError(
            f"the cluster of context {chosen!r} in {path} did not answer as expected: {e.message}",
            fix="check that the cluster runs and that the kubeconfig's user may manage "
            "namespaces, RBAC and quotas and impersonate ServiceAccounts (verify onboards "
            "the tenant there)",
        ) from e
    return cluster


def verify_all(
    repo: Repository,
    services: Sequence[ServiceSource],
    *,
    cluster: Cluster | localcluster.LocalCluster,
    jobs: int = 1,
    options: Options = Options(),
    on_done: Callable[[ServiceReport], None] | None = None,
) -> list[ServiceReport]:
    """Verify ``services`` on ``cluster``, ``jobs`` at a time; reports in input order."""
    where = cluster if isinstance(cluster, Cluster) else Cluster.of_local(cluster)

    def one(service: ServiceSource) -> ServiceReport:
        report = verify_service(repo, service, cluster=where, options=options)
        if on_done:
            on_done(report)
        return report

    with ThreadPoolExecutor(max_workers=max(1, jobs)) as pool:
        return list(pool.map(one, services))
