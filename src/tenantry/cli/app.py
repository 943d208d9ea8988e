"""The `tenantry` command: global options, sub-command groups, and the one place
where error types become exit codes.

Exit codes: 0 success; 1 a failure Tenantry explains (any `TenantryError`);
2 a usage error (bad option, unknown name); 130 interrupted.
"""

from __future__ import annotations

import sys
from dataclasses import dataclass
from typing import Annotated

import typer
from rich.markup import escape

import tenantry
from tenantry import errors
from tenantry.cli import (
    canary,
    cluster,
    delivery,
    local,
    monitoring,
    output,
    server,
    services,
    tenants,
    tools,
    traffic,
)

app = typer.Typer(
    name="tenantry",
    help=(
        "Tenantry: onboard teams onto shared Kubernetes clusters, verify every chart in a real "
        "cluster, and deploy through staging to production.\n\n"
        "Start with `tenantry tools install`, then `tenantry up`."
    ),
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
    rich_markup_mode=None,
)


@dataclass(frozen=True)
class Options:
    """Global options every command can read from ``ctx.obj``."""

    output: output.Format
    debug: bool


def _version(value: bool) -> None:
    if value:
        typer.echo(f"tenantry {tenantry.version()}")
        raise typer.Exit


@app.callback()
def _root(
    ctx: typer.Context,
    output_format: Annotated[
        output.Format,
        typer.Option(
            "--output",
            "-o",
            help="How to print results: table for people, json or yaml for scripts.",
        ),
    ] = "table",
    debug: Annotated[bool, typer.Option("--debug", help="Show tracebacks for errors.")] = False,
    version: Annotated[
        bool,
        typer.Option(
            "--version", callback=_version, is_eager=True, help="Print the version and exit."
        ),
    ] = False,
) -> None:
    ctx.obj = Options(output=output_format, debug=debug)


app.add_typer(tools.app, name="tools")
app.add_typer(cluster.app, name="cluster")
app.add_typer(tenants.app, name="tenants")
app.add_typer(monitoring.app, name="monitoring")
app.add_typer(traffic.traffic_app, name="traffic")
app.add_typer(canary.app, name="canary")
local.register(app)
services.register(app)
delivery.register(app)
server.register(app)


def main() -> None:
    """Run the CLI, translating errors into a one-line cause, the fix and an exit code.

    Typer itself turns usage errors into exit code 2; everything Tenantry raises
    on purpose is a `TenantryError` and is printed here without a traceback.
    """
    try:
        app(prog_name="tenantry")
    except errors.TenantryError as e:
        if "--debug" in sys.argv[1:]:
            raise
        output.err_console.print(f"[bold red]error:[/] {escape(e.message)}", soft_wrap=True)
        if e.fix:
            output.err_console.print(f"[bold]fix:[/] {escape(e.fix)}", soft_wrap=True)
        sys.exit(e.exit_code)
    except KeyboardInterrupt:
        output.err_console.print("interrupted")
        sys.exit(130)
