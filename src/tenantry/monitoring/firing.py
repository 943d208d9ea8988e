"""Firing alerts, read from Alertmanager's API v2 for the tenants a caller may see.

One request per page (``GET /api/v2/alerts``: active, neither silenced nor inhibited),
grouped by the ``tenant`` label Prometheus sets and tenants cannot forge (see
`tenantry.observability.alertmanager`). Alerts without that label are the platform's own
and go to no tenant. Only labels and the summary are kept: annotations may hold links
or text a tenant's rule author wrote, and the page shows what it names.
"""

from __future__ import annotations

from collections.abc import Collection
from dataclasses import dataclass
from typing import Any

import httpx2

from tenantry import errors

# More than a page can show: the rest is counted, not listed.
_PER_TENANT = 20


class AlertmanagerUnavailableError(errors.TenantryError):
    """Alertmanager did not answer with its list of alerts."""


@dataclass(frozen=True)
class Firing:
    """One firing alert of a tenant."""

    name: str
    service: str
    severity: str
    summary: str
    since: str


@dataclass(frozen=True)
class TenantAlerts:
    """A tenant's firing alerts, most severe first, and how many there are in all."""

    alerts: tuple[Firing, ...]
    total: int


_SEVERITY_ORDER = {"critical": 0, "warning": 1, "info": 2}


def group(payload: Any, tenants: Collection[str]) -> dict[str, TenantAlerts]:
    """``tenants``' firing alerts in Alertmanager's answer ``payload`` (pure)."""
    if not isinstance(payload, list):
        raise AlertmanagerUnavailableError(
            "Alertmanager answered something other than a list of alerts",
            fix="check server.alertmanagerUrl in platform.yaml names Alertmanager itself",
        )
    found: dict[str, list[Firing]] = {t: [] for t in tenants}
    for alert in payload:
        labels = alert.get("labels") if isinstance(alert, dict) else None
        if not isinstance(labels, dict) or labels.get("tenant") not in found:
            continue
        status = alert.get("status")
        if isinstance(status, dict) and status.get("state") == "suppressed":
            continue  # silenced or inhibited; "unprocessed" is firing, not yet routed
        annotations = alert.get("annotations") or {}
        found[labels["tenant"]].append(Firing(
            name=str(labels.get("alertname", "?")), service=str(labels.get("service", "")),
            severity=str(labels.get("severity", "")),
            summary=str(annotations.get("summary", "")) if isinstance(annotations, dict) else "",
            since=str(alert.get("startsAt", "")),
        ))  # fmt: skip
    result = {}
    for tenant, alerts in found.items():
        alerts.sort(key=lambda a: (_SEVERITY_ORDER.get(a.severity, 3), a.since, a.name))
        result[tenant] = TenantAlerts(tuple(alerts[:_PER_TENANT]), len(alerts))
    return result


def firing(
    url: str, tenants: Collection[str], *, timeout_s: float = 5.0
) -> dict[str, TenantAlerts]:
    """``tenants``' firing alerts at the Alertmanager at ``url``."""
    try:
        response = httpx2.get(
            f"{url.rstrip('/')}/api/v2/alerts",
            params={"active": "true", "silenced": "false", "inhibited": "false"},
            timeout=timeout_s,
        )
        response.raise_for_status()
        payload = response.json()
    except (httpx2.HTTPError, ValueError) as e:
        raise AlertmanagerUnavailableError(
            f"Alertmanager at {url} did not answer: {type(e).__name__}",
            fix="check that Alertmanager runs and server.alertmanagerUrl names it",
        ) from e
    return group(payload, tenants)
