"""A worker SIGKILLed in the middle of a canary walk: another worker takes the operation
over once the dead one's lease lapses, and finishes the walk from the stored step — the
canary cluster not deployed again, the rollout not started again, traffic back on the
primary at the end. Real `tenantry deployer` processes (each runs a job worker), real
clusters, Helm, HAProxy, Prometheus and a SQLite ledger they share.
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

from tenantry import faults
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


class Workers:
    """Deployer processes (each with a job worker) on the test's ledger, by name."""

    def __init__(self, platform: Platform, ledger: Ledger) -> None:
        self.platform, self.ledger = platform, ledger
        self.running: dict[str, subprocess.Popen[bytes]] = {}

    def start(self, name: str, *, kill_at: str | None = None) -> None:
        env = {**os.environ, "TENANTRY_DATABASE_URL": str(self.ledger.engine.url)}
        if kill_at is not None:
            env[faults.ENV] = kill_at
        self.running[name] = subprocess.Popen(
            [sys.executable, "-m", "tenantry", "deployer", "--repo", str(self.platform.root),
             "--worker", name, "--wait", "1", "--lease-ttl", str(LEASE_TTL_S)],
            env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
            start_new_session=True,
        )  # fmt: skip

    def kill(self, name: str) -> None:
        os.killpg(self.running[name].pid, signal.SIGKILL)  # no chance to hand anything back
        self.running[name].wait()

    def stop_all(self) -> None:
        for process in self.running.values():
            if process.poll() is None:
                os.killpg(process.pid, signal.SIGTERM)
                process.wait(timeout=120)


@pytest.fixture
def workers(platform: Platform, ledger: Ledger) -> Iterator[Workers]:
    started = Workers(platform, ledger)
    yield started
    started.stop_all()


def _operation(ledger: Ledger, number: int) -> tables.Operation:
    found = ledger.operation(number)
    assert found is not None
    return found


def _approved(platform: Platform, ledger: Ledger) -> tuple[int, int]:
    """1.0.0 in staging, requested by alice and approved by bob: (promotion, operation)."""
    ship_to_staging(platform, ledger, "1.0.0")
    repo = platform.load()
    row = promotion.request(repo, ledger, ref="echo/web", version="1.0.0",
                            environment="production", by="alice")  # fmt: skip
    _, queued = promotion.approve(repo, ledger, promotion_id=row.id, by="bob")
    return row.id, queued.id


def _survive(ledger: Ledger, number: int, killed: float) -> tuple[float, float]:
    """Wait for the take-over and the end: seconds from the kill to each."""
    wait_for(lambda: "taken over by" in _operation(ledger, number).progress,
             "another worker to take the operation over", timeout_s=60)  # fmt: skip
    taken_over = time.monotonic() - killed
    wait_for(lambda: _operation(ledger, number).status in ("succeeded", "failed"),
             "the operation to end", timeout_s=240)  # fmt: skip
    return taken_over, time.monotonic() - killed


