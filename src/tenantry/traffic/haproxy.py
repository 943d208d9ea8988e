"""The HAProxy router: its configuration (pure), its Runtime API, and the process.

Per route (a service's live traffic) one backend whose servers are the clusters' ingress
endpoints, reached through the router's front (`Fronts`): on the local platform one
loopback port per route (`PortPerRoute`); on premises one listener for every route, the
route chosen by the request's Host, ``<tenant>-<service>.<domain>`` (`ByHost`). Each
backend:

* the primary and the canary are *active* servers weighted ``100 - w`` and ``w``;
* each is also listed again as a *backup* server. A server at weight 0 is never
  chosen, even when every other server is down, so without the backups a canary at
  weight 0 would be no standby at all; HAProxy sends traffic to backups only when no
  active server can take it, whatever their weights;
* health checks every 200 ms, two failures mark a server down (detection in about
  half a second), and so do three connection errors in live traffic (``observe
  layer4``); ``retries`` with ``option redispatch`` and ``retry-on`` connection
  failures, empty responses and timeouts, so an idempotent request caught by a
  failure is sent again — to the standby once the server is down. (While the dead
  server is still up, a retry could only pick it again: at weight 0 the canary is
  not an active choice.)
* a server that comes back is up again after ``rise`` good checks; giving it traffic
  back after a hold-down, gradually, is the failover watcher's job
  (`tenantry.traffic.failover`).

Weights set through the Runtime API live only in the running process: a reload or a
restart starts from ``haproxy.cfg``. So the router keeps the weights it wants in a file
next to the configuration (``canary-weights.json``), renders the configuration again
each time one of them changes — not only at the next start or reload — and applies
them again after each reload. Whatever starts HAProxy from ``haproxy.cfg`` after a crash
(the router, a supervisor, a person) gets the weights the rollout set, not the ones of
the last render. Both files are replaced atomically, so a crash mid-write never leaves
half a configuration. HAProxy runs in master-worker mode; `reload` signals the master
(same pid), which starts new workers with the new configuration. Its built-in
Prometheus exporter serves ``/metrics`` on the stats port.
"""

from __future__ import annotations

import csv
import io
import json
import os
import shutil
import signal
import socket
import subprocess
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TypeAlias

from tenantry import errors, processes
from tenantry.traffic.router import Route, ServerState

PROCESS = "haproxy"


@dataclass(frozen=True)
class Timing:
    """Health checking: a failing server is down after ``fall`` checks."""

    check_interval_ms: int = 200
    fall: int = 2
    rise: int = 3
    # Connection errors seen in live traffic that mark a server down at once, before
    # the checks notice: a retried request then goes to the standby, not the dead server.
    error_limit: int = 3


def server_weights(canary_weight: int) -> dict[str, int]:
    """HAProxy weights of the two active servers for a canary share in percent."""
    return {"primary": 100 - canary_weight, "canary": canary_weight}


@dataclass(frozen=True)
class PortPerRoute:
    """A frontend per route, each on its own port of ``host`` (the local platform's)."""

    ports: Mapping[str, int]
    host: str = "127.0.0.1"

    def lines(self, routes: Sequence[Route]) -> list[str]:
        """The frontends' configuration."""
        lines = []
        for route in routes:
            lines += ["", f"frontend {route.name}",
                      f"    bind {self.host}:{self.ports[route.name]}",
                      f"    default_backend {route.name}"]  # fmt: skip
        return lines

    def url(self, route: Route) -> str:
        """Where users reach the route."""
        return f"http://{self.host}:{self.ports[route.name]}/"


# Route names are DNS labels, which have no underscore: no route's backend has this name.
UNKNOWN_HOST = "_unknown_host"


@dataclass(frozen=True)
class ByHost:
    """One frontend on ``bind`` (host:port) for every route; a request goes to the route
    its Host names, ``<route>.<domain>`` (any case, any port); other hosts get a 404."""

    bind: str
    domain: str

    def host(self, route: Route) -> str:
        """The host name users reach the route at."""
        return f"{route.name}.{self.domain}"

    def lines(self, routes: Sequence[Route]) -> list[str]:
        """The frontend and the 404 for unknown hosts."""
        lines = ["", "frontend routes", f"    bind {self.bind}"]
        lines += [f"    use_backend {r.name} if {{ req.hdr(host),field(1,:) -m str -i "
                  f"{self.host(r)} }}" for r in routes]  # fmt: skip
        return [
            *lines, f"    default_backend {UNKNOWN_HOST}", "", f"backend {UNKNOWN_HOST}",
            '    http-request return status 404 content-type text/plain string "no service at '
            'this host"',
        ]  # fmt: skip

    def url(self, route: Route) -> str:
        """Where users reach the route (the listener's port unless it is 80)."""
        port = self.bind.rsplit(":", 1)[1]
        return f"http://{self.host(route)}{'' if port == '80' else ':' + port}/"


