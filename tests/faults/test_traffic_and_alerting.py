"""Faults in live traffic and alerting, injected for real: Alertmanager stopped by its pid
while an alert fires, HAProxy reloaded and HAProxy SIGKILLed and started again in the
middle of a canary. Each test records what happened (`reliability`) before asserting.

For alerts, "lost" counts receivers an alert group never reached and "doubled" the
extra firing notifications of one group at one receiver. For traffic, the canary's
weight is the thing that must not be lost: a restart that forgets it moves live
traffic away from the canary with nobody deciding it.

Servers are the real ones (Prometheus, Alertmanager, HAProxy) on loopback; the
receivers are the local stand-ins speaking Slack's, PagerDuty's and SMTP's wire formats,
and the clusters' ingresses are demo apps (kwok runs no containers).
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import httpx2
import pytest
import yaml

from tenantry import processes
from tenantry.local import monitoring
from tenantry.observability import prometheus, secrets
from tenantry.spec import repository
from tenantry.traffic.load import Load
from tests.faults.conftest import Outcome, Record
from tests.integration.test_monitoring_stack import EXAMPLE, PD_KEY, received
from tests.integration.test_traffic import admin, platform
from tests.waiting import wait_for

__all__ = ["platform"]  # the traffic tests' HAProxy over two demo apps, shared

ALERT = "FaultInjected"


# ---------------------------------------------------------------------------- alerting


class Switch:
    """A /metrics endpoint exposing ``fault_injected <value>``: the test decides when the
    alert's condition holds (a fixed exporter would fire before the fault is injected)."""

    def __init__(self) -> None:
        self.value = 0
        switch = self

        class Metrics(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                payload = f"fault_injected {switch.value}\n".encode()
                self.send_response(200)
                self.send_header("Content-Type", "text/plain; version=0.0.4")
                self.send_header("Content-Length", str(len(payload)))
                self.end_headers()
                self.wfile.write(payload)

            def log_message(self, *_: object) -> None:
                return

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Metrics)
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    @property
    def address(self) -> str:
        return f"127.0.0.1:{self.server.server_port}"

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture(scope="module")
def alerting(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Any]]:
    """The monitoring stack as `tenantry up` starts it, for the example repository with
    one rule of payments' api that fires while ``fault_injected`` is 1 (critical: it
    pages on PagerDuty and notifies Slack and email)."""
    state = tmp_path_factory.mktemp("alerting-state")
    previous = os.environ.get("TENANTRY_STATE_DIR")
    os.environ["TENANTRY_STATE_DIR"] = str(state)
    root = tmp_path_factory.mktemp("alerting-repo") / "platform-repo"
    shutil.copytree(EXAMPLE, root)
    rule = {"alert": ALERT, "expr": "fault_injected > 0", "for": "0s",
            "labels": {"severity": "critical"}, "annotations": {"summary": "a fault test"}}  # fmt: skip
    (root / "services/payments/api/alerts.yaml").write_text(
        yaml.safe_dump({"groups": [{"name": "faults", "rules": [rule]}]})
    )
    repo = repository.load(root)
    ports = monitoring.Ports.allocate()
    (state / "monitoring").mkdir()
    (state / "monitoring" / "ports.json").write_text(json.dumps(ports.__dict__))
    slack = f"http://127.0.0.1:{ports.receivers}/slack"
    stored = {("payments-alerts", "webhook-url"): f"{slack}/payments",
              ("payments-pagerduty", "routing-key"): PD_KEY,
              ("checkout-alerts", "webhook-url"): f"{slack}/checkout"}  # fmt: skip
    values, problems = secrets.resolve(
        secrets.needs(repo), lambda ref: stored.get((ref.name, ref.key))
    )
    switch = Switch()
    try:
        targets = state / "monitoring" / "config" / "targets"
        targets.mkdir(parents=True)
        doc = prometheus.targets("payments", [(switch.address, "api", "api-0")])
        (targets / "payments.json").write_text(json.dumps(doc))
        started, _ = monitoring.start(repo, secret_values=values, secret_problems=problems)
        yield {"stack": started, "repo": repo, "values": values, "problems": problems,
               "switch": switch, "state": state}  # fmt: skip
    finally:
        monitoring.stop()
        switch.close()
        if previous is None:
            os.environ.pop("TENANTRY_STATE_DIR", None)
        else:
            os.environ["TENANTRY_STATE_DIR"] = previous


