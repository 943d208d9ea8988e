"""Canary analysis and the rollout's next step (pure).

Each interval the controller observes the canary and the primary (`Observation`);
`classify` turns that into a `Verdict`, and `advance` turns the stored `Rollout`
and the verdict into the next rollout and the one `Action` to take. Observe →
classify → act: nothing here reads a clock, a metric or a router, so every rule
is a unit test.

* Fewer than ``min_requests`` canary requests in an interval is *no data*: the
  rollout pauses there and says so; it never counts as a pass.
* The canary passes an interval when its success rate meets the SLO and is not
  worse than the primary's by more than ``success_margin`` percentage points, and
  its p99 latency meets the SLO and is not above the primary's by more than
  ``latency_margin`` (a ratio) — and by more than ``latency_floor_s``, so that a few
  milliseconds of jitter on a fast service are not read as a regression.
* ``max_failed_intervals`` failed intervals roll the canary back; passing every
  step promotes it.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Literal

Status = Literal["running", "paused", "promoted", "rolled-back", "aborted"]
ActionKind = Literal["set-weight", "promote", "rollback", "wait"]


@dataclass(frozen=True)
class Policy:
    """How a canary advances."""

    steps: tuple[int, ...] = (1, 5, 25, 50)
    interval_s: float = 10.0
    min_requests: int = 20
    max_failed_intervals: int = 1
    success_margin: float = 1.0  # percentage points the canary may trail the primary
    latency_margin: float = 1.2  # canary p99 / primary p99 allowed
    latency_floor_s: float = 0.05  # a p99 difference below this is never a regression


@dataclass(frozen=True)
class Objectives:
    """The service's SLOs (from its descriptor)."""

    success_rate: float  # percent
    latency_p99_s: float


@dataclass(frozen=True)
class Observation:
    """One interval's figures. Latency is None when no request was timed."""

    canary_requests: float
    canary_success_rate: float | None
    canary_p99_s: float | None
    primary_requests: float
    primary_success_rate: float | None
    primary_p99_s: float | None


@dataclass(frozen=True)
class Verdict:
    """How the canary did in one interval."""

    kind: Literal["pass", "fail", "no-data"]
    reason: str


@dataclass(frozen=True)
class Rollout:
    """A canary rollout's stored state: the controller resumes from exactly this."""

    step: int  # index into policy.steps; len(steps) once promoted
    weight: int
    passes: int
    failures: int
    status: Status
    reason: str


@dataclass(frozen=True)
class Action:
    """The one thing the controller does next."""

    kind: ActionKind
    weight: int = 0


def start(policy: Policy) -> Rollout:
    """A new rollout at the first step."""
    return Rollout(
        step=0,
        weight=policy.steps[0],
        passes=0,
        failures=0,
        status="running",
        reason=f"step 1 of {len(policy.steps)}: {policy.steps[0]}% to the canary",
    )


def classify(obs: Observation, slo: Objectives, policy: Policy) -> Verdict:
    """Pass, fail or no data for one interval."""
    if obs.canary_requests < policy.min_requests or obs.canary_success_rate is None:
        return Verdict(
            "no-data",
            f"{obs.canary_requests:.0f} canary requests in the interval, "
            f"fewer than {policy.min_requests}",
        )
    problems = []
    rate = obs.canary_success_rate
    if rate < slo.success_rate:
        problems.append(f"success rate {rate:.2f}% below the SLO {slo.success_rate}%")
    primary_rate = obs.primary_success_rate
    if primary_rate is not None and rate < primary_rate - policy.success_margin:
        problems.append(
            f"success rate {rate:.2f}% trails the primary's "
            f"{primary_rate:.2f}% by more than {policy.success_margin} points"
        )
    p99 = obs.canary_p99_s
    if p99 is not None:
        if p99 > slo.latency_p99_s:
            problems.append(
                f"p99 {p99 * 1000:.0f} ms above the SLO {slo.latency_p99_s * 1000:.0f} ms"
            )
        primary_p99 = obs.primary_p99_s
        if (
            primary_p99
            and p99 > primary_p99 * policy.latency_margin
            and p99 - primary_p99 > policy.latency_floor_s
        ):
            problems.append(
                f"p99 {p99 * 1000:.0f} ms over {policy.latency_margin}x the primary's "
                f"{primary_p99 * 1000:.0f} ms"
            )
    if problems:
        return Verdict("fail", "; ".join(problems))
    latency = f", p99 {p99 * 1000:.0f} ms" if p99 is not None else ""
    return Verdict(
        "pass", f"success rate {rate:.2f}%{latency} over {obs.canary_requests:.0f} requests"
    )


def advance(rollout: Rollout, verdict: Verdict, policy: Policy) -> tuple[Rollout, Action]:
    """The rollout after ``verdict``, and what to do about it."""
    if rollout.status != "running":
        return rollout, Action("wait", rollout.weight)
    if verdict.kind == "no-data":
        return replace(rollout, reason=f"paused, no data: {verdict.reason}"), Action(
            "wait", rollout.weight
        )
    if verdict.kind == "fail":
        failures = rollout.failures + 1
        if failures >= policy.max_failed_intervals:
            return replace(
                rollout,
                failures=failures,
                weight=0,
                status="rolled-back",
                reason=f"rolled back: {verdict.reason}",
            ), Action("rollback")
        return replace(
            rollout,
            failures=failures,
            reason=f"failed interval {failures} of {policy.max_failed_intervals}: {verdict.reason}",
        ), Action("wait", rollout.weight)
    step = rollout.step + 1
    if step >= len(policy.steps):
        return replace(
            rollout,
            step=step,
            passes=rollout.passes + 1,
            weight=0,
            status="promoted",
            reason=f"promoted: {verdict.reason}",
        ), Action("promote")
    weight = policy.steps[step]
    return replace(
        rollout,
        step=step,
        passes=rollout.passes + 1,
        weight=weight,
        reason=f"step {step + 1} of {len(policy.steps)}: {weight}% to the canary "
        f"(last interval: {verdict.reason})",
    ), Action("set-weight", weight)
