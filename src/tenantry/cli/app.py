"""The `tenantry` command: global options, sub-command groups, and the one place
where error types become exit codes.

Each command lives in a module of `tenantry.cli`; only the module of the command
being run is imported (`COMMANDS`), since importing them all — FastAPI, SQLAlchemy,
boto3 — costs about a second that `tenantry verify` or `tenantry lint` should not pay.

Exit codes: 0 success; 1 a failure Tenantry explains (any `TenantryError`);
2 a usage error (bad option, unknown name); 130 interrupted.
"""

from __future__ import annotations

import importlib
import sys
from dataclasses import dataclass
from typing import Annotated

import typer
from rich.markup import escape

import tenantry
from tenantry import errors
from tenantry.cli import argv as arguments
from tenantry.cli import output
from tenantry.local import plugin

# The command line plugs the local platform into the layers below it (which never
# import it), for every command and for `python -m tenantry …` workers and servers.
plugin.install()


@dataclass(frozen=True)
class Options:
    """Global options every command can read from ``ctx.obj``."""

    output: output.Format
    debug: bool


def _version(value: bool) -> None:
    if value:
        typer.echo(f"tenantry {tenantry.version()}")
        raise typer.Exit


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


# Each module of `tenantry.cli` and the top-level commands it adds, in the order
# `tenantry --help` lists them. A module named like its one command is a group
# (its ``app``); the others add theirs with ``register(app)``.
COMMANDS: dict[str, tuple[str, ...]] = {
    "tools": ("tools",),
    "cluster": ("cluster",),
    "tenants": ("tenants",),
    "monitoring": ("monitoring",),
    "traffic": ("traffic",),
    "router": ("router",),
    "canary": ("canary",),
    "local": ("up", "down", "status", "local-token"),
    "services": ("new", "render", "lint", "verify"),
    "delivery": (
        "aws", "publish", "deployer", "history", "promote", "promotions", "approve",
        "reject", "cancel", "rollback", "retry", "requests", "deadletters",
    ),
    "server": ("server", "login", "logout", "whoami", "operation"),
    "secret_keys": ("secrets",),
}  # fmt: skip


def build(modules: tuple[str, ...] = tuple(COMMANDS)) -> typer.Typer:
    """The `tenantry` command with the commands of ``modules`` of `tenantry.cli`."""
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
    app.callback()(_root)
    for name in modules:
        module = importlib.import_module(f"tenantry.cli.{name}")
        if COMMANDS[name] == (name,):
            app.add_typer(module.app, name=name)
        else:
            module.register(app)
    return app


def modules_for(command: str | None) -> tuple[str, ...]:
    """The modules to import to run ``command``: its own, or all of them for the
    overall help and for a name no module has (so click can list the real ones)."""
    owner = [name for name, commands in COMMANDS.items() if command in commands]
    return tuple(owner) or tuple(COMMANDS)


def main() -> None:
    """Run the CLI, translating errors into a one-line cause, the fix and an exit code.

    Typer itself turns usage errors into exit code 2; everything Tenantry raises
    on purpose is a `TenantryError` and is printed here without a traceback.
    """
    argv = arguments.hoist_output_option(sys.argv[1:])
    try:
        build(modules_for(arguments.command_of(argv)))(args=argv, prog_name="tenantry")
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
