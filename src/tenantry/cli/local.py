"""`tenantry up`, `down`, `status`: the local platform."""

from __future__ import annotations

import sys
from dataclasses import asdict
from pathlib import Path
from typing import Annotated

import typer

from tenantry import errors
from tenantry.cli import client, output
from tenantry.cli.tenants import RepoOption
from tenantry.local import people, platform
from tenantry.spec import repository


def register(app: typer.Typer) -> None:
    """Add the top-level local-platform commands to ``app``."""
    app.command("up")(up_cmd)
    app.command("down")(down_cmd)
    app.command("status")(status_cmd)
    app.command("local-token")(local_token_cmd)


def up_cmd(
    ctx: typer.Context,
    nodes: int = typer.Option(3, "--nodes", "-n", help="Simulated nodes per cluster."),
    repo: RepoOption = Path(),
) -> None:
    """Start the local platform: clusters staging, prod-primary and prod-canary, and — for a
    repository whose artifacts live on the local server — the S3/SQS server with the bucket
    and queues wired, and a deployer worker; then Prometheus, Alertmanager, the log
    shipper and stand-in Slack/PagerDuty/SMTP/Splunk receivers with the generated
    monitoring configuration.

    Creates what is missing and restarts what is stopped; running parts are reused. Where
    this machine can run containers each new cluster gets one real node (`realNodes:` on a
    cluster in platform.yaml says otherwise), so pods really run and production's live
    traffic reaches them; elsewhere clusters are kwok-only and `up` says why.
    Needs `tenantry tools install` first.

    Example: tenantry up --repo examples/platform-repo
    """
    _, kwok_only = platform.real_nodes(repository.load(repo.resolve()))
    if kwok_only:
        output.err_console.print(
            f"clusters are kwok-only (pods are simulated, live traffic goes to demo apps): "
            f"{kwok_only}",
            markup=False,
        )
    reports = platform.up(
        repo_root=repo.resolve(),
        nodes=nodes,
        on_start=lambda n: output.err_console.print(f"starting cluster {n} ..."),
        on_restart=lambda n: output.err_console.print(
            f"restarting cluster {n} so its API server reads new people's tokens ..."
        ),
        on_progress=lambda line: output.err_console.print(f"  {line}", markup=False),
    )
    output.emit([asdict(r) for r in reports], ctx.obj.output, title="local platform")
    services = platform.start_services(repo.resolve())
    if services is not None:
        output.err_console.print(
            f"{services.store}; workers' metrics {', '.join(services.workers)}", markup=False
        )
        if services.server:
            output.err_console.print(
                f"Tenantry server {services.server} (people sign in with their own token: "
                "`tenantry local-token USER | tenantry login`)"
            )
    for name, port in platform.start_traffic(repo.resolve()):
        output.err_console.print(f"live traffic for {name}: http://127.0.0.1:{port}/ (HAProxy)")
    output.err_console.print("starting monitoring (Prometheus, Alertmanager, log shipper) ...")
    found = platform.start_monitoring(repo.resolve())
    output.err_console.print(
        f"Prometheus {found.prometheus} · Alertmanager {found.alertmanager} · stand-in "
        f"receivers {found.receivers} (`tenantry monitoring demo payments`, then "
        "`tenantry monitoring received slack`)"
    )
    if ctx.obj.output == "table":
        real = any(r.real_nodes for r in reports)
        how = "pods run on its real node" if real else "pods are simulated by kwok"
        output.err_console.print(f"\nReach a cluster with kubectl ({how}):")
        for r in reports:
            output.err_console.print(f"  kubectl --kubeconfig {r.kubeconfig} get nodes")
        output.err_console.print(
            f"People's own bearer tokens (one per user, and member-of-<group> per group) are "
            f"in {people.directory() / people.TOKENS_JSON}, readable only by you."
        )
        output.err_console.print("Stop everything with: tenantry down")


def down_cmd(ctx: typer.Context) -> None:
    """Stop the local platform and remove its clusters' state. Safe to call twice.

    Example: tenantry down
    """
    output.emit([asdict(r) for r in platform.down()], ctx.obj.output, title="local platform")


def status_cmd(ctx: typer.Context) -> None:
    """Show each local platform cluster and whether it answers, the Tenantry server's URL,
    and — when you are logged in — what each service you may see runs where.

    Example: tenantry status --output json
    """
    clusters = [asdict(r) for r in platform.status()]
    url = client.server_url()
    server_rows = [{"server": url or "-", "user": "-"}]
    releases: list[dict[str, object]] = []
    try:
        api = client.Client.from_environment()
        server_rows[0]["user"] = api.call("GET", "/whoami")["username"]
        releases = [
            {k: r[k] for k in ("service", "environment", "cluster", "version", "actor",
                               "finished")}
            for r in api.call("GET", "/status")
        ]  # fmt: skip
    except errors.TenantryError as e:
        output.err_console.print(f"releases: {e.message}" + (f" ({e.fix})" if e.fix else ""),
                                 markup=False)  # fmt: skip
    output.emit_sections(
        {"clusters": ("local platform", clusters),
         "server": ("Tenantry server", server_rows),
         "releases": ("releases (from the server)", releases)},
        ctx.obj.output,
    )  # fmt: skip


def local_token_cmd(
    user: Annotated[str, typer.Argument(help="A person of the local platform.")],
) -> None:
    """Print the local platform's token for one of the example people (the local API
    servers accept it, so the Tenantry server can prove who it is). Local only: on a
    real platform people's tokens come from your identity provider.

    Example: tenantry local-token alice@acme.example | tenantry login
    """
    sys.stdout.write(people.token(user) + "\n")
