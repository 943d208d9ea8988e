"""`tenantry traffic`: live traffic between the production clusters.

Routes, the router and alerts come from the production environment's
`tenantry.traffic.wiring` provider: the local platform's or platform.yaml's."""

from __future__ import annotations

import threading
import time
from pathlib import Path
from typing import Annotated

import httpx2
import typer

from tenantry import errors, processes
from tenantry.cli import client, output
from tenantry.cli.tenants import RepoOption
from tenantry.ledger import Ledger
from tenantry.spec import repository
from tenantry.traffic import failover, wiring
from tenantry.traffic.load import Load

traffic_app = typer.Typer(help="Live traffic between the production clusters.",
                          no_args_is_help=True)  # fmt: skip

RefArgument = Annotated[str, typer.Argument(help="TEAM/SERVICE.")]


@traffic_app.command("status")
def status_cmd(ctx: typer.Context) -> None:
    """Show the routes of the services you may see: each cluster's weight and health, and
    the last failovers (through the server).

    Example: tenantry traffic status --output json
    """
    found = client.Client.from_environment().call("GET", "/traffic")
    output.emit_sections(
        {"routes": ("live traffic", found["routes"]),
         "failovers": ("failovers (newest first)", found["failovers"])},
        ctx.obj.output,
    )  # fmt: skip


@traffic_app.command("load")
def load_cmd(
    ctx: typer.Context,
    ref: RefArgument,
    rate: Annotated[float, typer.Option("--rate", help="Requests per second.")] = 40,
    seconds: Annotated[float, typer.Option(help="How long to send (bounded).")] = 60,
    repo: RepoOption = Path(),
) -> None:
    """Send GETs to a service's route for a while and count the answers by version: a
    canary needs traffic to be analysed.

    Example: tenantry traffic load payments/api --rate 40 --seconds 60 &
    """
    if not 0 < rate <= 500 or not 0 < seconds <= 3600:
        raise errors.UsageError("--rate must be in (0, 500] and --seconds in (0, 3600]")
    loaded = repository.load(repo.resolve())
    service = loaded.service(ref)
    provider = wiring.provider(loaded)
    route = provider.route(loaded, service)
    front = next(url for found, url in provider.routes(loaded) if found.name == route.name)
    load = Load(front, threads=1, interval_s=1 / rate)
    time.sleep(seconds)
    load.stop()
    answers = load.versions
    output.emit([{"answer": k, "requests": v} for k, v in sorted(answers.items())],
                ctx.obj.output, title=f"{ref}: answers by version")  # fmt: skip


@traffic_app.command("watch")
def watch_cmd(
    port: Annotated[int, typer.Option(help="Port for /healthz (loopback).")] = 0,
    repo: RepoOption = Path(),
) -> None:
    """Watch every route's primary: on failure record and alert, pin the standby, and give
    traffic back after the hold-down, gradually. Runs until stopped (`tenantry up` runs it).

    Example: tenantry traffic watch --repo examples/platform-repo
    """
    loaded = repository.load(repo.resolve())
    traffic = loaded.platform.traffic
    if traffic is None:
        raise errors.UsageError("platform.yaml has no traffic section")
    provider = wiring.provider(loaded)
    router = provider.router(loaded)
    stop = threading.Event()
    if port:
        processes.serve_health(port, stop)
    with Ledger.open() as ledger:
        watchers = [
            failover.Watcher(route, router=router, ledger=ledger, hold_down_s=traffic.hold_down_s,
                             alert=lambda summary: _platform_alert(provider, summary))
            for route, _ in provider.routes(loaded)
        ]  # fmt: skip
        processes.on_terminate(stop.set)
        while not stop.is_set():
            for watcher in watchers:
                watcher.poll()
            stop.wait(0.1)


def _platform_alert(provider: wiring.Provider, summary: str) -> None:
    """Print it, and page the platform team through the platform's alerting."""
    output.err_console.print(summary, markup=False)
    labels = {"alertname": "TrafficFailover", "severity": "critical", "notify": "platform"}
    try:
        provider.alert(labels, summary)
    except httpx2.HTTPError as e:
        output.err_console.print(f"could not alert: {e}", markup=False)
