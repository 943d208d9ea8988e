"""Live traffic through a real HAProxy, analysed by a real Prometheus: canary rollouts
promoted, rolled back, paused for lack of data and resumed after a restart; failover to
the standby with no failed idempotent request, and failback after the hold-down.

The clusters' ingresses are demo apps (`tenantry.local.demoapp`): pods in kwok
clusters run no containers. A load generator sends a bounded stream of GETs.
"""

from __future__ import annotations

import os
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from typing import Any

import httpx2
import pytest
import yaml

from tenantry import processes
from tenantry.ledger import Ledger
from tenantry.traffic import analysis, canary, failover
from tenantry.traffic.haproxy import HAProxy
from tenantry.traffic.load import Load
from tenantry.traffic.router import Endpoint, Route
from tests.waiting import wait_for

OBJECTIVES = analysis.Objectives(success_rate=99.0, latency_p99_s=0.5)


def scraped(prometheus: str, targets: int = 3) -> bool:
    """Whether Prometheus has scraped every target (HAProxy and the apps) at least once."""
    try:
        query = httpx2.get(f"{prometheus}/api/v1/query", params={"query": "sum(up)"}, timeout=2)
        return float(query.json()["data"]["result"][0]["value"][1]) == targets
    except (httpx2.HTTPError, LookupError, ValueError):
        return False


def admin(port: int, **change: Any) -> None:
    httpx2.post(f"http://127.0.0.1:{port}/admin", json=change, timeout=5).raise_for_status()


@pytest.fixture(scope="module")
def platform(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Any]]:
    state = tmp_path_factory.mktemp("traffic-state")
    previous = os.environ.get("TENANTRY_STATE_DIR")
    os.environ["TENANTRY_STATE_DIR"] = str(state)
    ports = {
        name: processes.free_port() for name in ("primary", "canary", "front", "stats", "prom")
    }
    apps = {"primary": ("prod-primary", "1.0.0"), "canary": ("prod-canary", "1.1.0")}
    prometheus = None
    try:
        for role, (cluster, version) in apps.items():
            processes.start(f"app-{role}", [
                sys.executable, "-m", "tenantry.local.demoapp", "--port", str(ports[role]),
                "--service", "api", "--cluster", cluster, "--version", version,
            ], port=ports[role])  # fmt: skip
        route = Route("payments-api", (
            Endpoint("prod-primary", "primary", f"127.0.0.1:{ports['primary']}"),
            Endpoint("prod-canary", "canary", f"127.0.0.1:{ports['canary']}"),
        ))  # fmt: skip
        router = HAProxy.on_loopback(
            state / "haproxy", [(route, ports["front"])], stats_port=ports["stats"]
        )
        router.start()
        config = {"global": {"scrape_interval": "1s"}, "scrape_configs": [
            {"job_name": "haproxy", "static_configs": [{"targets": [f"127.0.0.1:{ports['stats']}"]}]},
            {"job_name": "apps", "honor_labels": True, "static_configs": [{"targets": [
                f"127.0.0.1:{ports['primary']}", f"127.0.0.1:{ports['canary']}"]}]},
        ]}  # fmt: skip
        (state / "prometheus.yml").write_text(yaml.safe_dump(config))
        prometheus = subprocess.Popen(
            ["prometheus", f"--config.file={state / 'prometheus.yml'}",
             f"--storage.tsdb.path={state / 'tsdb'}", f"--web.listen-address=127.0.0.1:{ports['prom']}"],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        )  # fmt: skip
        prom = f"http://127.0.0.1:{ports['prom']}"
        wait_for(lambda: scraped(prom), "Prometheus to scrape HAProxy and both apps")
        with Ledger.open(f"sqlite:///{state / 'ledger.sqlite'}") as ledger:
            yield {"router": router, "route": route, "ports": ports, "ledger": ledger,
                   "prometheus": f"http://127.0.0.1:{ports['prom']}",
                   "front": f"http://127.0.0.1:{ports['front']}/"}  # fmt: skip
    finally:
        if prometheus is not None:
            prometheus.terminate()
            prometheus.wait(timeout=30)
        processes.stop("haproxy")
        for role in apps:
            processes.stop(f"app-{role}")
        if previous is None:
            os.environ.pop("TENANTRY_STATE_DIR", None)
        else:
            os.environ["TENANTRY_STATE_DIR"] = previous