def _check(
    ledger: Ledger, production: tuple[str, str], live: dict[str, object], reliability: Record,
    *, promotion_id: int, operation_id: int, survivor: str, resumed_at: int, when: str,
    taken_over: float, recovered: float,
) -> None:  # fmt: skip
    """Record the outcome, then hold it to: deployed once everywhere, nothing running,
    one rollout resumed (never restarted), traffic back on the primary."""
    primary, canary = production
    done = _operation(ledger, operation_id)
    deploys = [d for d in ledger.deployments() if d.environment == "production"]
    succeeded = {c: sum(1 for d in deploys if d.cluster == c and d.result == "succeeded")
                 for c in (primary, canary)}  # fmt: skip
    with ledger.session() as session:
        rollouts = list(session.query(tables.Canary).where(tables.Canary.version == "1.0.0"))
    final = ledger.promotion(promotion_id)
    assert final is not None
    router = cast(HAProxy, live["router"])
    weights = {s.role: s.weight for s in router.state(cast(Route, live["route"]))}
    reliability(Outcome(
        fault="a worker SIGKILLed", when=when,
        happened=f"{survivor} took the operation over {taken_over:.1f} s later (lease "
        f"{LEASE_TTL_S} s) and resumed at {resumed_at} %; promotion {final.status}",
        lost=0 if final.status == "deployed" else 1,
        doubled=sum(max(0, n - 1) for n in succeeded.values()) + max(0, len(rollouts) - 1),
        half_done=sum(1 for d in deploys if d.result == "running")
        + (0 if weights.get("canary") == 0 else 1),
        recovery_s=recovered,
    ))  # fmt: skip
    assert (done.status, done.worker) == ("succeeded", survivor), done.progress
    assert f"resuming at weight {resumed_at}%" in done.progress, done.progress
    assert "already runs 1.0.0 for this action: not deployed again" in done.progress
    assert final.status == "deployed"
    assert succeeded == {primary: 1, canary: 1}  # nothing deployed twice
    assert not [d for d in deploys if d.result == "running"]
    (rollout,) = rollouts  # resumed, never started again
    assert (rollout.status, rollout.passes) == ("promoted", 2)
    assert weights == {"primary": 100, "canary": 0}
    assert chart_in(primary) == chart_in(canary) == "web-1.0.0"


def test_a_worker_killed_mid_canary_is_taken_over_at_the_same_step(
    platform: Platform, ledger: Ledger, production: tuple[str, str], live: dict[str, object],
    workers: Workers, reliability: Record,
) -> None:  # fmt: skip
    workers.start("w1")
    workers.start("w2")
    load = Load(str(live["front"]))
    try:
        promotion_id, operation_id = _approved(platform, ledger)

        def second_step() -> tables.Canary | None:
            rollout = ledger.canary("echo", "web")
            return rollout if rollout is not None and rollout.step == 1 else None

        at_kill = wait_for(second_step, "the canary's second step (50 %)", timeout_s=180)
        holder = _operation(ledger, operation_id).worker
        assert holder in ("w1", "w2"), holder
        workers.kill(holder)
        taken_over, recovered = _survive(ledger, operation_id, time.monotonic())
    finally:
        load.stop()
    _check(ledger, production, live, reliability, promotion_id=promotion_id,
           operation_id=operation_id, survivor="w2" if holder == "w1" else "w1",
           resumed_at=at_kill.weight, when=f"mid-canary, at step 2 ({at_kill.weight} %)",
           taken_over=taken_over, recovered=recovered)  # fmt: skip


def test_a_worker_killed_after_moving_traffic_before_saving_the_step_redoes_it(
    platform: Platform, ledger: Ledger, production: tuple[str, str], live: dict[str, object],
    workers: Workers, reliability: Record,
) -> None:  # fmt: skip
    workers.start("w1", kill_at="canary.after-weight")  # dies at its first step, 20 → 50 %
    load = Load(str(live["front"]))
    try:
        promotion_id, operation_id = _approved(platform, ledger)
        wait_for(lambda: _operation(ledger, operation_id).worker == "w1",
                 "w1 to claim the operation", timeout_s=60)  # fmt: skip
        workers.start("w2")
        wait_for(lambda: workers.running["w1"].poll() is not None,
                 "w1 to die after setting the weight", timeout_s=180)  # fmt: skip
        stored = ledger.canary("echo", "web")
        taken_over, recovered = _survive(ledger, operation_id, time.monotonic())
    finally:
        load.stop()
    # The router had 50 % but the ledger still said step 1 (20 %): the new worker puts the
    # stored weight back and earns the step again.
    assert stored is not None and (stored.step, stored.weight) == (0, 20)
    _check(ledger, production, live, reliability, promotion_id=promotion_id,
           operation_id=operation_id, survivor="w2", resumed_at=20,
           when="after a canary weight was set (50 %), before the step was saved",
           taken_over=taken_over, recovered=recovered)  # fmt: skip
