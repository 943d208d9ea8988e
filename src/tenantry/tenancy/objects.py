"""Tenant → the Kubernetes objects it gets in one cluster (pure).

Per cluster there are two kinds of desired objects:

* **platform objects**, once per cluster: the ClusterRoles tenants are bound to,
  the platform's own namespaces and identity, and one ValidatingAdmissionPolicy
  (CEL, enforced by the API server itself) that reads each tenant's allowed
  registries from an annotation on the tenant's Namespace. One shared policy,
  rather than one per tenant, keeps admission cost flat at a thousand tenants, and
  tenants cannot edit their Namespace, so they cannot widen their own registries.
* **tenant objects**, per tenant: Namespace ``<team>`` (a cluster serves one
  environment, so the team name alone is unique there), ResourceQuota,
  LimitRange, the deployer ServiceAccount and RoleBindings, one NetworkPolicy.

People's own rights depend on the cluster's environment (``peopleWrite``). Where
people may write, owners get ``tenantry:owner`` (write workloads and Secrets, exec)
and members ``tenantry:member`` (read). Where they may not (production, by default),
owners and members alike get ``tenantry:viewer``: read workloads, pods and their
logs, config maps, events and quota, but no Secrets, no exec or port-forward and no
write. Then the tenant's deployer ServiceAccount, used by the platform through
impersonation after a promotion is approved, is the only writer: an owner cannot
go around the approval by writing a Deployment, or a Helm release record (a
Secret), with their own identity. The read-only bindings have their own names
because a RoleBinding's role cannot change in place: flipping ``peopleWrite``
creates the new binding and prunes the old one.

Every object carries ``app.kubernetes.io/managed-by: tenantry`` so pruning only
ever touches what the platform made.
"""

from __future__ import annotations

from typing import Any

from tenantry.observability import logs
from tenantry.spec import models

MANAGED_BY = {"app.kubernetes.io/managed-by": "tenantry"}
TENANT_LABEL = "tenantry.dev/tenant"
ENVIRONMENT_LABEL = "tenantry.dev/environment"
REGISTRIES_ANNOTATION = "tenantry.dev/allowed-registries"

DEPLOYER_SA = "tenantry-deployer"
PLATFORM_NAMESPACE = "tenantry-system"
PLATFORM_SA = "tenantry-platform"

ROLE_DEPLOYER = "tenantry:deployer"
ROLE_OWNER = "tenantry:owner"
ROLE_MEMBER = "tenantry:member"
ROLE_VIEWER = "tenantry:viewer"
ROLE_IMPERSONATE = "tenantry:impersonate-deployer"
POLICY_NAME = "tenantry-tenant-guardrails"

Manifest = dict[str, Any]

_RW = ["get", "list", "watch", "create", "update", "patch", "delete", "deletecollection"]
_RO = ["get", "list", "watch"]

# What a tenant's deployer may do in its own namespace: manage workloads and their
# config. Quotas, limits and network policies are read-only; RBAC objects are absent,
# so it cannot grant itself (or anyone) more.
DEPLOYER_RULES: list[Manifest] = [
    {
        "apiGroups": [""],
        "resources": [
            "configmaps", "secrets", "services", "serviceaccounts",
            "persistentvolumeclaims", "pods",
        ],
        "verbs": _RW,
    },
    {"apiGroups": [""], "resources": ["pods/log", "endpoints", "events"], "verbs": _RO},
    {"apiGroups": [""], "resources": ["resourcequotas", "limitranges"], "verbs": _RO},
    {
        "apiGroups": ["apps"],
        "resources": ["deployments", "statefulsets", "replicasets", "daemonsets"],
        "verbs": _RW,
    },
    {"apiGroups": ["apps"], "resources": ["deployments/scale", "statefulsets/scale"], "verbs": _RW},
    {"apiGroups": ["batch"], "resources": ["jobs", "cronjobs"], "verbs": _RW},
    {"apiGroups": ["autoscaling"], "resources": ["horizontalpodautoscalers"], "verbs": _RW},
    {"apiGroups": ["policy"], "resources": ["poddisruptionbudgets"], "verbs": _RW},
    {"apiGroups": ["networking.k8s.io"], "resources": ["ingresses"], "verbs": _RW},
    {"apiGroups": ["networking.k8s.io"], "resources": ["networkpolicies"], "verbs": _RO},
    {
        "apiGroups": ["monitoring.coreos.com"],
        "resources": ["servicemonitors", "podmonitors", "prometheusrules"],
        "verbs": _RW,
    },
    {"apiGroups": ["events.k8s.io"], "resources": ["events"], "verbs": _RO},
]  # fmt: skip