def controller(p: dict[str, Any], version: str, policy: analysis.Policy,
               outcomes: list[str]) -> canary.Controller:  # fmt: skip
    target = canary.Target("payments", "api", version, p["route"], OBJECTIVES, policy)
    return canary.Controller(
        target, router=p["router"], ledger=p["ledger"],
        observe=lambda t: canary.observe(p["prometheus"], t, policy.interval_s),
        on_rollback=lambda t, reason: outcomes.append(f"rollback: {reason}"),
        on_promote=lambda t: outcomes.append("promote"),
        log=lambda line: outcomes.append(f"log: {line}"),
    )  # fmt: skip


def acted(outcomes: list[str]) -> list[str]:
    return [o for o in outcomes if not o.startswith("log: ")]


# Tens of requests a second, a 20 % share: some 40 canary requests per interval, so a
# 20 % error rate shows (no error among 40 has a chance of 0.8^40, about 1e-4).
POLICY = analysis.Policy(steps=(20, 50), interval_s=5, min_requests=10, max_failed_intervals=1)


def test_a_good_canary_is_promoted_through_every_step(platform) -> None:
    admin(platform["ports"]["canary"], version="1.1.0", error_rate=0.0)
    load = Load(platform["front"])
    outcomes: list[str] = []
    try:
        rollout = controller(platform, "1.1.0", POLICY, outcomes).run(max_intervals=6)
    finally:
        load.stop()
    assert rollout.status == "promoted", rollout.reason
    assert rollout.passes == 2
    assert acted(outcomes) == ["promote"]
    assert load.versions["1.1.0"] > 0 and load.failed == 0
    weights = {s.role: s.weight for s in platform["router"].state(platform["route"])}
    assert weights == {"primary": 100, "canary": 0}  # reset once the primary has it


def test_a_canary_with_20_percent_errors_is_rolled_back_within_one_interval(platform) -> None:
    admin(platform["ports"]["canary"], version="1.2.0", error_rate=0.2)
    load = Load(platform["front"])
    outcomes: list[str] = []
    try:
        rollout = controller(platform, "1.2.0", POLICY, outcomes).run(max_intervals=3)
        after = sum(load.versions.values())
        time.sleep(1)
        served_after = sum(load.versions.values()) - after
    finally:
        load.stop()
        admin(platform["ports"]["canary"], error_rate=0.0)
    assert rollout.status == "rolled-back"
    assert "below the SLO" in rollout.reason
    assert acted(outcomes)[0].startswith("rollback"), outcomes
    # Decided at the end of the first interval: no pass, no pause, one failure.
    assert len([o for o in outcomes if o.startswith("log: ")]) == 1, outcomes
    assert (rollout.passes, rollout.failures) == (0, 1)
    assert served_after > 0 and load.failed == 0  # the primary kept serving
    weights = {s.role: s.weight for s in platform["router"].state(platform["route"])}
    assert weights["canary"] == 0


def test_no_traffic_pauses_as_no_data_and_is_never_promoted(platform) -> None:
    outcomes: list[str] = []
    rollout = controller(platform, "1.3.0", POLICY, outcomes).run(max_intervals=3)
    assert rollout.status == "running"
    assert rollout.step == 0 and rollout.passes == 0
    assert rollout.reason.startswith("paused, no data")
    assert acted(outcomes) == []
    row = platform["ledger"].canary("payments", "api")
    kept = platform["ledger"].canary_intervals(row.id)
    assert [(i.verdict, i.step, i.weight) for i in kept] == [("no-data", 0, 20)] * 3
    assert all(i.canary_success_rate is None for i in kept)  # no requests: no rate, not 0
    canary.set_status(platform["ledger"], "payments", "api", "aborted", "test over")


