"""`tenantry router`: the platform team's own HAProxy in front of production clusters
outside this machine (on premises), as platform.yaml's ``traffic.haproxy`` describes it.

`run` keeps HAProxy running as its child, beside the workers (they share its directory:
the canary controller and the failover watcher set weights through its Runtime API and
the weights file). It follows the platform repository: every ``--refresh-s`` seconds, and
at once on SIGHUP (a supervisor's reload), it reads platform.yaml and the services again
and reloads HAProxy when their routes changed. A repository that does not load leaves the
last good configuration serving. The local platform runs its own router (`tenantry up`).
"""

from __future__ import annotations

import signal
import subprocess
import threading
from pathlib import Path
from typing import Annotated

import typer

from tenantry import errors, processes
from tenantry.cli import output
from tenantry.cli.tenants import RepoOption
from tenantry.spec import repository
from tenantry.traffic import wiring
from tenantry.traffic.haproxy import HAProxy

app = typer.Typer(
    help="The HAProxy router on premises (platform.yaml traffic.haproxy).", no_args_is_help=True
)


def _router(repo: Path) -> HAProxy:
    """The HAProxy platform.yaml describes for the repository's routes now."""
    loaded = repository.load(repo.resolve())
    provider = wiring.provider(loaded)
    if not isinstance(provider, wiring.Configured):
        raise errors.UsageError(
            "production runs on local clusters: the local platform runs their router",
            fix="use `tenantry up`; `tenantry router` is for clusters outside this machine",
        )
    return provider.haproxy(loaded)


@app.command("routes")
def routes_cmd(ctx: typer.Context, repo: RepoOption = Path()) -> None:
    """Show what the router serves: each service's host and the clusters' ingresses behind
    it, with the canary weight kept for it.

    Example: tenantry router routes --repo /srv/platform --output json
    """
    router = _router(repo)
    wanted = router.wanted()
    output.emit([
        {"route": route.name, "url": router.fronts.url(route),
         "primary": route.endpoint("primary").address, "canary": route.endpoint("canary").address,
         "canary_weight": wanted.get(route.name, 0)}
        for route in router.routes
    ], ctx.obj.output, title="routes")  # fmt: skip


@app.command("run")
def run_cmd(
    refresh_s: Annotated[
        float, typer.Option("--refresh-s", help="How often to read the repository again.")
    ] = 30.0,
    repo: RepoOption = Path(),
) -> None:
    """Run HAProxy for every service's route until stopped (SIGTERM: connections are
    finished first); reload it when the repository's routes change, every --refresh-s
    seconds and on SIGHUP. Run it under a supervisor, as the workers' user, on their host.

    Example: tenantry router run --repo /srv/platform
    """
    if not 1 <= refresh_s <= 3600:
        raise errors.UsageError("--refresh-s must be between 1 and 3600")
    router = _router(repo)
    router.directory.mkdir(mode=0o700, parents=True, exist_ok=True)
    router.write_config()
    child = subprocess.Popen(router.command())
    stop, refresh = threading.Event(), threading.Event()

    def finish() -> None:
        stop.set()
        refresh.set()  # wakes the wait between refreshes

    processes.on_terminate(finish)
    signal.signal(signal.SIGHUP, lambda *_: refresh.set())
    try:
        router.wait_for_socket(child)
        router.apply_wanted()
        _say(f"HAProxy {child.pid} serves {len(router.routes)} route(s); /metrics on "
             f"{router.stats}")  # fmt: skip
        for route in router.routes:
            _say(f"{route.name} at {router.fronts.url(route)}")
        while not stop.is_set():
            refresh.wait(refresh_s)
            refresh.clear()
            if child.poll() is not None:
                raise errors.TenantryError(
                    f"HAProxy exited with code {child.returncode}",
                    fix="read its output above; the supervisor starts the router again",
                )
            if not stop.is_set():
                router = _follow(router, repo, child.pid)
    finally:
        _stop(child)


def _follow(router: HAProxy, repo: Path, master_pid: int) -> HAProxy:
    """The router for the repository as it is now, HAProxy reloaded if its routes changed;
    the current one when the repository does not load."""
    try:
        new = _router(repo)
    except (errors.TenantryError, OSError) as e:
        _say(f"the platform repository does not load; still serving the last routes: {e}")
        return router
    try:
        if new.render() == router.config_file.read_text():
            return router
    except OSError:
        pass  # gone: the reload writes it again
    new.reload(master_pid)
    _say(f"reloaded: {len(new.routes)} route(s)")
    return new


def _stop(child: subprocess.Popen[bytes]) -> None:
    """Soft-stop HAProxy (SIGUSR1: it stops listening and finishes the requests in flight);
    SIGTERM after 15 s."""
    if child.poll() is None:
        child.send_signal(signal.SIGUSR1)
        try:
            child.wait(timeout=15)
        except subprocess.TimeoutExpired:
            child.terminate()
            child.wait()


def _say(line: str) -> None:
    output.err_console.print(f"router: {line}", markup=False)