Fronts: TypeAlias = PortPerRoute | ByHost


def config(
    routes: Sequence[Route],
    *,
    fronts: Fronts,
    admin_socket: Path,
    stats: str,
    canary_weights: Mapping[str, int],
    timing: Timing = Timing(),
) -> str:
    """The whole haproxy.cfg; ``stats`` is where /metrics and /stats listen (host:port)."""
    lines = [
        "global",
        f"    stats socket {admin_socket} mode 600 level admin expose-fd listeners",
        "    stats timeout 10s",
        "",
        "defaults",
        "    mode http",
        "    timeout connect 500ms",
        "    timeout client 30s",
        "    timeout server 10s",
        "    retries 3",
        "    option redispatch 1",
        "    retry-on conn-failure empty-response response-timeout 502 503 504",
        "",
        "frontend stats",
        f"    bind {stats}",
        "    http-request use-service prometheus-exporter if { path /metrics }",
        "    stats enable",
        "    stats uri /stats",
        "    stats refresh 2s",
        *fronts.lines(routes),
    ]
    for route in routes:
        weights = server_weights(canary_weights.get(route.name, 0))
        lines += [
            "",
            f"backend {route.name}",
            "    balance roundrobin",
            "    option httpchk GET /healthz",
            "    http-check expect status 200",
            f"    default-server check inter {timing.check_interval_ms}ms "
            f"fall {timing.fall} rise {timing.rise} "
            f"observe layer4 error-limit {timing.error_limit} on-error mark-down",
        ]
        for endpoint in route.endpoints:
            weight = weights.get(endpoint.role, 0)
            lines.append(f"    server {endpoint.cluster} {endpoint.address} weight {weight}")
        for endpoint in route.endpoints:
            lines.append(f"    server {endpoint.cluster}-standby {endpoint.address} backup")
    return "\n".join(lines) + "\n"


def replace_atomically(path: Path, text: str) -> None:
    """Write ``path`` whole or not at all: a reader (HAProxy starting, another command)
    sees the old file or the new one, never a half-written one."""
    path.parent.mkdir(parents=True, exist_ok=True)
    partial = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    partial.write_text(text)
    partial.replace(path)


class Runtime:
    """HAProxy's Runtime API on its admin socket."""

    def __init__(self, path: Path) -> None:
        self.path = path

    def command(self, line: str) -> str:
        """Send one command; its answer."""
        try:
            with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
                sock.settimeout(5)
                sock.connect(str(self.path))
                sock.sendall(line.encode() + b"\n")
                chunks = []
                while chunk := sock.recv(65536):
                    chunks.append(chunk)
        except OSError as e:
            raise errors.TenantryError(
                f"HAProxy does not answer on {self.path}: {e}",
                fix="start the local platform with `tenantry up` (`tenantry status` shows it)",
            ) from e
        return b"".join(chunks).decode()

    def set_weight(self, backend: str, server: str, weight: int) -> None:
        """Change one server's weight now."""
        answer = self.command(f"set weight {backend}/{server} {weight}").strip()
        if answer:
            raise errors.TenantryError(f"HAProxy refused `set weight {backend}/{server}`: {answer}")

    def stats(self) -> list[dict[str, str]]:
        """``show stat`` as rows (pxname, svname, status, weight, stot, …)."""
        text = self.command("show stat").lstrip("# ")
        return list(csv.DictReader(io.StringIO(text)))


