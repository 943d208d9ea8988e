"""A worker SIGKILLed in the middle of a canary walk: another worker takes the operation
over once the dead one's lease lapses, and finishes the walk from the same step — the
canary cluster not deployed again, the rollout not started again, traffic back on the
primary at the end. Two real `tenantry deployer` processes (each runs a job worker),
real clusters, Helm, HAProxy, Prometheus and a SQLite ledger they share.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from typing import cast

import pytest

from tenantry.deploy import promotion
from tenantry.ledger import Ledger, tables
from tenantry.traffic.haproxy import HAProxy
from tenantry.traffic.load import Load
from tenantry.traffic.router import Route
from tests.faults.conftest import Outcome, Record
from tests.integration.test_canary_promotion import live
from tests.integration.test_delivery import Platform
from tests.integration.test_promotion import (
    chart_in,
    ledger,
    onboarded,
    platform,
    production,
    ship_to_staging,
)  # fmt: skip
from tests.waiting import wait_for

__all__ = ["ledger", "live", "onboarded", "platform", "production"]  # fixtures shared

LEASE_TTL_S = 3


@pytest.fixture
def workers(platform: Platform, ledger: Ledger) -> Iterator[dict[str, subprocess.Popen[bytes]]]:
    """Two deployer processes, w1 and w2, each with a job worker, on the test's ledger."""

    def start(name: str) -> subprocess.Popen[bytes]:
        return subprocess.Popen(
            [sys.executable, "-m", "tenantry", "deployer", "--repo", str(platform.root),
             "--worker", name, "--wait", "1", "--lease-ttl", str(LEASE_TTL_S)],
            env={**os.environ, "TENANTRY_DATABASE_URL": str(ledger.engine.url)},
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True,
        )  # fmt: skip

    started = {name: start(name) for name in ("w1", "w2")}
    yield started
    for process in started.values():
        if process.poll() is None:
            os.killpg(process.pid, signal.SIGTERM)
            process.wait(timeout=120)


def _operation(ledger: Ledger, number: int) -> tables.Operation:
    found = ledger.operation(number)
    assert found is not None
    return found


def test_a_worker_killed_mid_canary_is_taken_over_at_the_same_step(
    platform: Platform, ledger: Ledger, production: tuple[str, str], live: dict[str, object],
    workers: dict[str, subprocess.Popen[bytes]], reliability: Record,
) -> None:  # fmt: skip
    primary, canary = production
    ship_to_staging(platform, ledger, "1.0.0")
    repo = platform.load()
    row = promotion.request(repo, ledger, ref="echo/web", version="1.0.0",
                            environment="production", by="alice")  # fmt: skip
    load = Load(str(live["front"]))
    try:
        _, queued = promotion.approve(repo, ledger, promotion_id=row.id, by="bob")

        def second_step() -> tables.Canary | None:
            rollout = ledger.canary("echo", "web")
            return rollout if rollout is not None and rollout.step == 1 else None

        at_kill = wait_for(second_step, "the canary's second step (50 %)", timeout_s=180)
        holder = _operation(ledger, queued.id).worker
        assert holder in workers, holder
        os.killpg(workers[holder].pid, signal.SIGKILL)  # no chance to hand anything back
        workers[holder].wait()
        killed = time.monotonic()
        survivor = "w2" if holder == "w1" else "w1"

        wait_for(lambda: "taken over by" in _operation(ledger, queued.id).progress,
                 "another worker to take the operation over", timeout_s=60)  # fmt: skip
        taken_over = time.monotonic() - killed
        wait_for(lambda: _operation(ledger, queued.id).status in ("succeeded", "failed"),
                 "the operation to end", timeout_s=240)  # fmt: skip
        recovered = time.monotonic() - killed
    finally:
        load.stop()

    done = _operation(ledger, queued.id)
    deploys = [d for d in ledger.deployments() if d.environment == "production"]
    succeeded = {c: sum(1 for d in deploys if d.cluster == c and d.result == "succeeded")
                 for c in (primary, canary)}  # fmt: skip
    rollouts = [r for r in _canaries(ledger) if r.version == "1.0.0"]
    final = ledger.promotion(row.id)
    assert final is not None
    router = cast(HAProxy, live["router"])
    weights = {s.role: s.weight for s in router.state(cast(Route, live["route"]))}
    reliability(Outcome(
        fault="a worker SIGKILLed", when=f"mid-canary, at step 2 ({at_kill.weight} %)",
        happened=f"{survivor} took the operation over {taken_over:.1f} s later (lease "
        f"{LEASE_TTL_S} s) and resumed at {at_kill.weight} %; promotion {final.status}",
        lost=0 if final.status == "deployed" else 1,
        doubled=sum(max(0, n - 1) for n in succeeded.values()) + max(0, len(rollouts) - 1),
        half_done=sum(1 for d in deploys if d.result == "running")
        + (0 if weights.get("canary") == 0 else 1),
        recovery_s=recovered,
    ))  # fmt: skip
    assert (done.status, done.worker) == ("succeeded", survivor), done.progress
    assert f"resuming at weight {at_kill.weight}%" in done.progress, done.progress
    assert "already runs 1.0.0 for this action: not deployed again" in done.progress
    assert final.status == "deployed"
    assert succeeded == {primary: 1, canary: 1}  # nothing deployed twice
    assert not [d for d in deploys if d.result == "running"]
    (rollout,) = rollouts  # resumed, never started again
    assert (rollout.status, rollout.passes) == ("promoted", 2)
    assert weights == {"primary": 100, "canary": 0}
    assert chart_in(primary) == chart_in(canary) == "web-1.0.0"


def _canaries(ledger: Ledger) -> list[tables.Canary]:
    with ledger.session() as session:
        return list(session.query(tables.Canary).order_by(tables.Canary.id))
