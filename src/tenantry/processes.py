"""Background processes, started detached and stopped by their pid.

Below the adapters because several layers start processes: the kube adapter
(kwokctl's components), the HAProxy router, the local platform (demo apps, the
S3/SQS server, the monitoring stack) and long-running commands that answer a health
check. None of that is specific to the local platform, so it lives here, not in
`tenantry.local`.

Each process has a state file ``<state dir>/<name>/process.json`` (pid, port, and the
process's start time as the kernel counts it) and a log ``<state dir>/<name>/process.log``,
so a later command in another shell (`tenantry down`, say) finds and stops exactly the
process an earlier one started — never by name, and never another process that was
given the same pid after ours exited (the start time tells them apart).
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import socket
import subprocess
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

from tenantry import errors, paths

# Processes this interpreter started, kept so they can be reaped (and Python does not
# warn about a child object dropped while the child still runs).
_children: dict[int, subprocess.Popen[bytes]] = {}


@dataclass(frozen=True)
class Process:
    """A running background process."""

    name: str
    pid: int
    port: int

    @property
    def endpoint(self) -> str:
        """Its HTTP address on loopback."""
        return f"http://127.0.0.1:{self.port}"


def _dir(name: str) -> Path:
    return paths.state_dir() / name


def log_file(name: str) -> Path:
    """Where the process writes its output."""
    return _dir(name) / "process.log"


def started_at(pid: int) -> int | None:
    """When ``pid`` started, in clock ticks since boot (``/proc/PID/stat`` field 22);
    None if there is no such process. A reused pid has another start time."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    # The command name (field 2) is in parentheses and may hold spaces: count after it.
    return int(stat.rsplit(")", 1)[1].split()[19])


def _same(state: dict[str, object], pid: int) -> bool:
    """Whether ``pid`` is still the process the state file recorded."""
    recorded = state.get("started")
    return recorded is None or started_at(pid) == recorded


def alive(pid: int) -> bool:
    """Whether ``pid`` exists and has not exited."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    return stat.rsplit(")", 1)[1].split()[0] != "Z"


def answers(port: int) -> bool:
    """Whether something accepts connections on 127.0.0.1:``port``."""
    with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), timeout=0.5):
        return True
    return False


def free_port() -> int:
    """A port on loopback that nothing listens on now."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def running(name: str) -> Process | None:
    """The process `start` left running under ``name``, if it still runs."""
    try:
        state = json.loads((_dir(name) / "process.json").read_text())
        process = Process(name=name, pid=int(state["pid"]), port=int(state["port"]))
    except (OSError, ValueError, KeyError):
        return None
    ours = alive(process.pid) and _same(state, process.pid)
    return process if ours and answers(process.port) else None


def start(
    name: str, argv: Sequence[str], *, port: int, env: dict[str, str] | None = None,
    ready_timeout_s: float = 30.0,
) -> Process:  # fmt: skip
    """Start ``argv`` detached; ready when it accepts connections on ``port``."""
    existing = running(name)
    if existing:
        return existing
    _dir(name).mkdir(parents=True, exist_ok=True)
    with log_file(name).open("ab") as log:
        proc = subprocess.Popen(
            list(argv),
            stdout=log,
            stderr=subprocess.STDOUT,
            env={**os.environ, **(env or {})},
            start_new_session=True,  # outlives the command that started it
        )
    deadline = time.monotonic() + ready_timeout_s
    while not answers(port):
        if proc.poll() is not None or time.monotonic() > deadline:
            proc.kill()
            proc.wait()
            raise errors.TenantryError(
                f"{name} did not start; see {log_file(name)}",
                fix="read the log; `./run up` reinstalls what it needs",
            )
        time.sleep(0.1)
    _children[proc.pid] = proc
    process = Process(name=name, pid=proc.pid, port=port)
    (_dir(name) / "process.json").write_text(
        json.dumps({"pid": proc.pid, "port": port, "started": started_at(proc.pid)})
    )
    return process


def stop(name: str, *, grace_s: float = 15.0) -> bool:
    """SIGTERM the process (it finishes its current work), SIGKILL after ``grace_s``."""
    state_file = _dir(name) / "process.json"
    try:
        state = json.loads(state_file.read_text())
        pid = int(state["pid"])
    except (OSError, ValueError, KeyError):
        return False
    state_file.unlink(missing_ok=True)
    if not alive(pid) or not _same(state, pid):
        return False  # gone; or its pid now belongs to another process, which we leave be
    with contextlib.suppress(ProcessLookupError):
        os.kill(pid, signal.SIGTERM)
    child = _children.pop(pid, None)
    deadline = time.monotonic() + grace_s
    while alive(pid) and time.monotonic() < deadline:
        if child is not None and child.poll() is not None:
            break
        time.sleep(0.1)
    if alive(pid):
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)
    if child is not None:
        child.wait()
    return True


def serve_health(port: int, stop: threading.Event) -> None:
    """Answer ``GET /healthz`` on 127.0.0.1:``port`` until ``stop`` is set, so `start`
    can tell a long-running command is up."""

    class Health(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            self.send_response(200 if self.path == "/healthz" else 404)
            self.send_header("Content-Length", "0")
            self.end_headers()

        def log_message(self, *_: object) -> None:
            return

    server = ThreadingHTTPServer(("127.0.0.1", port), Health)
    threading.Thread(target=server.serve_forever, daemon=True).start()

    def stop_when_asked() -> None:
        stop.wait()
        server.shutdown()

    threading.Thread(target=stop_when_asked, daemon=True).start()


def on_terminate(callback: Callable[[], None]) -> None:
    """Call ``callback`` on SIGTERM or SIGINT (to finish the current work and exit)."""
    for signum in (signal.SIGTERM, signal.SIGINT):
        signal.signal(signum, lambda *_: callback())
