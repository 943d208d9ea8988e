"""The secrets alert receivers need (Slack webhook URLs, PagerDuty routing keys), resolved
from Kubernetes Secrets into files Alertmanager reads.

Values are checked for shape, written with mode 0600, and never printed: problems
name the Secret and key, not what they hold. A tenant whose secret is missing or
malformed gets a `Problem`, and `alertmanager.plan` skips only that tenant.
"""

from __future__ import annotations

import base64
import os
import re
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from lightkube.resources.core_v1 import Secret

from tenantry import errors
from tenantry.kube.client import Kube
from tenantry.observability.alertmanager import PLATFORM_RECEIVER
from tenantry.observability.problems import Problem
from tenantry.spec import models
from tenantry.spec.repository import Repository

# Reads one Secret key; None when the Secret or the key does not exist.
Reader = Callable[[models.SecretRef], str | None]

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
        value = read(need.ref)
        if value is None:
            problems.append(Problem(need.owner, need.file, need.field, f"{where} does not exist"))
        elif shape := _shape_problem(need, value):
            problems.append(Problem(need.owner, need.file, need.field, f"{where} {shape}"))
        else:
            values[f"{need.owner}-{need.kind}"] = value.strip()
    return values, problems


def cluster_reader(kube: Kube, namespace: str) -> Reader:
    """A `Reader` of Secrets in ``namespace`` (the platform's monitoring namespace)."""

    def read(ref: models.SecretRef) -> str | None:
        try:
            secret = kube.get(Secret, ref.name, namespace=namespace)
        except errors.NotFoundError:
            return None
        encoded = (secret.data or {}).get(ref.key)
        return base64.b64decode(encoded).decode() if encoded is not None else None

    return read


def write(directory: Path, values: dict[str, str]) -> None:
    """Write each secret to ``directory/<name>`` readable by its owner only; remove stale ones."""
    directory.mkdir(parents=True, exist_ok=True)
    directory.chmod(0o700)
    for stale in set(p.name for p in directory.iterdir()) - set(values):
        (directory / stale).unlink()
    for name, value in values.items():
        path = directory / name
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as out:
            out.write(value)
