"""The lease holder's side of fencing (pure: a thread and a clock, no ledger)."""

from __future__ import annotations

import pytest

from tenantry import faults
from tenantry.ledger import fence
from tests.waiting import wait_for


def test_a_refused_renewal_loses_the_lease_at_once() -> None:
    with fence.Held("release r", renew=lambda: False, ttl_s=0.3) as held:
        held.check()  # held until the first renewal is refused
        wait_for(lambda: held.lost, "the refused renewal", timeout_s=5, poll_s=0.01)
        with pytest.raises(fence.LeaseLost, match="lost the lease on release r"):
            held.check()


def test_renewals_that_keep_failing_lose_the_lease_once_its_time_is_up() -> None:
    calls: list[int] = []

    def unreachable() -> bool:
        calls.append(1)
        raise ConnectionError("the database is down")

    with fence.Held("operation 7", renew=unreachable, ttl_s=0.3) as held:
        wait_for(lambda: held.lost, "the lease to lapse", timeout_s=5, poll_s=0.01)
        assert calls  # it kept trying, and the error did not end the heartbeat silently
        with pytest.raises(fence.LeaseLost, match="operation 7"):
            held.check()


def test_renewals_that_succeed_keep_the_lease() -> None:
    renewed: list[int] = []

    def renew() -> bool:
        renewed.append(1)
        return True

    with fence.Held("operation 8", renew=renew, ttl_s=0.3) as held:
        wait_for(lambda: len(renewed) >= 4, "four renewals", timeout_s=5, poll_s=0.01)
        held.check()
        assert not held.lost


def test_an_unknown_fault_point_is_refused() -> None:
    with pytest.raises(ValueError, match="unknown fault point"):
        faults.point("deploy.typo")
