"""The whole monitoring configuration of a platform as documents, one per file (pure).

This is the plan `tenantry.monitoring.files` writes, validates with the real tools
and swaps in; here is only what goes in which file, so it can be read and tested
without a disk, promtool or a cluster. Layout (paths inside are absolute, under the
directory the applier installs into, so the running servers can be pointed at it
once and reloaded):

    prometheus.yml         scrape jobs per tenant (and per tenant and cluster whose pods
                           Prometheus discovers), the platform job, Alertmanager
    rules/platform.yml     platform rules and every service's default rules
    rules/custom/*.yml     services' own rules that passed every check
    targets/<tenant>.json  scrape targets (kept across renders: written elsewhere)
    alertmanager.yml       routing per tenant
    secrets/               receiver secrets, mode 0600 (never in the files above)
    collector.yaml         the log shipper, when a shipper is configured
    operator/<tenant>.yaml the same intent as prometheus-operator objects
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tenantry.observability import alertmanager, logs, operator, pods, prometheus, rules
from tenantry.observability.problems import Problem
from tenantry.spec.repository import Repository, ServiceSource


@dataclass(frozen=True)
class Settings:
    """Where the generated configuration points, and how fast alerts should fire."""

    alertmanagers: Sequence[str] = ()
    platform_targets: Sequence[str] = ()
    smtp_smarthost: str = "127.0.0.1:25"
    pagerduty_url: str | None = None
    group_wait: str = "30s"
    group_interval: str = "5m"
    interval: str = "15s"
    hold: str | None = None
    shipper: logs.Shipper | None = None
    # Clusters whose pods really run: Prometheus discovers them through each one's API.
    clusters: Sequence[pods.ClusterAccess] = ()


@dataclass(frozen=True)
class Plan:
    """Every file of the configuration directory but the secrets and services' own rules."""

    # Path relative to the directory → its YAML documents (one, or one per object).
    documents: dict[str, list[Any]]
    # targets/<tenant>.json → what it holds when no earlier render left one.
    targets: dict[str, Any]
    # Tenants' alerting fragments that were left out, and why.
    problems: tuple[Problem, ...]


def fragment_path(service: ServiceSource) -> str:
    """Where a service's own rules go, relative to the directory."""
    return f"rules/custom/{service.tenant}.{service.name}.yml"


def custom_rules(
    repo: Repository,
) -> tuple[list[tuple[ServiceSource, list[dict[str, Any]]]], list[Problem]]:
    """Each service with its own rule groups that pass Tenantry's checks (promtool's come
    after, in the applier), and a problem for each service whose rules are left out."""
    accepted: list[tuple[ServiceSource, list[dict[str, Any]]]] = []
    problems: list[Problem] = []
    for service in repo.services:
        groups, found = rules.service_rules(service)
        if found:
            problems += found
        elif groups:
            accepted.append((service, groups))
    return accepted, problems


def plan(
    repo: Repository,
    out: Path,
    settings: Settings,
    *,
    own_rules: Mapping[str, list[dict[str, Any]]],
    secret_problems: Sequence[Problem] = (),
) -> Plan:
    """The configuration for ``out``; ``own_rules`` (by ``tenant/service``) are the
    services' own rules that passed every check."""
    documents: dict[str, list[Any]] = {
        "rules/platform.yml": [prometheus.rule_groups(repo, hold=settings.hold)],
    }
    for tenant in repo.tenants:
        documents[f"operator/{tenant.name}.yaml"] = operator.tenant_objects(repo, tenant, own_rules)
    documents["prometheus.yml"] = [
        prometheus.config(
            repo,
            rule_files=[str(out / "rules" / "*.yml"), str(out / "rules" / "custom" / "*.yml")],
            targets_dir=str(out / "targets"),
            interval=settings.interval,
            alertmanagers=settings.alertmanagers,
            platform_targets=settings.platform_targets,
            pod_jobs=pods.scrape_configs(repo.tenants, repo.platform, settings.clusters),
        )
    ]
    planned = alertmanager.plan(
        repo,
        secrets_dir=str(out / "secrets"),
        skip=secret_problems,
        smtp_smarthost=settings.smtp_smarthost,
        pagerduty_url=settings.pagerduty_url,
        group_wait=settings.group_wait,
        group_interval=settings.group_interval,
    )
    documents["alertmanager.yml"] = [planned.config]
    if settings.shipper is not None:
        documents["collector.yaml"] = [logs.collector_config(repo, settings.shipper)]
    targets = {
        f"targets/{tenant.name}.json": prometheus.targets(tenant.name, [])
        for tenant in repo.tenants
    }
    return Plan(documents, targets, tuple(planned.problems))
