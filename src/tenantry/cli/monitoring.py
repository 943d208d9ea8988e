"""`tenantry monitoring render`: the generated Prometheus and Alertmanager configuration."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import typer
import yaml

from tenantry.cli import output
from tenantry.cli.tenants import RepoOption
from tenantry.observability import alertmanager, prometheus
from tenantry.spec import repository

app = typer.Typer(help="Monitoring and alerting generated for every tenant.", no_args_is_help=True)


@app.command("render")
def render_cmd(
    ctx: typer.Context,
    out: Annotated[Path, typer.Option("--out", help="Directory to write the configuration to.")],
    repo: RepoOption = Path(),
) -> None:
    """Write prometheus.yml, tenants.rules.yml, alertmanager.yml and per-tenant target files.

    A tenant whose alert contacts are invalid is reported and left out of alerting;
    every other tenant is still configured. Secrets are referenced as files under
    OUT/secrets, never written into the configuration.

    Example: tenantry monitoring render --out mon && promtool check config mon/prometheus.yml
    """
    loaded = repository.load(repo.resolve())
    out = out.resolve()
    (out / "targets").mkdir(parents=True, exist_ok=True)
    rules = out / "tenants.rules.yml"
    rules.write_text(yaml.safe_dump(prometheus.rule_groups(loaded), sort_keys=False))
    config = prometheus.config(loaded, rule_files=[str(rules)], targets_dir=str(out / "targets"))
    (out / "prometheus.yml").write_text(yaml.safe_dump(config, sort_keys=False))
    for tenant in loaded.tenants:
        targets = out / "targets" / f"{tenant.name}.json"
        if not targets.exists():
            targets.write_text(json.dumps(prometheus.targets(tenant.name, [])))
    planned = alertmanager.plan(loaded, secrets_dir=str(out / "secrets"))
    (out / "alertmanager.yml").write_text(yaml.safe_dump(planned.config, sort_keys=False))
    for problem in planned.problems:
        output.err_console.print(f"skipped: {problem}", markup=False)
    output.emit(
        {"directory": str(out), "tenants": len(loaded.tenants),
         "alertingSkipped": [p.tenant for p in planned.problems]},
        ctx.obj.output,
    )  # fmt: skip
