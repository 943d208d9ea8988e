"""A cluster's ingress for live traffic, built from its EndpointSlices: an HAProxy whose
backends are the services' ready pods, kept up to date as pods come and go.

This is what an ingress controller does in a cluster, run beside it: per cluster one
HAProxy process with, per route (a service), a frontend on its own port and a backend of
``slots`` server slots. The controller (`Controller`) reads the service's EndpointSlices
in the tenant's namespace every ``interval_s`` (a list is cheap, and a poll needs no
watch bookkeeping across API server restarts), turns them into servers
(`tenantry.traffic.endpoints`, pure) and fills the slots through HAProxy's Runtime API:
no reload, so no request in flight is ever cut by a change.

Only ready, non-terminating endpoints get requests. A pod being replaced in a rolling
update first leaves its EndpointSlice (its deletion marks it terminating), then gets
SIGTERM and keeps answering for a drain period: the poll takes it out of the backend
in between. What slips through — a connection refused by a pod that just stopped — is
sent again to another pod (``retry-on conn-failure empty-response`` with
``redispatch``), never an application's own answer, so a 500 is never retried.

The route between clusters (`tenantry.traffic.router`: weights, canary, failover) is
unchanged: each cluster's endpoint is simply this ingress's frontend for the route.
"""

from __future__ import annotations

import shutil
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from lightkube.resources.discovery_v1 import EndpointSlice

from tenantry import errors, processes
from tenantry.kube.client import Kube
from tenantry.traffic import endpoints
from tenantry.traffic.haproxy import Runtime, replace_atomically

# Enough for a service's replicas plus the surge of a rolling update.
DEFAULT_SLOTS = 32
_SLOT_PREFIX = "pod"
# A slot's placeholder address while it is empty (disabled: never used).
_PARKED = "127.0.0.1:9"
# srv_admin_state bits (HAProxy's SRV_ADMF_*): forced maintenance and forced drain.
_FMAINT, _FDRAIN = 0x01, 0x08


class IngressError(errors.TenantryError):
    """The cluster ingress could not be started or updated."""


@dataclass(frozen=True)
class Backend:
    """One route on a cluster's ingress: the service's pods behind a frontend port."""

    route: str  # the route's name, ``<tenant>-<service>``: frontend and backend name
    port: int  # where the ingress takes the route's traffic (127.0.0.1)
    namespace: str  # the tenant's namespace
    service: str  # the Kubernetes Service whose EndpointSlices list the pods
    port_name: str = "http"  # the Service port whose endpoints get the traffic


def config(
    backends: Sequence[Backend], *, admin_socket: Path, stats_port: int,
    slots: int = DEFAULT_SLOTS,
) -> str:  # fmt: skip
    """The ingress's haproxy.cfg (pure): every slot empty; the controller fills them."""
    lines = [
        "global",
        f"    stats socket {admin_socket} mode 600 level admin",
        "    stats timeout 10s",
        "",
        "defaults",
        "    mode http",
        "    timeout connect 500ms",
        "    timeout client 30s",
        "    timeout server 10s",
        "    retries 3",
        "    option redispatch 1",
        # Only failures where the pod surely did not process the request: never its 5xx.
        "    retry-on conn-failure empty-response",
        "",
        "frontend stats",
        f"    bind 127.0.0.1:{stats_port}",
        "    http-request use-service prometheus-exporter if { path /metrics }",
        "    stats enable",
        "    stats uri /stats",
    ]
    for backend in backends:
        lines += [
            "",
            f"frontend {backend.route}",
            f"    bind 127.0.0.1:{backend.port}",
            f"    default_backend {backend.route}",
            "",
            f"backend {backend.route}",
            "    balance roundrobin",
            f"    server-template {_SLOT_PREFIX} 1-{slots} {_PARKED} disabled",
        ]
    return "\n".join(lines) + "\n"


def slots_from_state(text: str) -> list[endpoints.Server | None]:
    """``show servers state <backend>`` as slots (pure): a slot holds its address unless
    it is in maintenance or draining."""
    lines = [line for line in text.splitlines() if line.strip()]
    header = next((line for line in lines if line.startswith("# ")), None)
    if header is None:
        raise IngressError(f"HAProxy's server state has no header: {text[:200]!r}")
    columns = header[2:].split()
    found: dict[int, endpoints.Server | None] = {}
    for line in lines:
        if line.startswith("#") or " " not in line:
            continue
        row = dict(zip(columns, line.split(), strict=False))
        name = row.get("srv_name", "")
        if not name.startswith(_SLOT_PREFIX):
            continue
        held = not int(row["srv_admin_state"]) & (_FMAINT | _FDRAIN)
        server = endpoints.Server(row["srv_addr"], int(row["srv_port"]))
        found[int(name[len(_SLOT_PREFIX) :])] = server if held else None
    return [found.get(i) for i in range(1, max(found, default=0) + 1)]


