"""Write the whole monitoring configuration to a directory, checked by the real validators.

Layout of the directory (paths inside are absolute, so the running servers can be
pointed at it once and reloaded):

    prometheus.yml        scrape jobs per tenant, the platform job, Alertmanager
    rules/platform.yml    platform rules and every service's default rules
    rules/custom/*.yml    services' own rules that passed every check
    targets/<tenant>.json scrape targets (kept across renders: written elsewhere)
    alertmanager.yml      routing per tenant
    secrets/              receiver secrets, mode 0600 (never in the files above)
    collector.yaml        the log shipper, when a shipper is configured
    operator/<tenant>.yaml the same intent as prometheus-operator objects

Everything is written to a sibling directory first and checked there (`promtool check
config`, `promtool check rules` per service fragment, `amtool check-config`,
``otelcol-tenantry validate``); only a
configuration that passes replaces the live one, so a bad render never reaches a
running server.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from tenantry import errors
from tenantry.observability import alertmanager, logs, operator, prometheus, rules, secrets
from tenantry.observability.problems import Problem
from tenantry.spec.repository import Repository
from tenantry.tools import install

TOOLS_FIX = "install Debian's prometheus and prometheus-alertmanager (`./run test` does)"


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


@dataclass(frozen=True)
class Rendered:
    """What was written, and which fragments were skipped."""

    directory: Path
    problems: tuple[Problem, ...]
    alerting_skipped: tuple[str, ...]


def _tool(name: str) -> str:
    found = shutil.which(name)
    if found is None:
        raise errors.ToolMissingError(f"{name} is not installed", fix=TOOLS_FIX)
    return found


def _check(argv: list[str], env: dict[str, str] | None = None) -> str | None:
    """Run a validator; its complaint, or None when it accepts."""
    done = subprocess.run(argv, capture_output=True, text=True, timeout=60, check=False,
                          env={**os.environ, **(env or {})})  # fmt: skip
    return None if done.returncode == 0 else (done.stdout + done.stderr).strip()


def _dump(path: Path, document: object) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(yaml.safe_dump(document, sort_keys=False))


def _custom_rules(
    repo: Repository, directory: Path, promtool: str
) -> tuple[dict[str, list[dict[str, Any]]], list[Problem]]:
    """Each service's own rules that pass every check (by ``tenant/service``), written
    to ``rules/custom/``; a problem for each service whose rules were skipped."""
    accepted: dict[str, list[dict[str, Any]]] = {}
    problems: list[Problem] = []
    for service in repo.services:
        groups, found = rules.service_rules(service)
        if found:
            problems += found
            continue
        if not groups:
            continue
        fragment = directory / "rules" / "custom" / f"{service.tenant}.{service.name}.yml"
        _dump(fragment, {"groups": groups})
        complaint = _check([promtool, "check", "rules", str(fragment)])
        if complaint:
            fragment.unlink()
            detail = complaint.splitlines()[-1]
            problems.append(Problem(service.tenant, f"services/{service.ref}/{rules.FILE_NAME}",
                                    "expr", f"promtool rejects it: {detail}"))  # fmt: skip
            continue
        accepted[service.ref] = groups
    return accepted, problems


def write(
    repo: Repository,
    out: Path,
    settings: Settings,
    *,
    secret_values: dict[str, str] | None = None,
    secret_problems: Sequence[Problem] = (),
) -> Rendered:
    """Render, validate and atomically install the configuration in ``out``."""
    promtool, amtool = _tool("promtool"), _tool("amtool")
    out = out.resolve()
    out.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{out.name}-", dir=out.parent))
    try:
        (staging / "targets").mkdir()
        for tenant in repo.tenants:
            previous = out / "targets" / f"{tenant.name}.json"
            target = staging / "targets" / previous.name
            if previous.exists():
                shutil.copyfile(previous, target)
            else:
                target.write_text(json.dumps(prometheus.targets(tenant.name, [])))
        _dump(staging / "rules" / "platform.yml", prometheus.rule_groups(repo, hold=settings.hold))
        own_rules, problems = _custom_rules(repo, staging, promtool)
        for tenant in repo.tenants:
            objects = operator.tenant_objects(repo, tenant, own_rules)
            (staging / "operator").mkdir(exist_ok=True)
            (staging / "operator" / f"{tenant.name}.yaml").write_text(
                yaml.safe_dump_all(objects, sort_keys=False)
            )
        config = prometheus.config(
            repo,
            rule_files=[str(out / "rules" / "*.yml"), str(out / "rules" / "custom" / "*.yml")],
            targets_dir=str(out / "targets"),
            interval=settings.interval,
            alertmanagers=settings.alertmanagers,
            platform_targets=settings.platform_targets,
        )
        _dump(staging / "prometheus.yml", config)
        planned = alertmanager.plan(
            repo,
            secrets_dir=str(out / "secrets"),
            skip=secret_problems,
            smtp_smarthost=settings.smtp_smarthost,
            pagerduty_url=settings.pagerduty_url,
            group_wait=settings.group_wait,
            group_interval=settings.group_interval,
        )
        _dump(staging / "alertmanager.yml", planned.config)
        secrets.write(staging / "secrets", secret_values or {})
        if settings.shipper is not None:
            _dump(staging / "collector.yaml", logs.collector_config(repo, settings.shipper))
        _validate(staging, out, promtool, amtool)
        _swap(staging, out)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    problems += planned.problems
    return Rendered(out, tuple(problems), tuple(sorted({p.tenant for p in planned.problems})))


def _validate(staging: Path, out: Path, promtool: str, amtool: str) -> None:
    # The files name their final paths; check copies that name the staging ones.
    checks = [
        ("prometheus.yml", [promtool, "check", "config"]),
        ("alertmanager.yml", [amtool, "check-config"]),
    ]
    if (staging / "collector.yaml").exists():
        collector = str(install.binary("otelcol-tenantry"))
        checks.append(("collector.yaml", [collector, "validate", "--config"]))
    for name, argv in checks:
        text = (staging / name).read_text().replace(str(out), str(staging))
        probe = staging / f".check-{name}"
        probe.write_text(text)
        # The token is read at run time; validation needs only that it is set.
        complaint = _check([*argv, str(probe)], env={logs.TOKEN_ENV: "validation-only"})
        probe.unlink()
        if complaint:
            raise errors.TenantryError(
                f"the generated {name} does not pass validation:\n{complaint}",
                fix="this is a bug in Tenantry's generator; nothing was replaced",
            )


def _swap(staging: Path, out: Path) -> None:
    old = out.with_name(f".{out.name}-old")
    shutil.rmtree(old, ignore_errors=True)
    if out.exists():
        out.rename(old)
    staging.rename(out)
    shutil.rmtree(old, ignore_errors=True)
