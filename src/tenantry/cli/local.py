"""`tenantry up`, `down`, `status`: the local platform."""

from __future__ import annotations

from dataclasses import asdict

import typer

from tenantry.cli import output
from tenantry.local import platform


def register(app: typer.Typer) -> None:
    """Add the top-level local-platform commands to ``app``."""
    app.command("up")(up_cmd)
    app.command("down")(down_cmd)
    app.command("status")(status_cmd)


def up_cmd(
    ctx: typer.Context,
    nodes: int = typer.Option(3, "--nodes", "-n", help="Simulated nodes per cluster."),
) -> None:
    """Start the local platform: clusters staging, prod-primary and prod-canary.

    Creates what is missing and restarts what is stopped; running clusters are reused.
    Needs `tenantry tools install` first.

    Example: tenantry up && kubectl --kubeconfig "$(tenantry cluster kubeconfig staging)" get nodes
    """
    reports = platform.up(
        nodes=nodes, on_start=lambda n: output.err_console.print(f"starting cluster {n} ...")
    )
    output.emit([asdict(r) for r in reports], ctx.obj.output, title="local platform")
    if ctx.obj.output == "table":
        output.err_console.print("\nReach a cluster with kubectl (pods are simulated by kwok):")
        for r in reports:
            output.err_console.print(f"  kubectl --kubeconfig {r.kubeconfig} get nodes")
        output.err_console.print("Stop everything with: tenantry down")


def down_cmd(ctx: typer.Context) -> None:
    """Stop the local platform and remove its clusters' state. Safe to call twice.

    Example: tenantry down
    """
    output.emit([asdict(r) for r in platform.down()], ctx.obj.output, title="local platform")


def status_cmd(ctx: typer.Context) -> None:
    """Show each local platform cluster and whether its API server answers.

    Example: tenantry status --output json
    """
    output.emit([asdict(r) for r in platform.status()], ctx.obj.output, title="local platform")