def prometheus_metric(stack: Any, name: str) -> float:
    """The sum of one of Prometheus' own counters (from its /metrics)."""
    text = httpx2.get(f"{stack.prometheus}/metrics", timeout=5).text
    return sum(float(line.rsplit(" ", 1)[1]) for line in text.splitlines()
               if line.startswith((f"{name}{{", f"{name} ")))  # fmt: skip


def firing_in_prometheus(stack: Any) -> bool:
    try:
        alerts = httpx2.get(f"{stack.prometheus}/api/v1/alerts", timeout=5).json()
    except httpx2.HTTPError:
        return False
    return any(a["labels"]["alertname"] == ALERT and a["state"] == "firing"
               for a in alerts["data"]["alerts"])  # fmt: skip


def firing_notifications(a: dict[str, Any]) -> dict[str, list[float]]:
    """When each receiver got a *firing* notification of the alert's group (a resolved
    one is not a duplicate): Slack's danger-coloured attachment, PagerDuty's trigger, an
    email whose subject says FIRING."""
    found: dict[str, list[float]] = {"slack": [], "pagerduty": [], "email": []}
    for r in received(a, "slack"):
        for attachment in r["message"].get("attachments", []):
            if attachment["title"].startswith(ALERT) and attachment.get("color") == "danger":
                found["slack"].append(r["received"])
    for r in received(a, "pagerduty"):
        event = r["event"]
        if event["event_action"] == "trigger" and ALERT in event["payload"]["summary"]:
            found["pagerduty"].append(r["received"])
    for r in received(a, "email"):
        if ALERT in r["subject"] and "FIRING" in r["subject"]:
            found["email"].append(r["received"])
    return found