class Ingress:
    """One cluster's ingress HAProxy process, under ``directory``."""

    def __init__(
        self, name: str, directory: Path, backends: Sequence[Backend], *, stats_port: int,
        slots: int = DEFAULT_SLOTS,
    ) -> None:  # fmt: skip
        self.name = name  # the process's name (`tenantry.processes`)
        self.directory = directory
        self.backends = list(backends)
        self.stats_port = stats_port
        self.slots = slots
        self.runtime = Runtime(directory / "admin.sock")

    @property
    def config_file(self) -> Path:
        return self.directory / "haproxy.cfg"

    def start(self) -> processes.Process:
        """Write the configuration and start HAProxy, or find it running."""
        running = processes.running(self.name)
        if running is not None:
            return running
        text = config(self.backends, admin_socket=self.runtime.path,
                      stats_port=self.stats_port, slots=self.slots)  # fmt: skip
        replace_atomically(self.config_file, text)
        binary = shutil.which("haproxy")
        if binary is None:
            raise errors.ToolMissingError("haproxy is not installed", fix="apt-get install haproxy")
        process = processes.start(self.name, [binary, "-W", "-db", "-f", str(self.config_file)],
                                  port=self.stats_port)  # fmt: skip
        deadline = time.monotonic() + 10
        while True:
            try:
                self.runtime.command("show info")
                return process
            except errors.TenantryError:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.05)

    def stop(self) -> bool:
        """Stop HAProxy by its pid."""
        return processes.stop(self.name)

    def slots_of(self, backend: Backend) -> list[endpoints.Server | None]:
        """What each slot of ``backend`` holds now, as HAProxy reports it."""
        return slots_from_state(self.runtime.command(f"show servers state {backend.route}"))

    def apply(self, backend: Backend, changes: Sequence[endpoints.SlotChange]) -> None:
        """Fill and empty slots now (no reload)."""
        for change in changes:
            server = f"{backend.route}/{_SLOT_PREFIX}{change.slot}"
            if change.server is None:
                self._command(f"set server {server} state maint", expect_empty=True)
                continue
            answer = self._command(f"set server {server} addr {change.server.address} "
                                   f"port {change.server.port}", expect_empty=False)  # fmt: skip
            if "changed" not in answer and "no need to change" not in answer:
                raise IngressError(f"HAProxy refused the address of {server}: {answer.strip()}")
            self._command(f"set server {server} state ready", expect_empty=True)

    def _command(self, line: str, *, expect_empty: bool) -> str:
        answer = self.runtime.command(line)
        if expect_empty and answer.strip():
            raise IngressError(f"HAProxy refused `{line}`: {answer.strip()}")
        return answer


def read_slices(kube: Kube, backend: Backend) -> list[dict[str, Any]]:
    """The service's EndpointSlices as the API's JSON."""
    found = kube.list(EndpointSlice, namespace=backend.namespace,
                      labels={endpoints.SERVICE_NAME_LABEL: backend.service})  # fmt: skip
    return [s.to_dict() for s in found]


class Controller:
    """Keeps an `Ingress`'s backends equal to the ready endpoints of its services."""

    def __init__(
        self, ingress: Ingress, connect: Callable[[], Kube], *,
        log: Callable[[str], None] = lambda _: None,
    ) -> None:  # fmt: skip
        self.ingress = ingress
        self.connect = connect
        self.log = log
        self._kube: Kube | None = None

    def _connection(self) -> Kube:
        if self._kube is None:
            self._kube = self.connect()
        return self._kube

    def sync(self) -> Mapping[str, list[endpoints.Server]]:
        """One pass over every backend; the servers each now has."""
        result = {}
        for backend in self.ingress.backends:
            wanted = endpoints.servers(read_slices(self._connection(), backend),
                                       port_name=backend.port_name)  # fmt: skip
            current = self.ingress.slots_of(backend)
            try:
                changes = endpoints.assign(current, wanted)
            except endpoints.TooManyEndpointsError as e:
                raise IngressError(
                    f"{backend.route}: {e}",
                    fix="give the ingress more slots, or the service fewer replicas",
                ) from e
            if changes:
                self.ingress.apply(backend, changes)
                self.log(f"{backend.route}: {', '.join(map(str, wanted)) or 'no ready pod'}")
            result[backend.route] = wanted
        return result

    def run(self, until: Callable[[], bool], *, interval_s: float = 0.2,
            wait: Callable[[float], object] = time.sleep) -> None:  # fmt: skip
        """`sync` every ``interval_s`` until ``until()``. A pass that fails (the API server
        away for a moment) is logged once and tried again next time; meanwhile the
        backends keep the pods they had. An HAProxy that died is started again (its
        slots empty), and the next pass fills it."""
        last_failure = ""
        while not until():
            try:
                self.sync()
                last_failure = ""
            except errors.TenantryError as e:
                if str(e) != last_failure:
                    self.log(f"sync failed, keeping the current pods: {e}")
                last_failure = str(e)
                if self._kube is not None:
                    self._kube.close()
                    self._kube = None
                if processes.running(self.ingress.name) is None:
                    self.log("HAProxy is not running: starting it again")
                    try:
                        self.ingress.start()
                    except errors.TenantryError as again:
                        self.log(f"could not start HAProxy: {again}")
            wait(interval_s)

    def close(self) -> None:
        if self._kube is not None:
            self._kube.close()
            self._kube = None
