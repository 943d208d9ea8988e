"""Policy on rendered objects: what a tenant's chart may contain (pure).

These are the same rules the clusters enforce (RBAC keeps a tenant in its
namespace, the admission policy checks images, resources and host access), checked
before anything reaches a cluster so a pull request fails in seconds with a
message naming the template file, the object, the field and the fix.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass
from typing import Any

from tenantry.charts.manifests import Rendered, pod_spec
from tenantry.spec.models import registry_allowed

# Kinds that are not namespaced: a tenant can never own one.
CLUSTER_SCOPED = frozenset(
    {
        "Namespace", "Node", "PersistentVolume", "ClusterRole", "ClusterRoleBinding",
        "CustomResourceDefinition", "StorageClass", "PriorityClass", "RuntimeClass",
        "IngressClass", "CSIDriver", "CSINode", "VolumeAttachment", "APIService",
        "MutatingWebhookConfiguration", "ValidatingWebhookConfiguration",
        "ValidatingAdmissionPolicy", "ValidatingAdmissionPolicyBinding",
        "MutatingAdmissionPolicy", "MutatingAdmissionPolicyBinding",
        "CertificateSigningRequest", "FlowSchema", "PriorityLevelConfiguration",
    }
)  # fmt: skip

STANDARD_LABELS = (
    "tenantry.dev/tenant",
    "tenantry.dev/service",
    "app.kubernetes.io/version",
    "app.kubernetes.io/managed-by",
)

# Workloads that serve traffic and therefore need probes (Jobs run to completion).
_LONG_RUNNING = frozenset({"Deployment", "StatefulSet", "DaemonSet", "ReplicaSet"})


@dataclass(frozen=True)
class Finding:
    """One policy violation in one rendered object."""

    rule: str
    file: str
    object: str
    field: str
    problem: str
    fix: str

    def __str__(self) -> str:
        return f"{self.file}: {self.object}: {self.field}: {self.problem} ({self.fix})"


@dataclass(frozen=True)
class Context:
    """What the rendered objects are checked against."""

    tenant: str
    namespace: str
    registries: tuple[str, ...]


def check(objects: Iterable[Rendered], context: Context) -> list[Finding]:
    """Every finding for every object, in order."""
    findings: list[Finding] = []
    for obj in objects:
        for rule in _RULES:
            findings.extend(rule(obj, context))
    return findings


def _finding(obj: Rendered, rule: str, field: str, problem: str, fix: str) -> Finding:
    return Finding(rule, obj.source or "(rendered)", obj.ref, field, problem, fix)


def namespaced_only(obj: Rendered, context: Context) -> Iterator[Finding]:
    """Only namespaced kinds: a tenant cannot create cluster-wide objects."""
    if obj.kind in CLUSTER_SCOPED:
        yield _finding(
            obj, "namespaced-only", "kind", f"{obj.kind} is cluster-scoped",
            "ask the platform team; tenants may only create namespaced objects",
        )  # fmt: skip


# The External Secrets Operator's kinds read from (or write to) a store every tenant's
# secrets share: only the platform makes them, each naming the tenant's own secret.
PLATFORM_SECRET_KINDS = frozenset({"ExternalSecret", "SecretStore", "PushSecret"})


def no_secret_stores(obj: Rendered, context: Context) -> Iterator[Finding]:
    """No ExternalSecret, SecretStore or PushSecret in a tenant's chart."""
    if obj.kind in PLATFORM_SECRET_KINDS and obj.api_group == "external-secrets.io":
        yield _finding(
            obj, "platform-secrets-only", "kind",
            f"{obj.kind} reads the store every tenant's secrets are in",
            "name the keys in the descriptor's secrets: (or a secretKeyRef) and set them "
            "with tenantry secrets set; the platform makes the ExternalSecret",
        )  # fmt: skip


def own_namespace(obj: Rendered, context: Context) -> Iterator[Finding]:
    """No object in another namespace than the tenant's."""
    namespace = obj.manifest.get("metadata", {}).get("namespace")
    if namespace and namespace != context.namespace:
        yield _finding(
            obj, "own-namespace", "metadata.namespace",
            f"is {namespace!r}, outside the tenant's namespace {context.namespace!r}",
            "remove metadata.namespace; the release namespace is set at install",
        )  # fmt: skip


