"""`tenantry server`, `login`, `logout`, `whoami`, `operation`: the server and reaching it."""

from __future__ import annotations

import logging
import sys
from pathlib import Path
from typing import Annotated

import typer
import uvicorn

from tenantry import errors
from tenantry.cli import client, output
from tenantry.cli.tenants import RepoOption
from tenantry.ledger import Ledger
from tenantry.server import app as server_app
from tenantry.server import context, identity
from tenantry.spec import repository


def register(app: typer.Typer) -> None:
    """Add the server commands to ``app``."""
    app.command("server")(server_cmd)
    app.command("login")(login_cmd)
    app.command("logout")(logout_cmd)
    app.command("whoami")(whoami_cmd)
    app.command("operation")(operation_cmd)


def server_cmd(
    repo: RepoOption = Path(),
    host: Annotated[str, typer.Option(help="Address to listen on.")] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="Port to listen on.")] = 8080,
) -> None:
    """Run the Tenantry server: the HTTP API (OpenAPI at /openapi.json) and the only holder
    of the platform's credentials. People call it with their own bearer token, which the
    management cluster named in platform.yaml (`server.managementCluster`) vouches for.

    The ledger is TENANTRY_DATABASE_URL (else the local SQLite file). Runs until SIGTERM.

    Example: tenantry server --repo examples/platform-repo --port 8080
    """
    loaded = repository.load(repo.resolve())
    settings = loaded.platform.server
    if settings is None:
        raise errors.UsageError(
            f"{loaded.root / repository.PLATFORM_FILE} has no server section",
            fix="add server: {managementCluster: NAME, admins: {users: [...]}}",
        )
    connect = context.cluster_connector(loaded)
    management = settings.management_cluster
    reviewer = identity.Reviewer(lambda: connect(management), cache_s=settings.review_cache_s)
    ledger = Ledger.open()
    logging.basicConfig(level=logging.INFO, stream=sys.stderr,
                        format="%(asctime)s %(name)s %(levelname)s %(message)s")  # fmt: skip
    app = server_app.create_app(context.Server(loaded, ledger, reviewer, connect))
    output.err_console.print(f"tenantry server on http://{host}:{port} (management cluster "
                             f"{management}, ledger {ledger.engine.dialect.name})")  # fmt: skip
    try:
        # uvicorn's access log prints paths and statuses, never headers: no token leaks.
        uvicorn.run(app, host=host, port=port, log_level="warning")
    finally:
        ledger.close()


def login_cmd(
    server: Annotated[str, typer.Option("--server", help="The server's URL.")] = "",
    token_file: Annotated[
        Path | None,
        typer.Option(
            "--token-file",
            help="Read the token from this file.",
            exists=True,
            dir_okay=False,
            readable=True,
        ),
    ] = None,
) -> None:
    """Check a token with the server and store the URL and token in the client config
    (mode 0600). The token comes from --token-file or standard input — never from an
    argument, which other users could see in the process list.

    Example: kubectl create token alice | tenantry login --server https://tenantry.acme.example
    """
    url = (server or client.server_url() or "").rstrip("/")
    if not url:
        raise errors.UsageError("no server given", fix="pass --server URL")
    if token_file is not None:
        token = token_file.read_text().strip()
    elif sys.stdin.isatty():
        token = typer.prompt("token", hide_input=True).strip()
    else:
        token = sys.stdin.read().strip()
    me = client.Client(url, token).call("GET", "/whoami")
    path = client.store(url, token)
    output.err_console.print(f"logged in to {url} as {me['username']}; config in {path}")


def logout_cmd() -> None:
    """Forget the stored server URL and token.

    Example: tenantry logout
    """
    removed = client.forget()
    output.err_console.print("logged out" if removed else "was not logged in")


def whoami_cmd(ctx: typer.Context) -> None:
    """Who the server says you are, and your role in each tenant you may see.

    Example: tenantry whoami -o json
    """
    me = client.Client.from_environment().call("GET", "/whoami")
    output.emit(
        {"username": me["username"], "groups": ", ".join(me["groups"]), "admin": me["admin"],
         "tenants": ", ".join(f"{t} ({r})" for t, r in me["tenants"].items())}
        if ctx.obj.output == "table" else me,
        ctx.obj.output,
    )  # fmt: skip


def operation_cmd(
    ctx: typer.Context,
    operation: Annotated[int, typer.Argument(help="The operation's number.")],
    wait: Annotated[bool, typer.Option("--wait", help="Follow it until it ends.")] = False,
) -> None:
    """Show production work the workers carry out (an approval's deploy, a rollback).

    Example: tenantry operation 3 --wait
    """
    api = client.Client.from_environment()
    view = follow(api, operation) if wait else api.call("GET", f"/operations/{operation}")
    show_operation(ctx, view)


def follow(api: client.Client, operation: int) -> dict[str, object]:
    """Print an operation's progress lines as they come; its final state."""
    for event, data in api.follow(operation):
        if event == "progress":
            output.err_console.print(f"  {data}", markup=False)
        elif event == "end":
            result: dict[str, object] = data
            return result
    raise client.ServerError(f"the event stream of operation {operation} ended early",
                             fix=f"`tenantry operation {operation}` shows where it is")  # fmt: skip


def show_operation(ctx: typer.Context, view: dict[str, object]) -> None:
    """Print an operation; exit 1 if it failed."""
    shown = {k: v for k, v in view.items() if k != "progress" or ctx.obj.output != "table"}
    output.emit(shown, ctx.obj.output)
    if view.get("status") == "failed":
        raise typer.Exit(1)