OWNER_RULES: list[Manifest] = [
    *DEPLOYER_RULES,
    {"apiGroups": [""], "resources": ["pods/exec", "pods/portforward"], "verbs": ["create", "get"]},
    {
        "apiGroups": ["rbac.authorization.k8s.io"],
        "resources": ["rolebindings", "roles"],
        "verbs": _RO,
    },
]

MEMBER_RULES: list[Manifest] = [
    {
        "apiGroups": ["", "apps", "batch", "autoscaling", "policy", "networking.k8s.io"],
        "resources": [
            "pods", "pods/log", "services", "endpoints", "configmaps", "events",
            "deployments", "statefulsets", "replicasets", "daemonsets", "jobs", "cronjobs",
            "horizontalpodautoscalers", "poddisruptionbudgets", "ingresses", "networkpolicies",
            "resourcequotas", "limitranges", "persistentvolumeclaims",
        ],
        "verbs": _RO,
    },
]  # fmt: skip


# What owners and members may do where people do not write (production by default):
# look, never change. No Secrets (Helm release records and the tenant's credentials),
# no exec, attach or port-forward (a way to change what runs without an API write).
VIEWER_RULES: list[Manifest] = [
    {
        "apiGroups": [""],
        "resources": [
            "pods", "pods/log", "services", "endpoints", "configmaps", "events",
            "resourcequotas", "limitranges", "persistentvolumeclaims",
        ],
        "verbs": _RO,
    },
    {
        "apiGroups": ["apps"],
        "resources": ["deployments", "statefulsets", "replicasets", "daemonsets"],
        "verbs": _RO,
    },
    {"apiGroups": ["batch"], "resources": ["jobs", "cronjobs"], "verbs": _RO},
    {"apiGroups": ["autoscaling"], "resources": ["horizontalpodautoscalers"], "verbs": _RO},
    {"apiGroups": ["policy"], "resources": ["poddisruptionbudgets"], "verbs": _RO},
    {
        "apiGroups": ["networking.k8s.io"],
        "resources": ["ingresses", "networkpolicies"],
        "verbs": _RO,
    },
    {"apiGroups": ["events.k8s.io"], "resources": ["events"], "verbs": _RO},
]  # fmt: skip


def _meta(name: str, *, namespace: str | None = None, tenant: str | None = None) -> Manifest:
    labels = dict(MANAGED_BY)
    if tenant:
        labels[TENANT_LABEL] = tenant
    meta: Manifest = {"name": name, "labels": labels}
    if namespace:
        meta["namespace"] = namespace
    return meta


def _cluster_role(name: str, rules: list[Manifest]) -> Manifest:
    return {
        "apiVersion": "rbac.authorization.k8s.io/v1",
        "kind": "ClusterRole",
        "metadata": _meta(name),
        "rules": rules,
    }


# The pod spec inside every kind the policy checks.
_POD_SPEC = (
    "object.kind == 'Pod' ? object.spec : "
    "object.kind == 'CronJob' ? object.spec.jobTemplate.spec.template.spec : "
    "object.spec.template.spec"
)
_CONTAINERS = (
    "variables.spec.containers + "
    "(has(variables.spec.initContainers) ? variables.spec.initContainers : [])"
)


