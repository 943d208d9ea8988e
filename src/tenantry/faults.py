"""Named points where a fault test kills this process for real.

``TENANTRY_KILL_AT=<point>`` makes the process SIGKILL itself when it reaches that
point — a real, uncatchable death between two steps (after helm, before the ledger
write, say), which a test cannot time from outside. Unset, a point costs one
environment lookup. The points are listed here so tests and docs name the same ones.
"""

from __future__ import annotations

import os
import signal

ENV = "TENANTRY_KILL_AT"

POINTS = {
    "deploy.before-helm": "a staging deploy has its lease, before helm runs",
    "deploy.after-helm": "helm succeeded, before the ledger records it",
    "deploy.after-ledger": "the ledger recorded the deploy, before the message is deleted",
    "canary.after-weight": "a canary step's weight is set, before the step is saved",
}


def point(name: str) -> None:
    """Die here when the environment asks to (see `POINTS`)."""
    if name not in POINTS:
        raise ValueError(f"unknown fault point {name!r}")  # a typo must not silently pass
    if os.environ.get(ENV) == name:
        os.kill(os.getpid(), signal.SIGKILL)
