"""Alertmanager routing for every tenant (pure).

One first-level route per tenant (matched on the ``tenant`` label Prometheus sets
and tenants cannot forge), with receivers from the tenant's contacts: Slack
(incoming webhook), email and PagerDuty (Events API v2). Severities map to
receivers — ``critical`` pages and notifies, ``warning`` only notifies — and an
inhibit rule scoped to the tenant silences a service's warnings while it has a
critical alert. Secrets never enter the configuration: it names files
(``<secrets dir>/<tenant>-slack`` …) that the applier writes from Kubernetes
Secrets (`tenantry.observability.secrets`). A tenant whose contacts are invalid is
reported and skipped; every other tenant keeps its alerts. Alerts labelled
``notify="platform"`` (a tenant over its sample limit, say) reach the platform
team's own receivers first, then the tenant's.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from tenantry.observability.problems import Problem
from tenantry.observability.promql import matchers
from tenantry.spec import models
from tenantry.spec.repository import Repository

PLATFORM_RECEIVER = "platform"
_SLACK_TITLE = "{{ .CommonLabels.alertname }} ({{ .CommonLabels.service }})"
_EMAIL = re.compile(r"^[^@\s]+@[^@\s]+\.[^@\s]+$")


@dataclass(frozen=True)
class Plan:
    """The Alertmanager configuration, and the tenants it had to skip."""

    config: dict[str, Any]
    problems: tuple[Problem, ...]


def _receivers(
    owner: str,
    alerts: models.Alerts,
    secrets_dir: str,
    smtp: dict[str, Any],
    pagerduty_url: str | None,
) -> list[dict[str, Any]]:
    receivers: list[dict[str, Any]] = []
    if alerts.slack:
        receivers.append({
            "name": f"{owner}-slack",
            "slack_configs": [{"api_url_file": f"{secrets_dir}/{owner}-slack",
                               "send_resolved": True,
                               "title": _SLACK_TITLE}],
        })  # fmt: skip
    if alerts.email:
        receivers.append(
            {
                "name": f"{owner}-email",
                "email_configs": [{"to": ", ".join(alerts.email), **smtp, "send_resolved": True}],
            }
        )
    if alerts.pagerduty:
        receivers.append({
            "name": f"{owner}-pagerduty",
            "pagerduty_configs": [{"routing_key_file": f"{secrets_dir}/{owner}-pagerduty",
                                   "send_resolved": True,
                                   **({"url": pagerduty_url} if pagerduty_url else {})}],
        })  # fmt: skip
    return receivers


def _children(receivers: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Critical alerts page and notify; everything else only notifies."""
    names = [r["name"] for r in receivers]
    page = [n for n in names if n.endswith("-pagerduty")]
    notify = [n for n in names if not n.endswith("-pagerduty")]
    children: list[dict[str, Any]] = [
        {"matchers": ['severity="critical"'], "receiver": n, "continue": True} for n in page
    ]
    return children + [{"receiver": n, "continue": True} for n in notify]


def _route(tenant: models.Tenant, receivers: list[dict[str, Any]]) -> dict[str, Any]:
    return {
        "matchers": [matchers(tenant=tenant.name)],
        # Children deliver; the route's own receiver only takes what none of them match.
        "receiver": PLATFORM_RECEIVER,
        "group_by": ["alertname", "tenant", "service"],
        "routes": _children(receivers),
    }


RECEIVER_TYPES = ("slack", "email", "pagerduty")


def problems(tenant: models.Tenant) -> list[Problem]:
    """What is wrong with a tenant's alert contacts (Problems name file and field)."""
    file = f"tenants/{tenant.name}.yaml"
    found = [
        Problem(tenant.name, file, f"alerts.{kind}",
                f"{kind!r} is not a receiver type (use {', '.join(RECEIVER_TYPES)})")
        for kind in (tenant.alerts.model_extra or {})
    ]  # fmt: skip
    return found + [
        Problem(tenant.name, file, f"alerts.email[{i}]",
                f"{address!r} is not an email address (write it as name@example.com)")
        for i, address in enumerate(tenant.alerts.email)
        if not _EMAIL.match(address)
    ]  # fmt: skip


def plan(
    repo: Repository,
    *,
    secrets_dir: str,
    skip: Sequence[Problem] = (),
    smtp_smarthost: str = "127.0.0.1:25",
    smtp_from: str = "alerts@tenantry.local",
    pagerduty_url: str | None = None,
    group_wait: str = "30s",
    group_interval: str = "5m",
) -> Plan:
    """The whole alertmanager.yml, every valid tenant routed to its own receivers.

    ``skip`` are problems found outside the tenant files (a Secret that does not
    exist, say); their tenants are left out like tenants with invalid contacts.
    ``pagerduty_url`` replaces the Events API v2 endpoint (a local receiver);
    ``group_wait`` is how long a new group gathers alerts before the first notification,
    ``group_interval`` how long a notified group waits before telling of new alerts.
    """
    smtp: dict[str, Any] = {"smarthost": smtp_smarthost, "from": smtp_from, "require_tls": False}
    skipped = {p.tenant for p in skip}
    platform_receivers = (
        []
        if PLATFORM_RECEIVER in skipped  # its secret is missing: nothing to send with
        else _receivers(PLATFORM_RECEIVER, repo.platform.alerts, secrets_dir, smtp, pagerduty_url)
    )
    receivers: list[dict[str, Any]] = [{"name": PLATFORM_RECEIVER}, *platform_receivers]
    # Alerts marked for the platform team reach it too, and then their tenant.
    routes: list[dict[str, Any]] = [
        {"matchers": [matchers(notify=PLATFORM_RECEIVER)], "receiver": PLATFORM_RECEIVER,
         "continue": True, "routes": _children(platform_receivers)},
    ]  # fmt: skip
    inhibits, found = [], list(skip)
    for tenant in repo.tenants:
        own_problems = problems(tenant)
        found += own_problems
        if own_problems or tenant.name in skipped:
            continue
        own = _receivers(tenant.name, tenant.alerts, secrets_dir, smtp, pagerduty_url)
        if not own:
            continue
        receivers += own
        routes.append(_route(tenant, own))
        inhibits.append({
            "source_matchers": [matchers(tenant=tenant.name), 'severity="critical"'],
            "target_matchers": [matchers(tenant=tenant.name), 'severity="warning"'],
            "equal": ["service"],
        })  # fmt: skip
    config = {
        "route": {
            "receiver": PLATFORM_RECEIVER,
            "group_by": ["alertname", "tenant"],
            "group_wait": group_wait,
            "group_interval": group_interval,
            "repeat_interval": "4h",
            "routes": routes,
        },
        "receivers": receivers,
        "inhibit_rules": inhibits,
    }
    return Plan(config=config, problems=tuple(found))