def test_alerts_fired_while_alertmanager_is_down_arrive_once_after_it_returns(
    alerting: dict[str, Any], reliability: Record, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("TENANTRY_STATE_DIR", str(alerting["state"]))
    stack = alerting["stack"]
    wait_for(lambda: prometheus_metric(stack, "prometheus_sd_discovered_targets") > 0
             and "fault_injected 0" in httpx2.get(
                 f"http://{alerting['switch'].address}/metrics", timeout=5).text,
             "Prometheus to know the target")  # fmt: skip
    assert processes.stop(monitoring.ALERTMANAGER)  # SIGTERM to its pid, as `down` does
    down_at = time.time()
    errors_before = prometheus_metric(stack, "prometheus_notifications_errors_total")
    alerting["switch"].value = 1
    # The fault is real only once Prometheus has fired and failed to deliver.
    wait_for(lambda: firing_in_prometheus(stack), "Prometheus to fire the alert", timeout_s=30)
    wait_for(lambda: prometheus_metric(stack, "prometheus_notifications_errors_total")
             > errors_before + 2, "Prometheus to fail sending it three times",
             timeout_s=30)  # fmt: skip
    before_return = firing_notifications(alerting)
    # The outage ends as the platform starts Alertmanager again (the way `tenantry up`
    # does: it also reloads the servers already running); its delivery counts from here.
    back_at = time.time()
    monitoring.start(alerting["repo"], secret_values=alerting["values"],
                     secret_problems=alerting["problems"])  # fmt: skip
    restart_s = time.time() - back_at
    timed_out: AssertionError | None = None
    try:
        first = wait_for(lambda: all(firing_notifications(alerting).values())
                         and firing_notifications(alerting), "every receiver to get the alert",
                         timeout_s=60)  # fmt: skip
        # Long enough for a duplicate to show: Prometheus re-sends the firing alert every
        # second, and Alertmanager would notify a group it forgot after group_interval (10 s).
        sent = prometheus_metric(stack, "prometheus_notifications_sent_total")
        wait_for(lambda: prometheus_metric(stack, "prometheus_notifications_sent_total")
                 >= sent + 15, "15 more sends from Prometheus (past one group interval)",
                 timeout_s=60, poll_s=0.5)  # fmt: skip
    except AssertionError as e:
        timed_out, first = e, {}
    after = firing_notifications(alerting)
    lost = sum(1 for times in after.values() if not times)
    doubled = sum(max(0, len(times) - 1) for times in after.values())
    arrived = max((min(t) for t in after.values() if t), default=None)
    reliability(Outcome(
        fault="Alertmanager stopped by its pid (SIGTERM) while an alert fires",
        when=f"alert firing; Prometheus failed to send it while Alertmanager was down "
             f"{back_at - down_at:.0f} s; restarting the stack took {restart_s:.1f} s",
        happened=(f"after Alertmanager returned, Prometheus' re-sent alert reached "
                  f"{3 - lost} of 3 receivers (Slack, PagerDuty, email), firing notifications "
                  f"per receiver {', '.join(f'{k} {len(v)}' for k, v in after.items())}"),
        lost=lost, doubled=doubled, half_done=0,
        recovery_s=None if arrived is None or lost else round(arrived - back_at, 2),
    ))  # fmt: skip
    if timed_out is not None:
        raise timed_out
    assert not any(before_return.values()), before_return  # nothing could deliver
    assert first and lost == 0, after
    assert doubled == 0, after  # exactly once per group and receiver


# ----------------------------------------------------------------------------- traffic

SHARE = 25
# 400 answers at a true 25 % share: one standard deviation is 2.2 points (binomial; HAProxy's
# weighted round robin is closer still), so 5 points apart is a real change, not chance.
SAMPLE, TOLERANCE = 400, 5.0


@pytest.fixture
def canary(platform: dict[str, Any], monkeypatch: pytest.MonkeyPatch) -> Iterator[dict[str, Any]]:
    """The traffic platform mid-canary: versions named after the roles, 25 % on the canary;
    the state directory is the platform's (the alerting stack may be up too)."""
    monkeypatch.setenv("TENANTRY_STATE_DIR", str(platform["router"].directory.parent))
    admin(platform["ports"]["primary"], version="primary", error_rate=0.0)
    admin(platform["ports"]["canary"], version="canary", error_rate=0.0)
    # As before any rollout: HAProxy runs the configuration rendered at weight 0 (not one
    # an earlier test left), then the rollout sets the canary's share through the router.
    platform["router"].set_canary_weight(platform["route"], 0)
    platform["router"].reload()
    platform["router"].set_canary_weight(platform["route"], SHARE)
    yield platform
    if processes.running("haproxy"):
        platform["router"].set_canary_weight(platform["route"], 0)


def weights(p: dict[str, Any]) -> dict[str, int]:
    """The canary's and the primary's weight as the router reports them."""
    return {s.role: s.weight for s in p["router"].state(p["route"])}


def split(answers: list[tuple[float, str]], since: float) -> tuple[int, float]:
    """How many answers came from an app after ``since``, and the canary's share (%)."""
    served = [v for t, v in answers if t > since and v in ("primary", "canary")]
    return len(served), 100 * served.count("canary") / max(1, len(served))


def worker_pid(p: dict[str, Any]) -> int:
    """The pid of HAProxy's current worker (``show info``)."""
    return int(p["router"].runtime.command("show info").split("Pid: ", 1)[1].split()[0])


def test_a_reload_mid_canary_keeps_the_weights_and_the_split(
    canary: dict[str, Any], reliability: Record
) -> None:
    router = canary["router"]
    load = Load(canary["front"])
    try:
        wait_for(lambda: len(load.answers) >= 100, "traffic before the reload", timeout_s=30)
        old_worker = worker_pid(canary)
        started = time.monotonic()
        router.reload()  # the router's own reload: new workers, same master, weights re-applied
        reloaded = time.monotonic()
        wait_for(lambda: split(load.answers, reloaded)[0] >= SAMPLE,
                 f"{SAMPLE} answers after the reload", timeout_s=60)  # fmt: skip
    finally:
        load.stop()
    reported = weights(canary)
    served, share = split(load.answers, reloaded)
    failed = load.failed + load.versions["error"]
    retried = [t for t in load.retries if t >= started]
    reliability(Outcome(
        fault="HAProxy reloaded (SIGUSR2 to its master) mid-canary at 25 %",
        when=f"canary at {SHARE} %, {len(load.answers)} GETs streaming",
        happened=(f"worker {old_worker} replaced by {worker_pid(canary)} in "
                  f"{reloaded - started:.2f} s; router reports {reported}, canary served "
                  f"{share:.1f} % of {served} answers after; {failed} requests failed, "
                  f"{len(retried)} retried once on a closed keep-alive connection"),
        lost=0 if reported.get("canary") == SHARE else 1, doubled=0, half_done=failed,
        recovery_s=round(reloaded - started, 2),
    ))  # fmt: skip
    assert worker_pid(canary) != old_worker  # it really reloaded
    assert reported == {"primary": 100 - SHARE, "canary": SHARE}
    assert abs(share - SHARE) <= TOLERANCE, (share, served)
    assert failed == 0, load.errors


def start_from_the_file(p: dict[str, Any]) -> None:
    """Start HAProxy from haproxy.cfg as it is, the way a supervisor (or a person) would:
    no render by the router first."""
    binary = shutil.which("haproxy")
    assert binary, "haproxy is missing: apt-get install haproxy"
    router = p["router"]
    processes.start("haproxy", [binary, "-W", "-db", "-f", str(router.config_file)],
                    port=router.stats_port)  # fmt: skip


RESTARTS = {  # id: (how, described)
    "router": (lambda p: p["router"].start(), "the router (as `tenantry up` does)"),
    "config-file": (start_from_the_file, "haproxy -f haproxy.cfg (as a supervisor would)"),
}


@pytest.mark.parametrize("restart_by", list(RESTARTS))
def test_a_restart_mid_canary_keeps_the_weights_and_the_split(
    canary: dict[str, Any], reliability: Record, restart_by: str
) -> None:
    load = Load(canary["front"])
    try:
        wait_for(lambda: len(load.answers) >= 100, "traffic before the restart", timeout_s=30)
        master = processes.running("haproxy")
        assert master is not None
        worker = worker_pid(canary)
        os.kill(master.pid, signal.SIGKILL)
        killed = time.monotonic()
        # The worker follows its master out; until it has, a new master would share the port.
        wait_for(lambda: not processes.alive(worker), "the old worker to exit", timeout_s=10)
        wait_for(lambda: any(t > killed and v == "failed" for t, v in load.answers),
                 "a request to fail while HAProxy is down", timeout_s=10)  # fmt: skip
        restarted = time.monotonic()
        RESTARTS[restart_by][0](canary)
        wait_for(lambda: any(t > restarted and v in ("primary", "canary") for t, v in load.answers),
                 "a request served after the restart", timeout_s=30)  # fmt: skip
        whole = time.monotonic()
        wait_for(lambda: split(load.answers, whole)[0] >= SAMPLE,
                 f"{SAMPLE} answers after the restart", timeout_s=60)  # fmt: skip
    finally:
        load.stop()
    reported = weights(canary)
    served, share = split(load.answers, whole)
    down = [v for t, v in load.answers if killed <= t <= whole and v in ("failed", "error")]
    failed_after = [v for t, v in load.answers if t > whole and v in ("failed", "error")]
    kept = reported == {"primary": 100 - SHARE, "canary": SHARE}
    reliability(Outcome(
        fault=f"HAProxy's master SIGKILLed mid-canary at {SHARE} %, "
              f"started again by {RESTARTS[restart_by][1]}",
        when=f"canary at {SHARE} %, {len(load.answers)} GETs streaming",
        happened=(f"{len(down)} requests failed in the {whole - killed:.2f} s it was down; "
                  f"after the restart the router reports {reported} and the canary served "
                  f"{share:.1f} % of {served} answers"),
        lost=0 if kept else 1, doubled=0, half_done=0, recovery_s=round(whole - restarted, 2),
    ))  # fmt: skip
    assert kept, reported
    assert abs(share - SHARE) <= TOLERANCE, (share, served)
    assert not failed_after, load.errors
