"""The local S3 + SQS server: moto in server mode, a real HTTP server on loopback.

It speaks both protocols and delivers S3 bucket notifications to SQS queues, so
the whole publish → event → deploy path runs here as it does against AWS. Started
by `tenantry up` and by the test harness; stopped by its own process id.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import socket
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

from tenantry import errors, paths

_READY_TIMEOUT_S = 30.0
# Servers this process started, kept so they can be reaped (and Python does not warn
# about a child process object dropped while it still runs).
_children: dict[int, subprocess.Popen[bytes]] = {}


@dataclass(frozen=True)
class Server:
    """A running local S3/SQS server."""

    pid: int
    port: int

    @property
    def endpoint(self) -> str:
        """The URL boto3 talks to."""
        return f"http://127.0.0.1:{self.port}"


def _state_file() -> Path:
    return paths.state_dir() / "aws" / "server.json"


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


def _answers(port: int) -> bool:
    with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), timeout=0.5):
        return True
    return False


def running() -> Server | None:
    """The server `start` left running, if it still runs."""
    try:
        state = json.loads(_state_file().read_text())
        server = Server(pid=int(state["pid"]), port=int(state["port"]))
    except (OSError, ValueError, KeyError):
        return None
    return server if _alive(server.pid) and _answers(server.port) else None


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def start() -> Server:
    """Start the server (or return the one already running)."""
    existing = running()
    if existing:
        return existing
    port = _free_port()
    log_dir = _state_file().parent
    log_dir.mkdir(parents=True, exist_ok=True)
    with (log_dir / "server.log").open("ab") as log:
        proc = subprocess.Popen(
            [sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(port)],
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,  # outlives the command that started it, like a daemon
        )
    deadline = time.monotonic() + _READY_TIMEOUT_S
    while not _answers(port):
        if proc.poll() is not None or time.monotonic() > deadline:
            proc.kill()
            raise errors.TenantryError(
                f"the local S3/SQS server did not start; see {log_dir / 'server.log'}",
                fix="reinstall the Python packages: ./run up",
            )
        time.sleep(0.1)
    server = Server(pid=proc.pid, port=port)
    _children[proc.pid] = proc
    _state_file().write_text(json.dumps({"pid": server.pid, "port": server.port}))
    return server


def stop() -> bool:
    """Stop the server by its pid; False if none was running."""
    server = running()
    _state_file().unlink(missing_ok=True)
    if server is None:
        return False
    with contextlib.suppress(ProcessLookupError):
        os.kill(server.pid, signal.SIGTERM)
    child = _children.pop(server.pid, None)
    if child is not None:
        try:
            child.wait(timeout=10)
        except subprocess.TimeoutExpired:
            child.kill()
            child.wait()
        return True
    deadline = time.monotonic() + 10
    while _alive(server.pid) and time.monotonic() < deadline:
        time.sleep(0.1)
    with contextlib.suppress(ProcessLookupError):
        os.kill(server.pid, signal.SIGKILL)
    return True