def admission_policy() -> list[Manifest]:
    """The ValidatingAdmissionPolicy and binding that guard every tenant namespace."""
    policy = {
        "apiVersion": "admissionregistration.k8s.io/v1",
        "kind": "ValidatingAdmissionPolicy",
        "metadata": _meta(POLICY_NAME),
        "spec": {
            "failurePolicy": "Fail",
            "matchConstraints": {
                "namespaceSelector": {
                    "matchExpressions": [{"key": TENANT_LABEL, "operator": "Exists"}]
                },
                "resourceRules": [
                    {
                        "apiGroups": [""],
                        "apiVersions": ["v1"],
                        "operations": ["CREATE", "UPDATE"],
                        "resources": ["pods"],
                    },
                    {
                        "apiGroups": ["apps"],
                        "apiVersions": ["v1"],
                        "operations": ["CREATE", "UPDATE"],
                        "resources": ["deployments", "statefulsets", "daemonsets", "replicasets"],
                    },
                    {
                        "apiGroups": ["batch"],
                        "apiVersions": ["v1"],
                        "operations": ["CREATE", "UPDATE"],
                        "resources": ["jobs", "cronjobs"],
                    },
                ],
            },
            "variables": [
                {"name": "spec", "expression": _POD_SPEC},
                {"name": "containers", "expression": _CONTAINERS},
                {
                    "name": "registries",
                    "expression": (
                        f"'{REGISTRIES_ANNOTATION}' in namespaceObject.metadata.annotations ? "
                        f"namespaceObject.metadata.annotations['{REGISTRIES_ANNOTATION}']"
                        ".split(',') : []"
                    ),
                },
                {
                    "name": "badImages",
                    "expression": (
                        "variables.containers.filter(c, !variables.registries.exists(r, "
                        "c.image.startsWith(r + '/'))).map(c, c.image)"
                    ),
                },
                {
                    "name": "noResources",
                    "expression": (
                        "variables.containers.filter(c, !has(c.resources) || "
                        "!has(c.resources.requests) || !has(c.resources.limits) || "
                        "!('cpu' in c.resources.requests) || "
                        "!('memory' in c.resources.requests) || "
                        "!('cpu' in c.resources.limits) || !('memory' in c.resources.limits))"
                        ".map(c, c.name)"
                    ),
                },
            ],
            "validations": [
                {
                    "expression": "size(variables.badImages) == 0",
                    "messageExpression": (
                        "'images ' + variables.badImages.join(', ') + ' are not from the "
                        "tenant\\'s allowed registries (' + variables.registries.join(', ') + ')'"
                    ),
                    "reason": "Forbidden",
                },
                {
                    "expression": "size(variables.noResources) == 0",
                    "messageExpression": (
                        "'containers ' + variables.noResources.join(', ') + ' must set cpu and "
                        "memory in both resources.requests and resources.limits'"
                    ),
                    "reason": "Forbidden",
                },
                {
                    "expression": (
                        "variables.containers.all(c, !has(c.securityContext) || "
                        "!has(c.securityContext.privileged) || !c.securityContext.privileged)"
                    ),
                    "message": "privileged containers are not allowed",
                    "reason": "Forbidden",
                },
                {
                    "expression": (
                        "!has(variables.spec.volumes) || "
                        "variables.spec.volumes.all(v, !has(v.hostPath))"
                    ),
                    "message": "hostPath volumes are not allowed",
                    "reason": "Forbidden",
                },
                {
                    "expression": (
                        "!(has(variables.spec.hostNetwork) && variables.spec.hostNetwork) && "
                        "!(has(variables.spec.hostPID) && variables.spec.hostPID)"
                    ),
                    "message": "hostNetwork and hostPID are not allowed",
                    "reason": "Forbidden",
                },
            ],
        },
    }
    binding = {
        "apiVersion": "admissionregistration.k8s.io/v1",
        "kind": "ValidatingAdmissionPolicyBinding",
        "metadata": _meta(POLICY_NAME),
        "spec": {"policyName": POLICY_NAME, "validationActions": ["Deny"]},
    }
    return [policy, binding]


