"""Prometheus configuration for every tenant (pure).

* One scrape job per tenant, with ``sample_limit``/``label_limit``/``target_limit``
  from the tenant's monitoring quota (platform default otherwise): a scrape over
  the limit fails as a whole (``up == 0``) instead of flooding the server.
  Targets come from a file per tenant (``file_sd_configs``) that Tenantry writes
  from the tenant's namespace: Debian's Prometheus is built without Kubernetes
  discovery, and a file per tenant keeps one tenant's targets out of another's job.
* ``honor_labels: false`` and relabeling that sets ``tenant`` and ``namespace``
  *last*, so labels a tenant's pods expose (``tenant="b"``) cannot forge another
  tenant's series: Prometheus renames the scraped ones to ``exported_tenant``.
* Default alert rules per service from its descriptor's SLOs.
"""

from __future__ import annotations

from typing import Any

from tenantry.spec import models
from tenantry.spec.repository import Repository, ServiceSource


def limits(tenant: models.Tenant, platform: models.Platform) -> models.MonitoringQuota:
    """The tenant's monitoring quota, else the platform default."""
    return tenant.monitoring or platform.defaults.monitoring


def targets_file(tenant: str, targets_dir: str) -> str:
    """Where the tenant's scrape targets are written."""
    return f"{targets_dir}/{tenant}.json"


def scrape_job(
    tenant: models.Tenant, platform: models.Platform, *, targets_dir: str = "targets"
) -> dict[str, Any]:
    """The scrape job for ``tenant``'s targets."""
    quota = limits(tenant, platform)
    return {
        "job_name": f"tenant-{tenant.name}",
        "honor_labels": False,
        "sample_limit": quota.sample_limit,
        "label_limit": quota.label_limit,
        "target_limit": quota.target_limit,
        "file_sd_configs": [{"files": [targets_file(tenant.name, targets_dir)]}],
        "relabel_configs": [
            # Last, so nothing written for or exposed by the target can set them.
            {"target_label": "namespace", "replacement": tenant.name},
            {"target_label": "tenant", "replacement": tenant.name},
        ],
    }


def targets(tenant: str, endpoints: list[tuple[str, str, str]]) -> list[dict[str, Any]]:
    """A tenant's file_sd document from (address, service, pod) triples."""
    return [
        {"targets": [address], "labels": {"service": service, "pod": pod}}
        for address, service, pod in endpoints
    ]


def scrape_configs(repo: Repository, *, targets_dir: str = "targets") -> list[dict[str, Any]]:
    """Every tenant's scrape job."""
    return [scrape_job(t, repo.platform, targets_dir=targets_dir) for t in repo.tenants]


def _error_ratio(service: ServiceSource) -> str:
    labels = f'tenant="{service.tenant}",service="{service.name}"'
    return (
        f'sum(rate(http_requests_total{{{labels},code=~"5.."}}[5m])) '
        f"/ sum(rate(http_requests_total{{{labels}}}[5m]))"
    )


def service_rules(service: ServiceSource) -> dict[str, Any] | None:
    """Default alert rules for a descriptor service, from its SLOs (None for own charts)."""
    if service.descriptor is None:
        return None
    slo = service.descriptor.slo
    labels = f'tenant="{service.tenant}",service="{service.name}"'
    common = {"tenant": service.tenant, "service": service.name}
    budget = round(1 - slo.success_rate / 100, 6)
    return {
        "name": f"{service.tenant}.{service.name}.slo",
        "rules": [
            {
                "alert": "SuccessRateBelowObjective",
                "expr": f"({_error_ratio(service)}) > {budget}",
                "for": "2m",
                "labels": {**common, "severity": "critical"},
                "annotations": {
                    "summary": f"{service.ref}: success rate below {slo.success_rate}%",
                },
            },
            {
                "alert": "LatencyAboveObjective",
                "expr": (
                    "histogram_quantile(0.99, sum by (le) (rate("
                    f"http_request_duration_seconds_bucket{{{labels}}}[5m]))) "
                    f"> {slo.latency_p99_ms / 1000}"
                ),
                "for": "5m",
                "labels": {**common, "severity": "warning"},
                "annotations": {
                    "summary": f"{service.ref}: p99 latency above {slo.latency_p99_ms} ms",
                },
            },
            {
                "alert": "ScrapeFailing",
                "expr": f'up{{tenant="{service.tenant}",service="{service.name}"}} == 0',
                "for": "1m",
                "labels": {**common, "severity": "warning"},
                "annotations": {
                    "summary": f"{service.ref}: a target is down or over its sample limit",
                },
            },
        ],
    }


def rule_groups(repo: Repository) -> dict[str, Any]:
    """Every service's default rules, as a Prometheus rule file."""
    groups = [g for g in (service_rules(s) for s in repo.services) if g is not None]
    return {"groups": groups}


def config(
    repo: Repository, *, rule_files: list[str], targets_dir: str, interval: str = "15s"
) -> dict[str, Any]:
    """A whole prometheus.yml for the platform's tenants."""
    return {
        "global": {"scrape_interval": interval, "evaluation_interval": interval},
        "rule_files": rule_files,
        "scrape_configs": scrape_configs(repo, targets_dir=targets_dir),
    }
