"""Canary analysis, the rollout state machine, failover decisions and the HAProxy
configuration (pure)."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest

from tenantry.deploy import canary_release
from tenantry.spec import models, repository, services
from tenantry.traffic import analysis, failover, haproxy, policy
from tenantry.traffic.router import Endpoint, Route

SLO = analysis.Objectives(success_rate=99.5, latency_p99_s=0.3)
POLICY = analysis.Policy(steps=(1, 5, 25, 50), interval_s=10, min_requests=20,
                         max_failed_intervals=2)  # fmt: skip


def obs(requests: float = 100, rate: float = 100.0, p99: float = 0.1,
        primary_rate: float = 100.0, primary_p99: float = 0.1) -> analysis.Observation:  # fmt: skip
    return analysis.Observation(requests, rate, p99, 1000, primary_rate, primary_p99)


@pytest.mark.parametrize(
    ("observation", "kind", "words"),
    [
        (obs(), "pass", "success rate 100.00%"),
        (obs(requests=19), "no-data", "fewer than 20"),
        (obs(requests=0, rate=None), "no-data", "0 canary requests"),  # type: ignore[arg-type]
        (obs(rate=80.0), "fail", "below the SLO"),
        (obs(rate=99.6, primary_rate=100.0), "pass", ""),  # within the 1-point margin
        (obs(rate=99.8, primary_rate=100.0, p99=0.29, primary_p99=0.1), "fail", "over 1.2x"),
        (obs(p99=0.4, primary_p99=0.4), "fail", "above the SLO"),
        (obs(p99=0.019, primary_p99=0.005), "pass", ""),  # 14 ms of jitter, under the floor
    ],
)
def test_classify(observation: analysis.Observation, kind: str, words: str) -> None:
    verdict = analysis.classify(observation, SLO, POLICY)
    assert verdict.kind == kind
    assert words in verdict.reason


def test_passing_every_step_promotes() -> None:
    rollout = analysis.start(POLICY)
    weights = [rollout.weight]
    for _ in POLICY.steps:
        rollout, action = analysis.advance(rollout, analysis.Verdict("pass", "ok"), POLICY)
        weights.append(action.weight if action.kind == "set-weight" else -1)
    assert weights == [1, 5, 25, 50, -1]
    assert (rollout.status, action.kind, rollout.weight) == ("promoted", "promote", 0)


def test_no_data_waits_and_never_counts_as_a_pass() -> None:
    rollout = analysis.start(POLICY)
    for _ in range(10):
        rollout, action = analysis.advance(rollout, analysis.Verdict("no-data", "quiet"), POLICY)
        assert action == analysis.Action("wait", 1)
    assert (rollout.status, rollout.step, rollout.passes) == ("running", 0, 0)
    assert rollout.reason.startswith("paused, no data")


def test_failed_intervals_roll_back_at_the_limit() -> None:
    rollout = analysis.start(POLICY)
    rollout, action = analysis.advance(rollout, analysis.Verdict("fail", "bad"), POLICY)
    assert (rollout.status, action.kind) == ("running", "wait")
    rollout, action = analysis.advance(rollout, analysis.Verdict("fail", "bad"), POLICY)
    assert (rollout.status, action.kind, rollout.weight) == ("rolled-back", "rollback", 0)
    finished, action = analysis.advance(rollout, analysis.Verdict("pass", "ok"), POLICY)
    assert finished == rollout and action.kind == "wait"


def test_failover_holds_down_then_returns_gradually() -> None:
    def run(
        state: failover.State, healthy: bool, at: float
    ) -> tuple[failover.State, failover.Plan]:
        return failover.step(state, primary_healthy=healthy, canary_weight=10, at=at,
                             hold_down_s=30, ramp_steps=4, ramp_interval_s=5)  # fmt: skip

    state, plan = run(failover.State(), True, 0)
    assert plan == failover.Plan() and state.canary_weight == 10
    state, plan = run(state, False, 1)
    assert plan == failover.Plan(weight=100, record="failover")
    state, plan = run(state, True, 2)  # healthy again: the hold-down starts
    state, plan = run(state, False, 10)  # flaps: the hold-down starts over
    state, plan = run(state, True, 11)
    state, plan = run(state, True, 40)
    assert state.mode == "failed-over" and plan.weight is None  # 29 s < 30 s
    state, plan = run(state, True, 41)
    assert state.mode == "failing-back"
    weights = []
    for at in (41, 42, 46, 51, 56):
        state, plan = run(state, True, at)
        if plan.weight is not None:
            weights.append(plan.weight)
    assert weights == [78, 55, 32, 10]
    assert plan.record == "failback" and state.mode == "normal"


def test_a_primary_that_never_served_is_no_failover() -> None:
    def run(state: failover.State, healthy: bool) -> tuple[failover.State, failover.Plan]:
        return failover.step(state, primary_healthy=healthy, canary_weight=0, at=0,
                             hold_down_s=30, ramp_steps=4, ramp_interval_s=5)  # fmt: skip

    # Before the service's first production release its ingress has no pod: not a failure.
    state, plan = run(failover.State(), False)
    assert (state.mode, plan) == ("normal", failover.Plan())
    state, plan = run(state, True)  # released: it serves
    state, plan = run(state, False)  # and now fails
    assert plan == failover.Plan(weight=100, record="failover")


def test_haproxy_config_has_backups_and_fast_checks() -> None:
    route = Route("payments-api", (Endpoint("prod-primary", "primary", "127.0.0.1:1"),
                                   Endpoint("prod-canary", "canary", "127.0.0.1:2")))  # fmt: skip
    text = haproxy.config([route], fronts=haproxy.PortPerRoute({"payments-api": 8080}),
                          admin_socket=Path("/s"), stats="127.0.0.1:9",
                          canary_weights={"payments-api": 25})  # fmt: skip
    assert "frontend payments-api\n    bind 127.0.0.1:8080\n" in text
    assert "server prod-primary 127.0.0.1:1 weight 75" in text
    assert "server prod-canary 127.0.0.1:2 weight 25" in text
    assert "server prod-canary-standby 127.0.0.1:2 backup" in text
    assert "server prod-primary-standby 127.0.0.1:1 backup" in text
    assert "option redispatch" in text and "retry-on conn-failure" in text
    assert "inter 200ms fall 2" in text
    assert "prometheus-exporter" in text


def test_a_production_without_a_canary_cluster_is_refused_before_any_deploy() -> None:
    env = models.Environment.model_validate(
        {"name": "production", "clusters": [{"name": "p", "local": "p"}]}
    )
    with pytest.raises(canary_release.CanaryError, match="role: canary"):
        canary_release._split(env)


def test_a_services_canary_settings_override_the_platforms() -> None:
    example = Path(__file__).resolve().parents[2] / "examples" / "platform-repo"
    repo = repository.load(example)
    service = repo.service("payments/api")
    assert service.descriptor is not None
    own = service.descriptor.model_copy(
        update={"canary": services.CanaryOverrides(steps=(5, 50), min_requests=50)}
    )
    merged = policy.policy(repo.platform, dataclasses.replace(service, descriptor=own))
    assert merged.steps == (5, 50) and merged.min_requests == 50
    assert merged.interval_s == repo.platform.traffic.canary.interval_s  # type: ignore[union-attr]
    assert policy.objectives(service).latency_p99_s == service.descriptor.slo.latency_p99_ms / 1000


def test_haproxy_on_premises_chooses_the_route_by_host_and_answers_404_to_others() -> None:
    routes = [Route(name, (Endpoint("eu-1", "primary", "10.0.0.1:80"),
                           Endpoint("eu-2", "canary", "10.0.0.2:80")))
              for name in ("payments-api", "search-web")]  # fmt: skip
    fronts = haproxy.ByHost(":80", "apps.acme.example")
    text = haproxy.config(routes, fronts=fronts, admin_socket=Path("/s"), stats=":8404",
                          canary_weights={})  # fmt: skip
    assert text.count("frontend ") == 2  # the routes' one, and stats
    assert ("    use_backend search-web if { req.hdr(host),field(1,:) -m str -i "
            "search-web.apps.acme.example }") in text  # fmt: skip
    assert f"default_backend {haproxy.UNKNOWN_HOST}" in text
    assert "http-request return status 404" in text
    assert fronts.url(routes[0]) == "http://payments-api.apps.acme.example/"
    assert haproxy.ByHost("10.0.0.9:8080", "apps.acme.example").url(routes[1]) == (
        "http://search-web.apps.acme.example:8080/"
    )
