"""Alertmanager routing for every tenant (pure).

One first-level route per tenant (matched on the ``tenant`` label Prometheus sets
and tenants cannot forge), with receivers from the tenant's contacts: Slack
(incoming webhook), email and PagerDuty (Events API v2). Severities map to
receivers — ``critical`` pages and notifies, ``warning`` only notifies — and an
inhibit rule scoped to the tenant silences a service's warnings while it has a
critical alert. Secrets never enter the configuration: it names files
(``<secrets dir>/<tenant>-slack`` …) that the applier writes from Kubernetes
Secrets. A tenant whose contacts are invalid is reported and skipped; every other
tenant keeps its alerts.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

from tenantry.spec import models
from tenantry.spec.repository import Repository

PLATFORM_RECEIVER = "platform"
_SLACK_TITLE = "{{ .CommonLabels.alertname }} ({{ .CommonLabels.service }})"
_EMAIL = re.compile(r"^[^@\s]+@[^@\s]+\.[^@\s]+$")


@dataclass(frozen=True)
class Problem:
    """Why one tenant's alerting was skipped."""

    tenant: str
    file: str
    field: str
    message: str

    def __str__(self) -> str:
        return f"{self.file}: {self.field}: {self.message} (tenant {self.tenant} skipped)"


@dataclass(frozen=True)
class Plan:
    """The Alertmanager configuration, and the tenants it had to skip."""

    config: dict[str, Any]
    problems: tuple[Problem, ...]


def _receivers(
    tenant: models.Tenant, secrets_dir: str, smtp: dict[str, str]
) -> list[dict[str, Any]]:
    alerts = tenant.alerts
    receivers: list[dict[str, Any]] = []
    if alerts.slack:
        receivers.append({
            "name": f"{tenant.name}-slack",
            "slack_configs": [{"api_url_file": f"{secrets_dir}/{tenant.name}-slack",
                               "send_resolved": True,
                               "title": _SLACK_TITLE}],
        })  # fmt: skip
    if alerts.email:
        receivers.append(
            {
                "name": f"{tenant.name}-email",
                "email_configs": [{"to": ", ".join(alerts.email), **smtp, "send_resolved": True}],
            }
        )
    if alerts.pagerduty:
        receivers.append({
            "name": f"{tenant.name}-pagerduty",
            "pagerduty_configs": [{"routing_key_file": f"{secrets_dir}/{tenant.name}-pagerduty",
                                   "send_resolved": True}],
        })  # fmt: skip
    return receivers


def _route(tenant: models.Tenant, receivers: list[dict[str, Any]]) -> dict[str, Any]:
    names = [r["name"] for r in receivers]
    notify = [n for n in names if not n.endswith("-pagerduty")]
    page = [n for n in names if n.endswith("-pagerduty")]
    children: list[dict[str, Any]] = [
        {"matchers": ['severity="critical"'], "receiver": n, "continue": True} for n in page
    ]
    children += [{"receiver": n, "continue": True} for n in notify]
    return {
        "matchers": [f'tenant="{tenant.name}"'],
        "receiver": notify[0] if notify else (page[0] if page else PLATFORM_RECEIVER),
        "group_by": ["alertname", "tenant", "service"],
        "routes": children,
    }


def _problems(tenant: models.Tenant) -> list[Problem]:
    file = f"tenants/{tenant.name}.yaml"
    return [
        Problem(tenant.name, file, f"alerts.email.{i}", f"{address!r} is not an email address")
        for i, address in enumerate(tenant.alerts.email)
        if not _EMAIL.match(address)
    ]


def plan(
    repo: Repository,
    *,
    secrets_dir: str,
    smtp_smarthost: str = "127.0.0.1:25",
    smtp_from: str = "alerts@tenantry.local",
) -> Plan:
    """The whole alertmanager.yml, every valid tenant routed to its own receivers."""
    smtp: dict[str, Any] = {"smarthost": smtp_smarthost, "from": smtp_from, "require_tls": False}
    receivers: list[dict[str, Any]] = [{"name": PLATFORM_RECEIVER}]
    routes, inhibits, problems = [], [], []
    for tenant in repo.tenants:
        found = _problems(tenant)
        if found:
            problems += found
            continue
        own = _receivers(tenant, secrets_dir, smtp)
        if not own:
            continue
        receivers += own
        routes.append(_route(tenant, own))
        inhibits.append({
            "source_matchers": [f'tenant="{tenant.name}"', 'severity="critical"'],
            "target_matchers": [f'tenant="{tenant.name}"', 'severity="warning"'],
            "equal": ["service"],
        })  # fmt: skip
    config = {
        "route": {
            "receiver": PLATFORM_RECEIVER,
            "group_by": ["alertname", "tenant"],
            "group_wait": "5s",
            "group_interval": "30s",
            "repeat_interval": "4h",
            "routes": routes,
        },
        "receivers": receivers,
        "inhibit_rules": inhibits,
    }
    return Plan(config=config, problems=tuple(problems))
