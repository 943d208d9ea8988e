"""The deploy the kill tests break, with no fault: one `tenantry deployer` process, a
publish, and the time from the publish to the version recorded as succeeded — what
`bench/faults.py` reports as ``baseline_s`` beside the recovery times."""

from __future__ import annotations

import time
from pathlib import Path

from tenantry.ledger import Ledger
from tests.faults.conftest import Outcome, Record
from tests.faults.deployers import VERSION, fast_platform, running_versions, start, succeeded
from tests.integration.test_delivery import Platform, ledger, onboarded, publish
from tests.waiting import wait_for

__all__ = ["fast_platform", "ledger", "onboarded"]  # fixtures shared with the delivery tests


def test_a_staging_deploy_with_no_fault(
    fast_platform: Platform, ledger: Ledger, tmp_path: Path, reliability: Record
) -> None:
    deployer = start(fast_platform, ledger, "alone", tmp_path)
    try:
        published = time.monotonic()
        publish(fast_platform, ledger)
        try:
            wait_for(lambda: succeeded(ledger), "the version recorded as succeeded",
                     timeout_s=120)  # fmt: skip
            took: float | None = time.monotonic() - published
        except AssertionError:
            took = None  # recorded as not deployed, then the assertions below fail
    finally:
        deployer.stop()
    deploys = [d for d in ledger.deployments() if (d.service, d.version) == ("web", VERSION)]
    wins = sum(1 for d in deploys if d.result == "succeeded")
    half_done = sum(1 for d in deploys if d.result == "running")
    reliability(Outcome(
        fault="none (baseline)", when="a staging deploy",
        happened="deployed once; recovery_s is the deploy's own time",
        lost=int(wins == 0), doubled=max(0, wins - 1), half_done=half_done, recovery_s=took,
    ))  # fmt: skip
    assert took is not None, deployer.output()
    assert [d.result for d in deploys] == ["succeeded"]
    assert set(running_versions(fast_platform).values()) == {(f"web-{VERSION}", "deployed")}