def platform_objects(platform: models.Platform) -> list[Manifest]:
    """Objects every cluster needs once, whatever its tenants."""
    namespaces = [
        {"apiVersion": "v1", "kind": "Namespace", "metadata": _meta(name)}
        for name in (
            PLATFORM_NAMESPACE,
            platform.platform_namespaces.ingress,
            platform.platform_namespaces.monitoring,
        )
    ]
    return [
        *namespaces,
        {
            "apiVersion": "v1",
            "kind": "ServiceAccount",
            "metadata": _meta(PLATFORM_SA, namespace=PLATFORM_NAMESPACE),
        },
        _cluster_role(ROLE_DEPLOYER, DEPLOYER_RULES),
        _cluster_role(ROLE_OWNER, OWNER_RULES),
        _cluster_role(ROLE_MEMBER, MEMBER_RULES),
        _cluster_role(ROLE_VIEWER, VIEWER_RULES),
        _cluster_role(
            ROLE_IMPERSONATE,
            [
                {
                    "apiGroups": [""],
                    "resources": ["serviceaccounts"],
                    "verbs": ["impersonate"],
                    "resourceNames": [DEPLOYER_SA],
                }
            ],
        ),
        *admission_policy(),
    ]


def quota_hard(quota: models.Quota) -> dict[str, str]:
    """ResourceQuota ``spec.hard`` for a tenant quota: cpu and memory bound both
    requests and limits, so limits cannot be overcommitted past the quota."""
    hard: dict[str, str] = {}
    for key, value in quota.as_dict().items():
        if key in ("cpu", "memory"):
            hard[f"requests.{key}"] = value
            hard[f"limits.{key}"] = value
        else:
            hard[key] = value
    return hard


def _binding(
    name: str, namespace: str, tenant: str, role: str, subjects: list[Manifest]
) -> Manifest:
    return {
        "apiVersion": "rbac.authorization.k8s.io/v1",
        "kind": "RoleBinding",
        "metadata": _meta(name, namespace=namespace, tenant=tenant),
        "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole", "name": role},
        "subjects": subjects,
    }


def _people(people: models.People) -> list[Manifest]:
    group = "rbac.authorization.k8s.io"
    return [{"apiGroup": group, "kind": "User", "name": u} for u in people.users] + [
        {"apiGroup": group, "kind": "Group", "name": g} for g in people.groups
    ]


def tenant_registries(tenant: models.Tenant, platform: models.Platform) -> tuple[str, ...]:
    """The registries a tenant may pull from: its own list, else the platform's."""
    return tenant.registries or platform.registries