class HAProxy:
    """The router process for a set of routes, under ``directory``."""

    def __init__(
        self,
        directory: Path,
        routes: Sequence[Route],
        *,
        fronts: Fronts,
        stats: str,
        timing: Timing = Timing(),
    ) -> None:
        self.directory = directory
        self.routes = list(routes)
        self.fronts = fronts
        self.stats = stats
        self.timing = timing
        self.runtime = Runtime(directory / "admin.sock")

    @classmethod
    def on_loopback(
        cls, directory: Path, routes: Sequence[tuple[Route, int]], *, stats_port: int,
        timing: Timing = Timing(),
    ) -> HAProxy:  # fmt: skip
        """The local platform's router: each (route, port) on its own loopback port."""
        fronts = PortPerRoute({route.name: port for route, port in routes})
        return cls(directory, [route for route, _ in routes], fronts=fronts,
                   stats=f"127.0.0.1:{stats_port}", timing=timing)  # fmt: skip

    @property
    def stats_port(self) -> int:
        """The port of /metrics and /stats."""
        return int(self.stats.rsplit(":", 1)[1])

    @property
    def config_file(self) -> Path:
        """Where the configuration is written."""
        return self.directory / "haproxy.cfg"

    @property
    def _wanted_file(self) -> Path:
        return self.directory / "canary-weights.json"

    def wanted(self) -> dict[str, int]:
        """The canary weights the router keeps (re-applied after every reload)."""
        try:
            return {k: int(v) for k, v in json.loads(self._wanted_file.read_text()).items()}
        except (OSError, ValueError):
            return {}

    def write_config(self) -> None:
        """Render haproxy.cfg for the routes and the weights kept now (atomically)."""
        replace_atomically(self.config_file, self.render())

    def render(self) -> str:
        """The configuration for the routes and the weights kept now."""
        return config(
            self.routes, fronts=self.fronts, admin_socket=self.runtime.path, stats=self.stats,
            canary_weights=self.wanted(), timing=self.timing,
        )  # fmt: skip

    def command(self) -> list[str]:
        """How HAProxy is run (master-worker, in the foreground) from the configuration."""
        binary = shutil.which("haproxy")
        if binary is None:
            raise errors.ToolMissingError("haproxy is not installed", fix="apt-get install haproxy")
        return [binary, "-W", "-db", "-f", str(self.config_file)]

    def start(self) -> processes.Process:
        """Write the configuration and start HAProxy detached, or find it running."""
        self.write_config()
        process = processes.start(PROCESS, self.command(), port=self.stats_port)
        self.wait_for_socket()
        return process

    def reload(self, master_pid: int | None = None) -> None:
        """Reload the configuration (new workers, same master) and re-apply the weights;
        the master is the one `start` left running unless ``master_pid`` names another."""
        if master_pid is None:
            running = processes.running(PROCESS)
            if running is None:
                raise errors.TenantryError("HAProxy is not running",
                                           fix="start it with `tenantry up`")  # fmt: skip
            master_pid = running.pid
        self.write_config()
        before = self._worker_pid()
        os.kill(master_pid, signal.SIGUSR2)
        deadline = time.monotonic() + 10
        while self._worker_pid() in (before, None):
            if time.monotonic() > deadline:
                raise errors.WaitTimeoutError("HAProxy did not reload within 10 s")
            time.sleep(0.05)
        self.apply_wanted()

    def _worker_pid(self) -> int | None:
        try:
            return int(self.runtime.command("show info").split("Pid: ", 1)[1].split()[0])
        except (errors.TenantryError, IndexError, ValueError):
            return None

    def wait_for_socket(self, child: subprocess.Popen[bytes] | None = None) -> None:
        """Until a worker answers on the admin socket (10 s at most); an error at once if
        ``child``, the HAProxy being waited for, exits first."""
        deadline = time.monotonic() + 10
        while self._worker_pid() is None:
            if child is not None and child.poll() is not None:
                raise errors.TenantryError(
                    f"HAProxy exited with code {child.returncode} before it served",
                    fix="read its output above (a port in use, an address not on this host)",
                )
            if time.monotonic() > deadline:
                raise errors.WaitTimeoutError(
                    f"HAProxy's admin socket {self.runtime.path} is silent"
                )
            time.sleep(0.05)

    def apply_wanted(self) -> None:
        """Set every route's weights to what the router keeps."""
        wanted = self.wanted()
        for route in self.routes:
            self._apply(route, wanted.get(route.name, 0))

    def _apply(self, route: Route, canary_weight: int) -> None:
        for role, weight in server_weights(canary_weight).items():
            self.runtime.set_weight(route.name, route.endpoint(role).cluster, weight)

    def set_canary_weight(self, route: Route, weight: int) -> None:
        """Keep ``weight`` for the route (surviving reloads) and apply it now."""
        if not 0 <= weight <= 100:
            raise errors.UsageError(f"weight {weight} is outside 0-100")
        wanted = {**self.wanted(), route.name: weight}
        replace_atomically(self._wanted_file, json.dumps(wanted))
        # The configuration a restart starts from must hold the weight before HAProxy does.
        self.write_config()
        self._apply(route, weight)

    def state(self, route: Route) -> list[ServerState]:
        """Each active server's current weight and health, as HAProxy reports them."""
        rows = {r["svname"]: r for r in self.runtime.stats() if r["pxname"] == route.name}
        states = []
        for endpoint in route.endpoints:
            row = rows.get(endpoint.cluster, {})
            states.append(ServerState(
                cluster=endpoint.cluster, role=endpoint.role,
                weight=int(row.get("weight") or 0),
                healthy=str(row.get("status", "")).startswith("UP"),
            ))  # fmt: skip
        return states

    def stop(self) -> bool:
        """Stop HAProxy by its master's pid."""
        return processes.stop(PROCESS)
