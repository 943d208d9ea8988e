"""Prometheus configuration for every tenant (pure).

* One scrape job per tenant, with ``sample_limit``/``label_limit``/``target_limit``
  from the tenant's monitoring quota (platform default otherwise): a scrape over
  the limit fails as a whole (``up == 0``) instead of flooding the server.
  Targets come from a file per tenant (``file_sd_configs``) that Tenantry writes
  from the tenant's namespace (a file per tenant keeps one tenant's targets out of
  another's job); in clusters whose pods really run, Prometheus also discovers them
  through the cluster's API, one job per tenant and cluster (`pods`).
* ``honor_labels: false`` and relabeling that sets ``tenant`` and ``namespace``
  *last*, so labels a tenant's pods expose (``tenant="b"``) cannot forge another
  tenant's series: Prometheus renames the scraped ones to ``exported_tenant``.
* Default alert rules per service from its descriptor's SLOs, and the platform's
  own rules: a tenant over its sample limit (for the tenant *and* the platform
  team), the deployer down. ``hold`` shortens every ``for:`` (tests and the local
  platform, so an alert arrives in seconds).
* The platform's own scrape job (the deployer's ``/metrics``), trusted with its labels.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from tenantry.observability.promql import label_value, matchers
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
    labels = matchers(tenant=service.tenant, service=service.name)
    return (
        f'sum(rate(http_requests_total{{{labels},code=~"5.."}}[5m])) '
        f"/ sum(rate(http_requests_total{{{labels}}}[5m]))"
    )


PLATFORM_JOB = "tenantry-platform"


def service_rules(service: ServiceSource, *, hold: str | None = None) -> dict[str, Any]:
    """Default alert rules for a service: SLOs from its descriptor (own charts have
    none), and for every service pods not ready and a failed deploy."""
    labels = matchers(tenant=service.tenant, service=service.name)
    common = {"tenant": service.tenant, "service": service.name}
    rules = [
        {
            "alert": "PodsNotReady",
            "expr": (
                "kube_deployment_status_replicas_unavailable"
                f"{{{matchers(namespace=service.tenant, deployment=service.name)}}} > 0"
            ),
            "for": hold or "10m",
            "labels": {**common, "severity": "warning"},
            "annotations": {"summary": f"{service.ref}: pods not ready for 10 minutes"},
        },
        {
            "alert": "DeployFailed",
            "expr": (
                "increase(tenantry_deployer_deploys_total"
                f"{{{matchers(job=PLATFORM_JOB, result='failed')},{labels}}}[15m]) > 0"
            ),
            "labels": {**common, "severity": "warning"},
            "annotations": {
                "summary": f"{service.ref}: a deploy failed and was rolled back "
                f"(`tenantry history {service.ref}`)",
            },
        },
        {
            "alert": "ScrapeFailing",
            "expr": f"up{{{labels}}} == 0",
            "for": hold or "1m",
            "labels": {**common, "severity": "warning"},
            "annotations": {
                "summary": f"{service.ref}: a target is down or over its sample limit",
            },
        },
    ]
    if service.descriptor is not None:
        rules = _slo_rules(service, hold) + rules
    return {"name": f"{service.tenant}.{service.name}.defaults", "rules": rules}


def _slo_rules(service: ServiceSource, hold: str | None) -> list[dict[str, Any]]:
    assert service.descriptor is not None
    slo = service.descriptor.slo
    labels = matchers(tenant=service.tenant, service=service.name)
    common = {"tenant": service.tenant, "service": service.name}
    budget = round(1 - slo.success_rate / 100, 6)
    return [
        {
            "alert": "SuccessRateBelowObjective",
            "expr": f"({_error_ratio(service)}) > {budget}",
            "for": hold or "2m",
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
            "for": hold or "5m",
            "labels": {**common, "severity": "warning"},
            "annotations": {
                "summary": f"{service.ref}: p99 latency above {slo.latency_p99_ms} ms",
            },
        },
    ]


def platform_rules(*, hold: str | None = None) -> dict[str, Any]:
    """The platform's own alerts."""
    return {
        "name": "tenantry.platform",
        "rules": [
            {
                # Needs --enable-feature=extra-scrape-metrics (scrape_sample_limit).
                "alert": "TenantOverSampleLimit",
                "expr": 'scrape_samples_scraped{job=~"tenant-.+"} > scrape_sample_limit > 0',
                "for": hold or "5m",
                "labels": {"severity": "warning", "notify": "platform"},
                "annotations": {
                    "summary": "{{ $labels.tenant }}: a target exposes {{ $value }} samples, "
                    "over the tenant's sample limit; its scrapes are refused",
                    "fix": "drop high-cardinality labels, or raise monitoring.sampleLimit "
                    "in the tenant file",
                },
            },
            {
                # An archive nobody published reached the bucket: someone who can write
                # there tried to get code into staging. The deployer refused it.
                "alert": "UnpublishedArtifactRefused",
                "expr": 'increase(tenantry_deployer_events_total{kind="unpublished"}[10m]) > 0',
                "labels": {"severity": "critical", "notify": "platform"},
                "annotations": {
                    "summary": "the deployer refused an archive that `tenantry publish` never "
                    "recorded (see `tenantry history` and the ledger's events)",
                },
            },
            {
                "alert": "DeployerDown",
                "expr": f"up{{job={label_value(PLATFORM_JOB)}}} == 0",
                "for": hold or "2m",
                "labels": {"severity": "critical"},
                "annotations": {"summary": "the deployer's /metrics does not answer"},
            },
        ],
    }


def rule_groups(repo: Repository, *, hold: str | None = None) -> dict[str, Any]:
    """The platform's rules and every service's default rules, as a Prometheus rule file."""
    groups = [platform_rules(hold=hold), *(service_rules(s, hold=hold) for s in repo.services)]
    return {"groups": groups}


def config(
    repo: Repository,
    *,
    rule_files: list[str],
    targets_dir: str,
    interval: str = "15s",
    alertmanagers: Sequence[str] = (),
    platform_targets: Sequence[str] = (),
    pod_jobs: Sequence[dict[str, Any]] = (),
) -> dict[str, Any]:
    """A whole prometheus.yml for the platform's tenants (``host:port`` lists for the
    Alertmanagers to notify and the platform's own metrics endpoints; ``pod_jobs``, the
    tenants' jobs that discover pods through clusters' APIs, `tenantry.observability.pods`)."""
    scrape = [*scrape_configs(repo, targets_dir=targets_dir), *pod_jobs]
    if platform_targets:
        scrape.append({"job_name": PLATFORM_JOB,
                       "static_configs": [{"targets": list(platform_targets)}]})  # fmt: skip
    document: dict[str, Any] = {
        "global": {"scrape_interval": interval, "evaluation_interval": interval},
        "rule_files": rule_files,
        "scrape_configs": scrape,
    }
    if alertmanagers:
        document["alerting"] = {
            "alertmanagers": [{"static_configs": [{"targets": list(alertmanagers)}]}]
        }
    return document
