"""The secrets alert receivers need (Slack webhook URLs, PagerDuty routing keys), and
whether the values found for them are usable (pure).

Values are checked for shape and never printed: problems name the Secret and key,
not what they hold. A tenant whose secret is missing or malformed gets a `Problem`,
and `alertmanager.plan` skips only that tenant. Reading them from Kubernetes and
writing them into 0600 files Alertmanager reads is `tenantry.monitoring.secret_store`'s.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass

from tenantry.observability.alertmanager import PLATFORM_RECEIVER
from tenantry.observability.problems import Problem
from tenantry.spec import models
from tenantry.spec.repository import Repository

# Reads one Secret key; None when the Secret or the key does not exist;
# `UnreadableValueError` when it exists but is not text.
Reader = Callable[[models.SecretRef], str | None]


class UnreadableValueError(ValueError):
    """A Secret key exists but its value cannot be used as text (say, not UTF-8)."""


_URL = re.compile(r"^https?://[^\s/]+(/\S*)?$")


@dataclass(frozen=True)
class Need:
    """One secret a receiver needs, and the file Alertmanager reads it from."""

    owner: str
    file: str
    field: str
    ref: models.SecretRef
    kind: str  # "slack" or "pagerduty"


def needs(repo: Repository) -> list[Need]:
    """Every secret the platform's and the tenants' receivers need."""
    owners: list[tuple[str, str, models.Alerts]] = [
        (PLATFORM_RECEIVER, "platform.yaml", repo.platform.alerts),
        *((t.name, f"tenants/{t.name}.yaml", t.alerts) for t in repo.tenants),
    ]
    found = []
    for owner, file, alerts in owners:
        if alerts.slack:
            found.append(Need(owner, file, "alerts.slack", alerts.slack, "slack"))
        if alerts.pagerduty:
            found.append(Need(owner, file, "alerts.pagerduty", alerts.pagerduty, "pagerduty"))
    return found


def _shape_problem(need: Need, value: str) -> str | None:
    if need.kind == "slack" and not _URL.match(value.strip()):
        return "is not an http(s) URL (store the Slack incoming-webhook URL)"
    if need.kind == "pagerduty" and not re.fullmatch(r"[A-Za-z0-9]{8,64}", value.strip()):
        return "is not a PagerDuty routing key (the integration key of an Events API v2 service)"
    return None


def resolve(wanted: list[Need], read: Reader) -> tuple[dict[str, str], list[Problem]]:
    """Read every needed secret: file name → value, and a problem per unusable one."""
    values: dict[str, str] = {}
    problems = []
    for need in wanted:
        where = f"Secret {need.ref.name!r} key {need.ref.key!r}"
        try:
            value = read(need.ref)
        except UnreadableValueError as e:
            problems.append(Problem(need.owner, need.file, need.field, f"{where} {e}"))
            continue
        if value is None:
            problems.append(Problem(need.owner, need.file, need.field, f"{where} does not exist"))
        elif shape := _shape_problem(need, value):
            problems.append(Problem(need.owner, need.file, need.field, f"{where} {shape}"))
        else:
            values[f"{need.owner}-{need.kind}"] = value.strip()
    return values, problems
