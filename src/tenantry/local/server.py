"""The local platform's Tenantry server and job workers: started by `tenantry up` as
background processes on loopback, found by the CLI, stopped by pid by `tenantry down`.
"""

from __future__ import annotations

import sys
from pathlib import Path

from tenantry import processes

SERVER = "server"
# Two workers: one can carry out a production rollout while the other keeps staging
# deploys (and a second approval) moving.
WORKERS = ("worker-1", "worker-2")


def url() -> str | None:
    """The local server's URL when it runs."""
    process = processes.running(SERVER)
    return process.endpoint if process else None


def start(repo_root: Path) -> str:
    """Start the server (if it does not run) and return its URL."""
    port = processes.free_port()
    process = processes.start(
        SERVER,
        [sys.executable, "-m", "tenantry", "server", "--repo", str(repo_root),
         "--host", "127.0.0.1", "--port", str(port)],
        port=port,
    )  # fmt: skip
    return process.endpoint


def start_workers(repo_root: Path) -> list[processes.Process]:
    """Start the job workers: deployer processes that consume SQS and run operations."""
    started = []
    for name in WORKERS:
        port = processes.free_port()
        started.append(processes.start(
            name,
            [sys.executable, "-m", "tenantry", "deployer", "--repo", str(repo_root),
             "--worker", f"local-{name}", "--metrics-port", str(port)],
            port=port,
        ))  # fmt: skip
    return started


def stop() -> None:
    """Stop the workers (each finishes what it holds) and the server."""
    for name in WORKERS:
        processes.stop(name)
    processes.stop(SERVER)
