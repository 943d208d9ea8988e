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
from tenantry.tenancy import reconcile
from tenantry.traffic import failover, ingress, wiring
from tenantry.traffic.load import Load

app = typer.Typer(help="Live traffic between the production clusters.",
                          no_args_is_help=True)  # fmt: skip

RefArgument = Annotated[str, typer.Argument(help="TEAM/SERVICE.")]


@app.command("status")
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


@app.command("load")
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


@app.command("watch")
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


@app.command("ingress")
def ingress_cmd(
    cluster: Annotated[str, typer.Option(help="The production cluster whose pods serve.")],
    listen: Annotated[
        list[str],
        typer.Option(
            help="ROUTE=PORT: take the route's traffic on 127.0.0.1:PORT (repeat per route)."
        ),
    ],
    stats_port: Annotated[int, typer.Option(help="The ingress HAProxy's /metrics and /stats.")],
    directory: Annotated[Path, typer.Option("--dir", help="Where its configuration goes.")],
    port: Annotated[int, typer.Option(help="Port for /healthz (loopback).")] = 0,
    environment: Annotated[str, typer.Option(help="The cluster's environment.")] = "production",
    repo: RepoOption = Path(),
) -> None:
    """Run a cluster's ingress: an HAProxy whose backends are each route's ready pods, read
    from the cluster's EndpointSlices and kept up to date. Runs until stopped (`tenantry up`
    runs one per production cluster with real nodes).

    Example: tenantry traffic ingress --cluster prod-primary --listen payments-api=18080
    --stats-port 18081 --dir /tmp/ingress
    """
    loaded = repository.load(repo.resolve())
    env = loaded.platform.environment(environment)
    ref = next((c for c in env.clusters if c.name == cluster), None)
    if ref is None:
        names = ", ".join(c.name for c in env.clusters)
        raise errors.UsageError(f"environment {environment} has no cluster {cluster!r}",
                                fix=f"name one of: {names}")  # fmt: skip
    ports: dict[str, int] = {}
    for item in listen:
        route, _, number = item.partition("=")
        if not number.isdigit():
            raise errors.UsageError(f"--listen {item!r} is not ROUTE=PORT")
        ports[route] = int(number)
    backends = [
        ingress.Backend(wiring.route_name(s), ports[wiring.route_name(s)], s.tenant, s.name)
        for s in loaded.services
        if s.descriptor is not None and wiring.route_name(s) in ports
    ]
    unknown = sorted(set(ports) - {b.route for b in backends})
    if unknown:
        raise errors.UsageError(f"no described service has route(s) {', '.join(unknown)}",
                                fix="a route is <tenant>-<service> of a service.yaml")  # fmt: skip
    target = reconcile.resolve(ref, environment, loaded.root)
    proxy = ingress.Ingress(f"ingress-{cluster}", directory.resolve(), backends,
                            stats_port=stats_port)  # fmt: skip
    proxy.start()
    stop = threading.Event()
    if port:
        processes.serve_health(port, stop)
    processes.on_terminate(stop.set)
    log = lambda line: output.err_console.print(f"{cluster}: {line}", markup=False)  # noqa: E731
    controller = ingress.Controller(proxy, target.connect, log=log)
    try:
        controller.run(stop.is_set, wait=stop.wait)
    finally:
        controller.close()