def _containers(spec: Mapping[str, Any]) -> Iterator[tuple[str, Mapping[str, Any]]]:
    for key in ("initContainers", "containers"):
        for i, container in enumerate(spec.get(key) or []):
            if isinstance(container, Mapping):
                yield f"{key}[{i}]", container


def allowed_images(obj: Rendered, context: Context) -> Iterator[Finding]:
    """Images only from the tenant's allowed registries."""
    found = pod_spec(obj)
    if found is None:
        return
    path, spec = found
    for where, container in _containers(spec):
        image = str(container.get("image", ""))
        if not registry_allowed(image.rsplit("@", 1)[0], context.registries):
            yield _finding(
                obj, "allowed-registries", f"{path}.{where}.image",
                f"{image!r} is not from the tenant's registries ({', '.join(context.registries)})",
                "push the image to one of those registries",
            )  # fmt: skip


def resources_set(obj: Rendered, context: Context) -> Iterator[Finding]:
    """Every container sets CPU and memory requests and limits."""
    found = pod_spec(obj)
    if found is None:
        return
    path, spec = found
    for where, container in _containers(spec):
        resources = container.get("resources") or {}
        missing = [
            f"{kind}.{resource}"
            for kind in ("requests", "limits")
            for resource in ("cpu", "memory")
            if resource not in (resources.get(kind) or {})
        ]
        if missing:
            yield _finding(
                obj, "resources", f"{path}.{where}.resources",
                f"missing {', '.join(missing)}",
                "set cpu and memory under both resources.requests and resources.limits",
            )  # fmt: skip


def no_host_access(obj: Rendered, context: Context) -> Iterator[Finding]:
    """No privileged containers, hostPath volumes, hostNetwork or hostPID."""
    found = pod_spec(obj)
    if found is None:
        return
    path, spec = found
    for flag in ("hostNetwork", "hostPID"):
        if spec.get(flag):
            yield _finding(obj, "host-access", f"{path}.{flag}", "is true", f"remove {flag}")
    for i, volume in enumerate(spec.get("volumes") or []):
        if isinstance(volume, Mapping) and "hostPath" in volume:
            yield _finding(
                obj, "host-access", f"{path}.volumes[{i}].hostPath", "mounts the node's disk",
                "use an emptyDir, a ConfigMap or a PersistentVolumeClaim",
            )  # fmt: skip
    for where, container in _containers(spec):
        if (container.get("securityContext") or {}).get("privileged"):
            yield _finding(
                obj, "host-access", f"{path}.{where}.securityContext.privileged", "is true",
                "remove privileged; the namespace enforces Pod Security 'restricted'",
            )  # fmt: skip


def probes_set(obj: Rendered, context: Context) -> Iterator[Finding]:
    """Long-running containers have readiness and liveness probes."""
    if obj.kind not in _LONG_RUNNING:
        return
    found = pod_spec(obj)
    if found is None:
        return
    path, spec = found
    for i, container in enumerate(spec.get("containers") or []):
        for probe in ("readinessProbe", "livenessProbe"):
            if probe not in container:
                yield _finding(
                    obj, "probes", f"{path}.containers[{i}].{probe}", "is missing",
                    f"add a {probe} so rollouts wait for healthy pods",
                )  # fmt: skip


def standard_labels(obj: Rendered, context: Context) -> Iterator[Finding]:
    """Every object carries the platform's standard labels, with the right tenant."""
    labels = obj.manifest.get("metadata", {}).get("labels") or {}
    missing = [label for label in STANDARD_LABELS if label not in labels]
    if missing:
        yield _finding(
            obj, "labels", "metadata.labels", f"missing {', '.join(missing)}",
            "add the standard labels (the base chart's _helpers.tpl shows them)",
        )  # fmt: skip
    elif labels.get("tenantry.dev/tenant") != context.tenant:
        yield _finding(
            obj, "labels", "metadata.labels.tenantry.dev/tenant",
            f"is {labels.get('tenantry.dev/tenant')!r}, not {context.tenant!r}",
            f"set it to {context.tenant}",
        )  # fmt: skip


_RULES = (
    namespaced_only,
    no_secret_stores,
    own_namespace,
    allowed_images,
    resources_set,
    no_host_access,
    probes_set,
    standard_labels,
)
