"""The same monitoring intent as prometheus-operator objects, for clusters that run it
(pure): per tenant namespace, a ServiceMonitor per service (with the tenant's scrape
limits), a PrometheusRule per service (default rules and the service's own checked
rules) and one AlertmanagerConfig (the tenant's receivers, severities and inhibition).

Differences from the file-based configuration, because the operator works per namespace:
the operator adds the ``namespace`` matcher to every AlertmanagerConfig route itself,
and an AlertmanagerConfig may only reference Secrets in its own namespace, so the
receiver Secrets named in the tenant file must exist in the tenant's namespace there.
To make the limits binding (a tenant can edit its own ServiceMonitor), set
``enforcedSampleLimit``/``enforcedLabelLimit``/``enforcedTargetLimit`` on the
Prometheus object to the platform default.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from tenantry.observability import alertmanager, prometheus
from tenantry.spec import models
from tenantry.spec.repository import Repository, ServiceSource

API_V1 = "monitoring.coreos.com/v1"
API_V1ALPHA1 = "monitoring.coreos.com/v1alpha1"
LABELS = {"app.kubernetes.io/managed-by": "tenantry"}


def _meta(name: str, namespace: str) -> dict[str, Any]:
    return {"name": name, "namespace": namespace, "labels": dict(LABELS)}


def service_monitor(service: ServiceSource, quota: models.MonitoringQuota) -> dict[str, Any]:
    """Scrape the service's pods (the base chart's ``http`` port) within the tenant's limits."""
    return {
        "apiVersion": API_V1,
        "kind": "ServiceMonitor",
        "metadata": _meta(service.name, service.tenant),
        "spec": {
            "selector": {"matchLabels": {"app.kubernetes.io/name": service.name}},
            "endpoints": [{"port": "http", "path": "/metrics", "honorLabels": False}],
            "sampleLimit": quota.sample_limit,
            "labelLimit": quota.label_limit,
            "targetLimit": quota.target_limit,
        },
    }


def prometheus_rule(service: ServiceSource, own: list[dict[str, Any]]) -> dict[str, Any]:
    """The service's default rules and its own (already checked) rule groups."""
    return {
        "apiVersion": API_V1,
        "kind": "PrometheusRule",
        "metadata": _meta(service.name, service.tenant),
        "spec": {"groups": [prometheus.service_rules(service), *own]},
    }


def _matcher(name: str, value: str) -> dict[str, str]:
    return {"name": name, "value": value, "matchType": "="}


def alertmanager_config(tenant: models.Tenant) -> dict[str, Any] | None:
    """The tenant's receivers and routing, or None when it names no contact."""
    alerts = tenant.alerts
    receivers: list[dict[str, Any]] = []
    if alerts.slack:
        receivers.append({"name": "slack", "slackConfigs": [{
            "apiURL": {"name": alerts.slack.name, "key": alerts.slack.key},
            "sendResolved": True}]})  # fmt: skip
    if alerts.email:
        receivers.append({"name": "email", "emailConfigs": [
            {"to": address, "sendResolved": True} for address in alerts.email]})  # fmt: skip
    if alerts.pagerduty:
        receivers.append({"name": "pagerduty", "pagerdutyConfigs": [{
            "routingKey": {"name": alerts.pagerduty.name, "key": alerts.pagerduty.key},
            "sendResolved": True}]})  # fmt: skip
    if not receivers:
        return None
    children = [
        {"receiver": r["name"], "continue": True,
         **({"matchers": [_matcher("severity", "critical")]} if r["name"] == "pagerduty" else {})}
        for r in receivers
    ]  # fmt: skip
    return {
        "apiVersion": API_V1ALPHA1,
        "kind": "AlertmanagerConfig",
        "metadata": _meta("tenantry-alerts", tenant.name),
        "spec": {
            "route": {"receiver": receivers[0]["name"],
                      "groupBy": ["alertname", "service"], "routes": children},
            "receivers": receivers,
            "inhibitRules": [{
                "sourceMatch": [_matcher("severity", "critical")],
                "targetMatch": [_matcher("severity", "warning")],
                "equal": ["service"],
            }],
        },
    }  # fmt: skip


def tenant_objects(
    repo: Repository, tenant: models.Tenant, own_rules: Mapping[str, list[dict[str, Any]]]
) -> list[dict[str, Any]]:
    """Every operator object for ``tenant``. ``own_rules`` are the services' own rule
    groups that passed their checks, by ``tenant/service``; a tenant with invalid
    contacts gets no AlertmanagerConfig (`alertmanager.problems` says why)."""
    quota = prometheus.limits(tenant, repo.platform)
    objects: list[dict[str, Any]] = []
    for service in (s for s in repo.services if s.tenant == tenant.name):
        own = list(own_rules.get(service.ref, []))
        objects += [service_monitor(service, quota), prometheus_rule(service, own)]
    if not alertmanager.problems(tenant) and (config := alertmanager_config(tenant)):
        objects.append(config)
    return objects