def test_a_restarted_controller_resumes_where_it_stopped(platform) -> None:
    admin(platform["ports"]["canary"], version="1.4.0", error_rate=0.0)
    load = Load(platform["front"])
    outcomes: list[str] = []
    try:
        first = controller(platform, "1.4.0", POLICY, outcomes).run(max_intervals=1)
        assert (first.step, first.weight, first.status) == (1, 50, "running"), first.reason
        platform["router"].set_canary_weight(platform["route"], 0)  # as if the router lost it
        again = controller(platform, "1.4.0", POLICY, outcomes)
        _, resumed = again.begin()
        assert (resumed.step, resumed.weight, resumed.passes) == (1, 50, 1)
        final = again.run(max_intervals=3)
    finally:
        load.stop()
    assert final.status == "promoted"
    assert final.passes == 2  # one before the restart, one after: not counted twice


def test_a_reload_keeps_the_intended_weights(platform) -> None:
    router, route = platform["router"], platform["route"]
    router.set_canary_weight(route, 25)
    router.reload()
    weights = {s.role: s.weight for s in router.state(route)}
    assert weights == {"primary": 75, "canary": 25}
    router.set_canary_weight(route, 0)


def test_primary_failure_moves_all_traffic_to_the_standby_then_back(platform) -> None:
    router, route, ports = platform["router"], platform["route"], platform["ports"]
    router.set_canary_weight(route, 0)  # the canary cluster is only the standby
    admin(ports["canary"], version="standby", error_rate=0.0)
    alerts: list[str] = []
    watcher = failover.Watcher(route, router=router, ledger=platform["ledger"],
                               alert=alerts.append, hold_down_s=2, ramp_steps=2,
                               ramp_interval_s=1)  # fmt: skip
    done = threading.Event()
    watching = threading.Thread(target=watcher.run, kwargs={"until": done.is_set}, daemon=True)
    watching.start()
    load = Load(platform["front"])
    try:
        time.sleep(1)
        killed = time.monotonic()
        processes.stop("app-primary", grace_s=0)  # the primary cluster's ingress dies
        wait_for(
            lambda: watcher.state.mode == "failed-over", "the failover", timeout_s=10, poll_s=0.05
        )
        time.sleep(2)
        back = time.monotonic()
        processes.start("app-primary", [
            sys.executable, "-m", "tenantry.local.demoapp", "--port", str(ports["primary"]),
            "--service", "api", "--cluster", "prod-primary", "--version", "1.0.0",
        ], port=ports["primary"])  # fmt: skip
        wait_for(lambda: watcher.state.mode == "normal", "the failback", timeout_s=30, poll_s=0.05)
        time.sleep(1)
    finally:
        load.stop()
        done.set()
        watching.join(timeout=5)
    assert load.failed == 0 and load.versions["error"] == 0, (load.errors, killed, back)
    during = [v for t, v in load.answers if killed + 1 < t < back]
    assert during and set(during) == {"standby"}  # everything on the standby
    returned = [t for t, v in load.answers if t > back and v == "1.0.0"]
    standby_after_restart = [t for t, v in load.answers if t > back and v == "standby"]
    assert returned and standby_after_restart
    assert min(standby_after_restart) < min(returned)  # held down first, not at once
    events = [f.event for f in reversed(platform["ledger"].failovers())]
    assert events[-2:] == ["failover", "failback"]
    assert any("failover" in a for a in alerts) and any("failback" in a for a in alerts)
    weights = {s.role: s.weight for s in router.state(route)}
    assert weights == {"primary": 100, "canary": 0}
