"""Prometheus discovering tenants' pods through each cluster's API (pure).

For clusters whose pods really run (a real platform's, or a local cluster's real
nodes), Prometheus finds the targets itself with ``kubernetes_sd_configs`` (role
``pod``) instead of reading target files Tenantry writes:

* one scrape job per tenant *and* cluster (``tenant-<tenant>/<cluster>``), because a
  target's ``cluster`` label can only come from which API it was discovered through;
  each has the tenant's ``sample_limit``/``label_limit``/``target_limit``, like the
  tenant's file-based job (so ``target_limit`` counts per cluster).
* discovery is limited to the tenant's namespace, so the identity Prometheus uses
  needs no more than reading pods (`discovery_identity`): a ServiceAccount in the
  platform's monitoring namespace with ``get``/``list``/``watch`` on pods, never a
  cluster-admin key. Its token and the API server's CA are files (mode 0600) that
  Prometheus reads on every request, so a refreshed token needs no reload.
* a pod is scraped on the declared container port named ``http`` (the charts' name for
  the port the app serves ``/`` and ``/metrics`` on: 8080 in the service chart, 3000 in
  checkout's own) or numbered 8080 (the app image's), while it is Pending or Running,
  on a node ``node_pattern`` matches (a local cluster's kwok nodes run nothing: their
  pods' addresses answer nobody).
* the labels the alert rules and the canary analysis select on: ``service`` (the
  chart's ``tenantry.dev/service`` pod label, else ``app.kubernetes.io/name``),
  ``version`` (``app.kubernetes.io/version``), ``pod``, ``node``, ``cluster``, then
  ``namespace`` and ``tenant`` *last*, with ``honor_labels: false``: what a pod
  exposes itself (the app's own ``service``/``version``) is kept as ``exported_*``,
  and a tenant cannot forge another tenant's series.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from tenantry.observability.prometheus import limits
from tenantry.spec import models

# The app image's port (`tenantry.images.build.APP_PORT`): /metrics beside / and /healthz;
# a chart that moves it names the port as the service chart does.
METRICS_PORT = 8080
METRICS_PORT_NAME = "http"
DISCOVERY_ACCOUNT = "prometheus-discovery"
DISCOVERY_ROLE = "tenantry:monitoring-discovery"
# Pod labels the service chart sets (charts/service/templates/_helpers.tpl).
SERVICE_LABELS = ("app.kubernetes.io/name", "tenantry.dev/service")  # later wins
VERSION_LABEL = "app.kubernetes.io/version"


@dataclass(frozen=True)
class ClusterAccess:
    """How Prometheus reaches one cluster's API: its URL, the CA that signed its
    certificate and a token of the discovery identity (both files, mode 0600)."""

    cluster: str
    api_server: str
    ca_file: str
    token_file: str
    # A regular expression (fully anchored, as Prometheus' are) of the nodes whose
    # pods run for real; ".+" on a platform whose nodes all do.
    node_pattern: str = ".+"


def meta_label(pod_label: str) -> str:
    """The discovery meta label carrying ``pod_label``'s value, e.g.
    ``__meta_kubernetes_pod_label_app_kubernetes_io_name`` (every character that is
    not a letter, digit or underscore becomes ``_``, as Prometheus does)."""
    cleaned = "".join(c if c.isascii() and (c.isalnum() or c == "_") else "_" for c in pod_label)
    return f"__meta_kubernetes_pod_label_{cleaned}"


def job_name(tenant: str, cluster: str) -> str:
    """The scrape job of ``tenant``'s pods in ``cluster``."""
    return f"tenant-{tenant}/{cluster}"


def pod_scrape_job(
    tenant: models.Tenant, platform: models.Platform, access: ClusterAccess
) -> dict[str, Any]:
    """The job that discovers and scrapes ``tenant``'s pods in one cluster."""
    quota = limits(tenant, platform)
    copy_if_set = [
        {"source_labels": [meta_label(label)], "regex": "(.+)", "target_label": "service"}
        for label in SERVICE_LABELS
    ]
    return {
        "job_name": job_name(tenant.name, access.cluster),
        "honor_labels": False,
        "sample_limit": quota.sample_limit,
        "label_limit": quota.label_limit,
        "target_limit": quota.target_limit,
        "kubernetes_sd_configs": [
            {
                "role": "pod",
                "api_server": access.api_server,
                "namespaces": {"names": [tenant.name]},
                "tls_config": {"ca_file": access.ca_file},
                "authorization": {"type": "Bearer", "credentials_file": access.token_file},
            }
        ],
        "relabel_configs": [
            # One target per declared container port: only the app's.
            {"source_labels": ["__meta_kubernetes_pod_container_port_name",
                               "__meta_kubernetes_pod_container_port_number"],
             "regex": f"{METRICS_PORT_NAME};.*|.*;{METRICS_PORT}", "action": "keep"},
            # A finished pod's address may already be another pod's.
            {"source_labels": ["__meta_kubernetes_pod_phase"],
             "regex": "Pending|Running", "action": "keep"},
            {"source_labels": ["__meta_kubernetes_pod_node_name"],
             "regex": access.node_pattern, "action": "keep"},
            *copy_if_set,
            {"source_labels": [meta_label(VERSION_LABEL)], "regex": "(.+)",
             "target_label": "version"},
            {"source_labels": ["__meta_kubernetes_pod_name"], "target_label": "pod"},
            {"source_labels": ["__meta_kubernetes_pod_node_name"], "target_label": "node"},
            {"target_label": "cluster", "replacement": access.cluster},
            # Last, so nothing a pod carries or exposes can set them.
            {"target_label": "namespace", "replacement": tenant.name},
            {"target_label": "tenant", "replacement": tenant.name},
        ],
    }  # fmt: skip


def scrape_configs(
    tenants: Sequence[models.Tenant],
    platform: models.Platform,
    clusters: Sequence[ClusterAccess],
) -> list[dict[str, Any]]:
    """Every tenant's pod job in every cluster, tenants then clusters in name order."""
    ordered = sorted(clusters, key=lambda c: c.cluster)
    return [
        pod_scrape_job(tenant, platform, access)
        for tenant in sorted(tenants, key=lambda t: t.name)
        for access in ordered
    ]


def discovery_identity(namespace: str) -> list[dict[str, Any]]:
    """The objects of the identity Prometheus discovers pods as, in a cluster: a
    ServiceAccount in ``namespace`` (the platform's monitoring namespace) that may only
    read pods. Cluster-wide, so a tenant onboarded later is covered without a change;
    discovery itself asks only for tenants' namespaces."""
    return [
        {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": namespace}},
        {
            "apiVersion": "v1",
            "kind": "ServiceAccount",
            "metadata": {"name": DISCOVERY_ACCOUNT, "namespace": namespace},
            "automountServiceAccountToken": False,
        },
        {
            "apiVersion": "rbac.authorization.k8s.io/v1",
            "kind": "ClusterRole",
            "metadata": {"name": DISCOVERY_ROLE},
            "rules": [
                {"apiGroups": [""], "resources": ["pods"], "verbs": ["get", "list", "watch"]}
            ],
        },
        {
            "apiVersion": "rbac.authorization.k8s.io/v1",
            "kind": "ClusterRoleBinding",
            "metadata": {"name": DISCOVERY_ROLE},
            "roleRef": {
                "apiGroup": "rbac.authorization.k8s.io",
                "kind": "ClusterRole",
                "name": DISCOVERY_ROLE,
            },
            "subjects": [
                {"kind": "ServiceAccount", "name": DISCOVERY_ACCOUNT, "namespace": namespace}
            ],
        },
    ]
