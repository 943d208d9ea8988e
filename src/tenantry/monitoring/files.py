"""Write the monitoring configuration `tenantry.observability.config` plans to a directory,
checked by the real validators.

Everything is written to a sibling directory first and checked there (the pinned
Prometheus' `promtool check config`, `promtool check rules` per service fragment,
`amtool check-config`, ``otelcol-tenantry validate``); only a configuration that passes
replaces the live one, so a bad render never reaches a running server. Receiver secrets go to
``secrets/`` with mode 0600 (`tenantry.monitoring.secret_store`).
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
from tenantry.monitoring import secret_store
from tenantry.observability import config, logs, rules
from tenantry.observability.problems import Problem
from tenantry.spec.repository import Repository
from tenantry.tools import install

TOOLS_FIX = "install Debian's prometheus-alertmanager (`./run test` does)"


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


def _dump(path: Path, documents: list[Any]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(yaml.safe_dump_all(documents, sort_keys=False))


def _custom_rules(
    repo: Repository, directory: Path, promtool: str
) -> tuple[dict[str, list[dict[str, Any]]], list[Problem]]:
    """Each service's own rules that pass every check (by ``tenant/service``), written
    to ``rules/custom/``; a problem for each service whose rules were skipped."""
    candidates, problems = config.custom_rules(repo)
    accepted: dict[str, list[dict[str, Any]]] = {}
    for service, groups in candidates:
        fragment = directory / config.fragment_path(service)
        _dump(fragment, [{"groups": groups}])
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
    settings: config.Settings,
    *,
    secret_values: dict[str, str] | None = None,
    secret_problems: Sequence[Problem] = (),
) -> Rendered:
    """Render, validate and atomically install the configuration in ``out``."""
    # The pinned Prometheus' promtool: Debian's cannot read Kubernetes discovery.
    promtool, amtool = str(install.binary("promtool")), _tool("amtool")
    out = out.resolve()
    out.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{out.name}-", dir=out.parent))
    try:
        own_rules, problems = _custom_rules(repo, staging, promtool)
        planned = config.plan(repo, out, settings, own_rules=own_rules,
                              secret_problems=secret_problems)  # fmt: skip
        (staging / "targets").mkdir()
        for name, empty in planned.targets.items():
            previous = out / name
            if previous.exists():
                shutil.copyfile(previous, staging / name)
            else:
                (staging / name).write_text(json.dumps(empty))
        for name, documents in planned.documents.items():
            _dump(staging / name, documents)
        secret_store.write(staging / "secrets", secret_values or {})
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