def tenant_objects(
    tenant: models.Tenant,
    platform: models.Platform,
    *,
    environment: str,
    namespace: str | None = None,
    people_may_write: bool = False,
) -> list[Manifest]:
    """Everything ``tenant`` gets in one cluster of ``environment``, in apply order.

    ``people_may_write`` is the environment's `models.Environment.people_may_write`:
    without it owners and members are bound to the read-only ``tenantry:viewer``
    (the default, so a caller that does not say never opens a write path).
    ``namespace`` overrides the namespace name (``<team>``); verification uses it to
    onboard a tenant into a throwaway namespace on a shared cluster.
    """
    ns = namespace or tenant.name
    quota = tenant.quota.merged_over(platform.defaults.quota)
    container = tenant.container_defaults or platform.defaults.container
    pns = platform.platform_namespaces
    namespace_meta = _meta(ns, tenant=tenant.name)
    namespace_meta["labels"].update(
        {
            ENVIRONMENT_LABEL: environment,
            "pod-security.kubernetes.io/enforce": "restricted",
            "pod-security.kubernetes.io/enforce-version": "latest",
            "pod-security.kubernetes.io/warn": "restricted",
            "pod-security.kubernetes.io/audit": "restricted",
        }
    )
    namespace_meta["annotations"] = {
        REGISTRIES_ANNOTATION: ",".join(r.rstrip("/") for r in tenant_registries(tenant, platform)),
        # Read by the Splunk OpenTelemetry Collector chart, so a cluster running it routes
        # the namespace's logs to the same index as Tenantry's own shipper.
        logs.INDEX_ANNOTATION: logs.index(tenant, platform),
    }
    allowed_namespaces = sorted({pns.ingress, pns.monitoring, *tenant.allow_from})
    objects: list[Manifest] = [
        {"apiVersion": "v1", "kind": "Namespace", "metadata": namespace_meta},
        {
            "apiVersion": "v1",
            "kind": "ResourceQuota",
            "metadata": _meta("tenantry-quota", namespace=ns, tenant=tenant.name),
            "spec": {"hard": quota_hard(quota)},
        },
        {
            "apiVersion": "v1",
            "kind": "LimitRange",
            "metadata": _meta("tenantry-defaults", namespace=ns, tenant=tenant.name),
            "spec": {
                "limits": [
                    {
                        "type": "Container",
                        "defaultRequest": container.requests.model_dump(),
                        "default": container.limits.model_dump(),
                    }
                ]
            },
        },
        {
            "apiVersion": "v1",
            "kind": "ServiceAccount",
            "metadata": _meta(DEPLOYER_SA, namespace=ns, tenant=tenant.name),
        },
        _binding(
            DEPLOYER_SA,
            ns,
            tenant.name,
            ROLE_DEPLOYER,
            [{"kind": "ServiceAccount", "name": DEPLOYER_SA, "namespace": ns}],
        ),
        _binding(
            "tenantry-platform-impersonates-deployer",
            ns,
            tenant.name,
            ROLE_IMPERSONATE,
            [{"kind": "ServiceAccount", "name": PLATFORM_SA, "namespace": PLATFORM_NAMESPACE}],
        ),
        people_binding(ns, tenant.name, "owners", _people(tenant.owners), people_may_write),
        {
            "apiVersion": "networking.k8s.io/v1",
            "kind": "NetworkPolicy",
            "metadata": _meta("tenantry-isolation", namespace=ns, tenant=tenant.name),
            "spec": {
                # Selecting every pod with only these ingress rules denies all other ingress.
                "podSelector": {},
                "policyTypes": ["Ingress"],
                "ingress": [
                    {"from": [{"podSelector": {}}]},
                    {
                        "from": [
                            {
                                "namespaceSelector": {
                                    "matchExpressions": [
                                        {
                                            "key": "kubernetes.io/metadata.name",
                                            "operator": "In",
                                            "values": allowed_namespaces,
                                        }
                                    ]
                                }
                            }
                        ]
                    },
                ],
            },
        },
    ]
    members = _people(tenant.members)
    if members:
        objects.append(people_binding(ns, tenant.name, "members", members, people_may_write))
    return objects


def people_binding(
    namespace: str, tenant: str, who: str, subjects: list[Manifest], people_may_write: bool
) -> Manifest:
    """The RoleBinding of a tenant's ``owners`` or ``members`` in one namespace.

    Where people may write: ``tenantry-owners`` → ``tenantry:owner`` and
    ``tenantry-members`` → ``tenantry:member``. Elsewhere ``tenantry-<who>-viewer`` →
    ``tenantry:viewer``: another name, because a RoleBinding's roleRef is immutable.
    """
    if people_may_write:
        role = ROLE_OWNER if who == "owners" else ROLE_MEMBER
        return _binding(f"tenantry-{who}", namespace, tenant, role, subjects)
    return _binding(f"tenantry-{who}-viewer", namespace, tenant, ROLE_VIEWER, subjects)
