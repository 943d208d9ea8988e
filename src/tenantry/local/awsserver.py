"""The local S3 + SQS server: moto in server mode, a real HTTP server on loopback.

It speaks both protocols and delivers S3 bucket notifications to SQS queues, so
the whole publish → event → deploy path runs here as it does against AWS. Started
by `tenantry up` and by the test harness; stopped by its own process id.
"""

from __future__ import annotations

import sys

from tenantry import processes

NAME = "aws"


def running() -> processes.Process | None:
    """The server `start` left running, if it still runs."""
    return processes.running(NAME)


def start() -> processes.Process:
    """Start the server (or return the one already running)."""
    existing = running()
    if existing:
        return existing
    port = processes.free_port()
    return processes.start(
        NAME, [sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(port)], port=port
    )


def stop() -> bool:
    """Stop the server by its pid; False if none was running."""
    return processes.stop(NAME)
