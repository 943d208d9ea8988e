"""`tenantry tenants`: validate, plan and apply the tenants of a platform repository."""

from __future__ import annotations

from dataclasses import asdict
from pathlib import Path
from typing import Annotated, Any

import typer

from tenantry import errors
from tenantry.cli import output
from tenantry.spec import repository
from tenantry.tenancy import objects, reconcile
from tenantry.tenancy.plan import Change, Plan

app = typer.Typer(
    help="Onboard teams: every tenants/<team>.yaml becomes an isolated namespace in each "
    "cluster of each environment the team uses.",
    no_args_is_help=True,
)

RepoOption = Annotated[
    Path,
    typer.Option(
        "--repo",
        "-r",
        envvar="TENANTRY_REPO",
        help="The platform repository (platform.yaml and tenants/). Default: current directory.",
    ),
]


def _load(repo: Path) -> repository.Repository:
    return repository.load(repo.resolve())


@app.command("validate")
def validate_cmd(ctx: typer.Context, repo: RepoOption = Path()) -> None:
    """Check platform.yaml and every tenant file; report all problems at once.

    Each problem is printed as `file: field: message (fix)`. Exit 1 if any.

    Example: tenantry tenants validate --repo examples/platform-repo
    """
    try:
        loaded = _load(repo)
    except errors.SpecError as e:
        if ctx.obj.output != "table":
            output.emit([asdict(p) for p in e.problems], ctx.obj.output)
        else:
            for problem in e.problems:
                output.err_console.print(str(problem), markup=False, soft_wrap=True)
        output.err_console.print(f"{len(e.problems)} problem(s)")
        raise typer.Exit(1) from e
    output.emit(
        {"platform": loaded.platform.name, "tenants": len(loaded.tenants), "valid": True},
        ctx.obj.output,
    )


def _change_row(cluster: str, change: Change) -> dict[str, Any]:
    return {
        "cluster": cluster,
        "action": change.action,
        "object": str(change.key),
        "fields": ", ".join(change.fields),
    }


@app.command("plan")
def plan_cmd(
    ctx: typer.Context,
    repo: RepoOption = Path(),
    show_unchanged: Annotated[
        bool, typer.Option("--show-unchanged", help="List unchanged objects too.")
    ] = False,
) -> None:
    """Show, per cluster, what `apply` would create, change and delete. Changes nothing.

    Example: tenantry tenants plan --repo examples/platform-repo --output json
    """
    plans = reconcile.plan_all(_load(repo))
    rows = [
        _change_row(target.name, change)
        for target, cluster_plan in plans
        for change in cluster_plan.changes
        if show_unchanged or change.action != "unchanged"
    ]
    output.emit(rows, ctx.obj.output, title="changes")
    for target, cluster_plan in plans:
        counts = cluster_plan.summary()
        output.err_console.print(
            f"{target.name}: {counts['create']} to create, {counts['update']} to change, "
            f"{counts['delete']} to delete, {counts['unchanged']} unchanged"
        )


@app.command("apply")
def apply_cmd(
    ctx: typer.Context,
    repo: RepoOption = Path(),
    force: Annotated[
        bool,
        typer.Option(
            "--force", help="Delete removed tenants' namespaces even if Helm releases remain."
        ),
    ] = False,
) -> None:
    """Make every cluster match the repository: create, repair drift, prune removed tenants.

    Nothing is applied anywhere if any file is invalid, and a removed tenant whose
    namespace still has Helm releases stops the whole apply unless --force.

    Example: tenantry tenants apply --repo examples/platform-repo
    """
    loaded = _load(repo)

    def on_plan(target: reconcile.ClusterTarget, cluster_plan: Plan) -> None:
        counts = cluster_plan.summary()
        output.err_console.print(
            f"{target.name} ({target.environment}): {counts['create']} create, "
            f"{counts['update']} change, {counts['delete']} delete"
        )

    reports = reconcile.apply_all(loaded, force=force, on_plan=on_plan)
    output.emit([asdict(r) for r in reports], ctx.obj.output, title="applied")


@app.command("list")
def list_cmd(ctx: typer.Context, repo: RepoOption = Path()) -> None:
    """List the tenants in the repository.

    Example: tenantry tenants list --output json
    """
    loaded = _load(repo)
    rows = [
        {
            "name": t.name,
            "environments": ", ".join(t.environments),
            "owners": ", ".join([*t.owners.users, *t.owners.groups]),
            "allow_from": ", ".join(t.allow_from),
        }
        for t in loaded.tenants
    ]
    output.emit(rows, ctx.obj.output, title="tenants")


@app.command("show")
def show_cmd(
    ctx: typer.Context,
    name: Annotated[str, typer.Argument(help="The tenant.")],
    repo: RepoOption = Path(),
) -> None:
    """Show one tenant: its spec, and per environment and cluster its namespace and deployer.

    Example: tenantry tenants show payments --output json
    """
    loaded = _load(repo)
    tenant = loaded.tenant(name)
    placements = [
        {
            "environment": env.name,
            "cluster": cluster.name,
            "role": cluster.role,
            "namespace": tenant.name,
            "deployer": f"{tenant.name}/{objects.DEPLOYER_SA}",
            "deployerUser": f"system:serviceaccount:{tenant.name}:{objects.DEPLOYER_SA}",
        }
        for env in loaded.platform.environments
        if env.name in tenant.environments
        for cluster in env.clusters
    ]
    record = {
        "name": tenant.name,
        "spec": tenant.model_dump(mode="json", by_alias=True, exclude_none=True),
        "quota": objects.quota_hard(tenant.quota.merged_over(loaded.platform.defaults.quota)),
        "registries": list(objects.tenant_registries(tenant, loaded.platform)),
        "placements": placements,
    }
    if ctx.obj.output == "table":
        rows = [{k: v for k, v in p.items() if k != "deployerUser"} for p in placements]
        output.emit(rows, "table", title=f"tenant {tenant.name}")
    else:
        output.emit(record, ctx.obj.output)
