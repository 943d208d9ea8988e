"""The canary controller: observe → classify → act, one interval at a time.

Each interval it asks Prometheus for the canary's and the primary's figures
(`observe`), classifies them (`analysis.classify`), and acts on the verdict
(`analysis.advance`): a new weight on the router, a rollback, or a promotion. Its
state is a row in the ledger, written after every interval, so a controller that is
stopped and started again resumes at the same step with the same counts; each analysed
interval's verdict and figures are kept beside it (a paused interval is not analysed).
``tenantry canary pause|resume|abort`` change that row; the controller reads it
back every interval.

When a dependency fails mid-rollout the controller neither guesses nor gives up:
* Prometheus unreachable (or answering nonsense) is an interval with no data — the
  rollout pauses where it is, says why, and is never promoted on it;
* the router refusing or unreachable means the step was not taken: the rollout stays
  at the weight it had (stored, with the reason) and tries again next interval; a
  rollback keeps trying to take the canary out of traffic.
Weights stay where they were rather than snapping back to the primary: the canary was
healthy at that weight when last measured, and a failing router could not move them
anyway. A rollout that reaches no decision by its deadline is rolled back.
``guard`` runs before every action so a worker that lost its lease stops first.

Success rates come from HAProxy's per-server response counters (they count what
users got, whatever the app reports); latency from the applications' own
histograms, because HAProxy exports only averages.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, replace
from typing import cast

import httpx2

from tenantry import errors, faults
from tenantry.ledger import Ledger, now, tables
from tenantry.observability.promql import matchers
from tenantry.traffic import analysis
from tenantry.traffic.router import Route, Router


@dataclass(frozen=True)
class Target:
    """The rollout: which version of which service, behind which route, held to what."""

    tenant: str
    service: str
    version: str
    route: Route
    objectives: analysis.Objectives
    policy: analysis.Policy


def _scalar(prometheus: str, query: str) -> float | None:
    response = httpx2.get(f"{prometheus}/api/v1/query", params={"query": query}, timeout=10)
    response.raise_for_status()
    result = response.json()["data"]["result"]
    if not result:
        return None
    value = float(result[0]["value"][1])
    return None if value != value else value  # NaN: nothing to divide


def queries(target: Target, role: str, window_s: float) -> tuple[str, str, str]:
    """The PromQL for one role's responses, 5xx responses and p99 latency (pure)."""
    window = f"{max(1, round(window_s))}s"
    cluster = target.route.endpoint(role).cluster
    server = matchers(proxy=target.route.name, server=cluster)
    return (
        f"sum(increase(haproxy_server_http_responses_total{{{server}}}[{window}]))",
        f'sum(increase(haproxy_server_http_responses_total{{{server},code="5xx"}}[{window}]))',
        "histogram_quantile(0.99, sum by (le) (rate(http_request_duration_seconds_bucket"
        f"{{{matchers(service=target.service, cluster=cluster)}}}[{window}])))",
    )


def observe(prometheus: str, target: Target, window_s: float) -> analysis.Observation:
    """One interval's figures for the canary and the primary."""

    def figures(role: str) -> tuple[float, float | None, float | None]:
        total_query, errors_query, p99_query = queries(target, role, window_s)
        total = _scalar(prometheus, total_query) or 0.0
        errors_ = _scalar(prometheus, errors_query) or 0.0
        rate = 100.0 * (1 - errors_ / total) if total else None
        return total, rate, _scalar(prometheus, p99_query)

    canary, primary = figures("canary"), figures("primary")
    return analysis.Observation(*canary, *primary)


