"""Failover to the standby and gradual failback.

The router moves traffic within its health-check time by itself: HAProxy marks a
failing primary down after two failed checks and sends everything to the canary
cluster (its backup servers exist for this). The watcher here makes that explicit
and safe to undo: it records the failover in the ledger and alerts, pins 100 % on
the standby, and gives traffic back only after the primary has stayed healthy for
the hold-down — then in steps, so a primary that is not really well fails again on
a small share.

`step` is the pure state machine; `Watcher` polls the router and acts.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, replace
from typing import Literal

from tenantry.ledger import Ledger, now, tables
from tenantry.traffic.router import Route, Router

Mode = Literal["normal", "failed-over", "failing-back"]


@dataclass(frozen=True)
class State:
    """Where a route stands."""

    mode: Mode = "normal"
    canary_weight: int = 0  # the weight to return to after a failback
    # The primary has been seen healthy: only a primary that served can fail. One that
    # never has (the service not yet released to production, so its ingress has no pod)
    # is no failover, and recording and alerting one would only be noise.
    served: bool = False
    healthy_since: float | None = None
    ramp_index: int = 0
    next_at: float = 0.0


@dataclass(frozen=True)
class Plan:
    """What the watcher does now."""

    weight: int | None = None  # a canary weight to set
    record: str | None = None  # "failover" or "failback"


def ramp(start: int, end: int, steps: int) -> list[int]:
    """The canary weights of a failback, from all traffic on the standby to ``end``.

    >>> ramp(100, 0, 4)
    [75, 50, 25, 0]
    """
    return [round(start + (end - start) * (i + 1) / steps) for i in range(steps)]


def step(
    state: State,
    *,
    primary_healthy: bool,
    canary_weight: int,
    at: float,
    hold_down_s: float,
    ramp_steps: int,
    ramp_interval_s: float,
) -> tuple[State, Plan]:
    """The next state for one observation of the primary's health."""
    if state.mode == "normal":
        if primary_healthy:
            return replace(state, canary_weight=canary_weight, served=True), Plan()
        if not state.served:
            return state, Plan()
        return State("failed-over", state.canary_weight, served=True), Plan(
            weight=100, record="failover"
        )
    if not primary_healthy:  # down, or down again while failing back
        plan = Plan(weight=100) if state.mode == "failing-back" else Plan()
        return State("failed-over", state.canary_weight, served=True), plan
    if state.mode == "failed-over":
        if state.healthy_since is None:
            return replace(state, healthy_since=at), Plan()
        if at - state.healthy_since < hold_down_s:
            return state, Plan()
        return replace(state, mode="failing-back", ramp_index=0, next_at=at), Plan()
    if at < state.next_at:
        return state, Plan()
    weights = ramp(100, state.canary_weight, ramp_steps)
    weight = weights[state.ramp_index]
    if state.ramp_index + 1 == len(weights):
        return State("normal", state.canary_weight, served=True), Plan(
            weight=weight, record="failback"
        )
    return replace(state, ramp_index=state.ramp_index + 1, next_at=at + ramp_interval_s), Plan(
        weight=weight
    )


class Watcher:
    """Polls the router for one route and acts on failover and failback."""

    def __init__(
        self,
        route: Route,
        *,
        router: Router,
        ledger: Ledger,
        alert: Callable[[str], None],
        hold_down_s: float = 30.0,
        ramp_steps: int = 4,
        ramp_interval_s: float = 5.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.route, self.router, self.ledger, self.alert = route, router, ledger, alert
        self.hold_down_s, self.ramp_steps, self.ramp_interval_s = (
            hold_down_s,
            ramp_steps,
            ramp_interval_s,
        )
        self.clock = clock
        self.state = State()

    def poll(self) -> State:
        """Observe once and act."""
        servers = {s.role: s for s in self.router.state(self.route)}
        self.state, plan = step(
            self.state,
            primary_healthy=servers["primary"].healthy,
            canary_weight=servers["canary"].weight,
            at=self.clock(),
            hold_down_s=self.hold_down_s,
            ramp_steps=self.ramp_steps,
            ramp_interval_s=self.ramp_interval_s,
        )
        if plan.weight is not None:
            self.router.set_canary_weight(self.route, plan.weight)
        if plan.record is not None:
            primary = self.route.endpoint("primary").cluster
            self.ledger.add(
                tables.Failover(route=self.route.name, cluster=primary, event=plan.record, at=now())
            )
            why = (
                f"primary {primary} failed its health checks"
                if plan.record == "failover"
                else f"primary {primary} healthy for the hold-down"
            )
            self.alert(f"{self.route.name}: {plan.record} ({why})")
        return self.state

    def run(self, *, until: Callable[[], bool], every_s: float = 0.1) -> None:
        """Poll until ``until()`` says stop."""
        while not until():
            self.poll()
            time.sleep(every_s)