class Controller:
    """Runs one rollout to its end (or until ``max_intervals``)."""

    def __init__(
        self,
        target: Target,
        *,
        router: Router,
        ledger: Ledger,
        observe: Callable[[Target], analysis.Observation],
        on_rollback: Callable[[Target, str], None],
        on_promote: Callable[[Target], None],
        sleep: Callable[[float], None] = time.sleep,
        log: Callable[[str], None] = lambda _: None,
        guard: Callable[[], None] = lambda: None,
    ) -> None:
        self.target = target
        self.router = router
        self.ledger = ledger
        self._observe = observe
        self.on_rollback = on_rollback
        self.on_promote = on_promote
        self.sleep = sleep
        self.log = log
        self.guard = guard

    def _load(self) -> tuple[int, analysis.Rollout] | None:
        row = self.ledger.canary(self.target.tenant, self.target.service)
        if row is None or row.version != self.target.version:
            return None
        status = cast(analysis.Status, row.status)
        return row.id, analysis.Rollout(
            row.step, row.weight, row.passes, row.failures, status, row.reason
        )

    def _save(self, row_id: int, rollout: analysis.Rollout) -> None:
        self.guard()
        self.ledger.set_canary(
            row_id,
            step=rollout.step,
            weight=rollout.weight,
            passes=rollout.passes,
            failures=rollout.failures,
            status=rollout.status,
            reason=rollout.reason,
            updated=now(),
        )

    def begin(self) -> tuple[int, analysis.Rollout]:
        """The stored rollout of this version if it is still under way (resumed), or a new
        one at the first step (a finished one is history: this is a new attempt)."""
        found = self._load()
        if found is not None and found[1].status in ("running", "paused"):
            self.log(f"resuming at weight {found[1].weight}%: {found[1].reason}")
            return found
        rollout = analysis.start(self.target.policy)
        row = self.ledger.add(
            tables.Canary(
                tenant=self.target.tenant,
                service=self.target.service,
                version=self.target.version,
                step=rollout.step,
                weight=rollout.weight,
                passes=0,
                failures=0,
                status=rollout.status,
                reason=rollout.reason,
                updated=now(),
            )
        )
        return int(row.id), rollout

    def run(self, *, max_intervals: int | None = None) -> analysis.Rollout:
        """Drive the rollout until it is promoted, rolled back or aborted."""
        row_id, rollout = self.begin()
        # The weight the stored state says: after a restart the router may have lost it,
        # and after a router failure it may hold anything.
        unsure = rollout.status in ("running", "paused")
        intervals = 0
        while rollout.status in ("running", "paused"):
            if unsure:
                self.guard()
                unsure = not self._reach_router(row_id, rollout, rollout.weight)
            if max_intervals is not None and intervals >= max_intervals:
                break
            self.sleep(self.target.policy.interval_s)
            intervals += 1
            stored = self._load()
            if stored is not None and stored[1].status != rollout.status:
                rollout = stored[1]  # paused, resumed or aborted by `tenantry canary`
                if rollout.status == "aborted":
                    self._roll_back(rollout.reason)
                    break
            if rollout.status == "paused" or unsure:
                continue  # paused by a person, or the router holds who knows what weight
            verdict, observation = self._verdict()
            following, action = analysis.advance(rollout, verdict, self.target.policy)
            self.guard()
            self._record(row_id, rollout, verdict, observation)
            if action.kind == "rollback":
                self._roll_back(following.reason)  # keeps at the router until it answers
            elif action.kind in ("set-weight", "promote"):
                if action.kind == "promote":
                    self.on_promote(self.target)  # the primary gets the version first
                weight = action.weight if action.kind == "set-weight" else 0
                if not self._reach_router(row_id, rollout, weight):
                    unsure = True  # the step was not taken: back to the stored weight first
                    continue
            rollout = following
            self.log(rollout.reason)
            faults.point("canary.after-weight")
            self._save(row_id, rollout)
        return rollout

    def _verdict(self) -> tuple[analysis.Verdict, analysis.Observation | None]:
        """This interval's verdict and the figures it was decided on; Prometheus failing
        is an interval with no data and no figures."""
        try:
            observation = self._observe(self.target)
        except Exception as e:  # any failure to read the figures: never a pass
            return analysis.Verdict("no-data", f"Prometheus unreachable: {_short(e)}"), None
        verdict = analysis.classify(observation, self.target.objectives, self.target.policy)
        return verdict, observation

    def _record(self, row_id: int, rollout: analysis.Rollout, verdict: analysis.Verdict,
                observation: analysis.Observation | None) -> None:  # fmt: skip
        """Keep this interval's verdict and figures, at the step and weight they were
        measured at (before the rollout moves on)."""
        figures = {} if observation is None else {
            "canary_requests": observation.canary_requests,
            "canary_success_rate": observation.canary_success_rate,
            "canary_p99_s": observation.canary_p99_s,
            "primary_requests": observation.primary_requests,
            "primary_success_rate": observation.primary_success_rate,
            "primary_p99_s": observation.primary_p99_s,
        }  # fmt: skip
        self.ledger.add_canary_interval(row_id, step=rollout.step, weight=rollout.weight,
                                        verdict=verdict.kind, reason=verdict.reason,
                                        **figures)  # fmt: skip

    def _reach_router(self, row_id: int, rollout: analysis.Rollout, weight: int) -> bool:
        """Set the canary's ``weight``; when the router fails, record that the rollout
        stays where it was and return False (the next interval tries again)."""
        try:
            self.router.set_canary_weight(self.target.route, weight)
            return True
        except Exception as e:  # the router failed: nothing moved
            stuck = replace(rollout, reason=f"router unreachable: {_short(e)}; staying at "
                            f"{rollout.weight}% and trying again")  # fmt: skip
            self.log(stuck.reason)
            self._save(row_id, stuck)
            return False

    def abort(self, reason: str) -> None:
        """Take the canary out of traffic and roll it back (after `set_status` aborted it)."""
        self._roll_back(reason)

    def _roll_back(self, reason: str, *, attempts: int = 30) -> None:
        """Canary out of traffic, then ``on_rollback``; the router is retried every
        interval, because a canary left in traffic is worse than a slow rollback."""
        for attempt in range(1, attempts + 1):
            self.guard()
            try:
                self.router.set_canary_weight(self.target.route, 0)
                break
            except Exception as e:
                if attempt == attempts:
                    raise errors.TenantryError(
                        f"could not take the canary of {self.target.tenant}/"
                        f"{self.target.service} out of traffic: {_short(e)}",
                        fix="once the router answers, approve the promotion again: the "
                        "rollout resumes where it stopped and decides again",
                    ) from e
                self.log(f"rolling back: router unreachable ({_short(e)}); trying again")
                self.sleep(self.target.policy.interval_s)
        self.on_rollback(self.target, reason)


def _short(error: Exception) -> str:
    """One line naming the error, for the stored reason."""
    text = str(error).splitlines()[0] if str(error) else ""
    return f"{type(error).__name__}: {text}"[:300]


def set_status(
    ledger: Ledger, tenant: str, service: str, status: str, reason: str
) -> tables.Canary:
    """Pause, resume or abort the newest rollout of a service (read by its controller)."""
    row = ledger.canary(tenant, service)
    allowed = {"paused": ("running",), "running": ("paused",), "aborted": ("running", "paused")}
    if row is None:
        raise errors.UsageError(f"{tenant}/{service} has no canary rollout")
    if row.status not in allowed[status]:
        raise errors.UsageError(
            f"the {row.version} rollout of {tenant}/{service} is {row.status}; "
            f"it cannot become {status}"
        )
    ledger.set_canary(row.id, status=status, reason=reason, updated=now())
    updated = ledger.canary(tenant, service)
    assert updated is not None
    return updated
