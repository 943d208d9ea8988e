"""The monitoring stack as `tenantry up` runs it — real Prometheus, Alertmanager and
otelcol-tenantry with the generated configuration — delivering to the stand-in Slack,
PagerDuty, SMTP and Splunk HEC receivers.

Tenants (a copy of the example repository, changed on disk):
* payments (A): Slack, email, PagerDuty; its api exposes ``demo_failing 1`` (its own
  rule alerts on it) and a forged ``orders_failing{tenant="checkout"} 1``.
* checkout (B): Slack; sample limit 50 and a target exposing 200 series (refused);
  its own rule alerts on ``orders_failing{tenant="checkout"}`` (must never fire).
* legacy (C): an invalid email address (its alerting is skipped).
* payments/ledger ships a rule selecting checkout's namespace (skipped).

Scrape targets are local HTTP servers: pods in kwok clusters run no containers.
"""

from __future__ import annotations

import json
import os
import shutil
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx2
import pytest
import yaml

from tenantry import processes
from tenantry.local import monitoring
from tenantry.observability import prometheus, secrets
from tenantry.spec import repository
from tests.integration.test_prometheus_limits import exporter
from tests.waiting import wait_for

EXAMPLE = Path(__file__).resolve().parents[2] / "examples" / "platform-repo"
PD_KEY = "0123456789abcdef0123456789abcdef"


def edit_yaml(path: Path, change: Callable[[dict[str, Any]], None]) -> None:
    doc = yaml.safe_load(path.read_text())
    change(doc)
    path.write_text(yaml.safe_dump(doc, sort_keys=False))


def make_repo(root: Path) -> Path:
    shutil.copytree(EXAMPLE, root)
    edit_yaml(root / "platform.yaml", lambda d: d.update(
        alerts={"slack": {"name": "platform-alerts", "key": "webhook-url"}}))  # fmt: skip
    edit_yaml(root / "tenants" / "checkout.yaml", lambda d: d.update(
        monitoring={"sampleLimit": 50}))  # fmt: skip
    legacy = yaml.safe_load((root / "tenants" / "checkout.yaml").read_text())
    legacy.update(name="legacy", alerts={"email": ["oncall-at-legacy"]}, splunkIndex="legacy")
    legacy.pop("monitoring")
    (root / "tenants" / "legacy.yaml").write_text(yaml.safe_dump(legacy))
    rule = {
        "alert": "DemoFailing",
        "expr": "demo_failing > 0",
        "for": "0s",
        "labels": {"severity": "critical"},
        "annotations": {"summary": "demo is failing"},
    }
    (root / "services/payments/api/alerts.yaml").write_text(
        yaml.safe_dump({"groups": [{"name": "demo", "rules": [rule]}]})
    )
    forged = {
        "alert": "CheckoutOrdersFailing",
        "expr": 'orders_failing{tenant="checkout"} > 0',
        "for": "0s",
        "labels": {"severity": "critical"},
    }
    (root / "services/checkout/web/alerts.yaml").write_text(
        yaml.safe_dump({"groups": [{"name": "orders", "rules": [forged]}]})
    )
    prying = {"alert": "Pry", "expr": 'up{namespace="checkout"} == 0'}
    (root / "services/payments/ledger/alerts.yaml").write_text(
        yaml.safe_dump({"groups": [{"name": "pry", "rules": [prying]}]}))  # fmt: skip
    return root


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Any]]:
    state = tmp_path_factory.mktemp("monitoring-state")
    previous = os.environ.get("TENANTRY_STATE_DIR")
    os.environ["TENANTRY_STATE_DIR"] = str(state)
    repo = repository.load(make_repo(tmp_path_factory.mktemp("repo") / "platform-repo"))
    ports = monitoring.Ports.allocate()
    (state / "monitoring").mkdir()
    (state / "monitoring" / "ports.json").write_text(json.dumps(ports.__dict__))
    slack = f"http://127.0.0.1:{ports.receivers}/slack"
    stored = {("platform-alerts", "webhook-url"): f"{slack}/platform",
              ("payments-alerts", "webhook-url"): f"{slack}/payments",
              ("payments-pagerduty", "routing-key"): PD_KEY,
              ("checkout-alerts", "webhook-url"): f"{slack}/checkout"}  # fmt: skip
    values, problems = secrets.resolve(
        secrets.needs(repo), lambda ref: stored.get((ref.name, ref.key))
    )
    api = exporter('demo_failing 1\norders_failing{tenant="checkout"} 1\n')
    noisy = exporter("".join(f'noise{{i="{i}"}} 1\n' for i in range(200)))
    started = None
    try:
        # Targets first: the stack keeps the target files a render finds.
        targets = state / "monitoring" / "config" / "targets"
        targets.mkdir(parents=True)
        for tenant, server, service in (("payments", api, "api"), ("checkout", noisy, "web")):
            doc = prometheus.targets(
                tenant, [(f"127.0.0.1:{server.server_port}", service, f"{service}-0")]
            )
            (targets / f"{tenant}.json").write_text(json.dumps(doc))
        started, rendered = monitoring.start(repo, secret_values=values, secret_problems=problems)
        yield {"stack": started, "rendered": rendered, "ports": ports, "state": state,
               "repo": repo, "values": values, "problems": problems}  # fmt: skip
    finally:
        monitoring.stop()
        for server in (api, noisy):
            server.shutdown()
            server.server_close()
        if previous is None:
            os.environ.pop("TENANTRY_STATE_DIR", None)
        else:
            os.environ["TENANTRY_STATE_DIR"] = previous


def received(stack: dict[str, Any], kind: str) -> list[dict[str, Any]]:
    response = httpx2.get(f"{stack['stack'].receivers}/received/{kind}", timeout=5)
    return list(response.json())


def slack_alerts(stack: dict[str, Any], channel: str) -> set[str]:
    names = set()
    for record in received(stack, "slack"):
        if record["path"] == f"/slack/{channel}":
            for attachment in record["message"].get("attachments", []):
                names.add(attachment["title"].split(" ")[0])
    return names


def test_alerts_reach_the_tenants_own_receivers_with_their_payloads(stack) -> None:
    wait_for(lambda: "DemoFailing" in slack_alerts(stack, "payments"), "payments' Slack")
    events = wait_for(lambda: [r["event"] for r in received(stack, "pagerduty")],
                      "payments' PagerDuty event")  # fmt: skip
    event = events[0]
    assert event["routing_key"] == PD_KEY
    assert event["event_action"] == "trigger"
    assert "DemoFailing" in event["payload"]["summary"]
    assert event["payload"]["severity"] in ("critical", "error", "warning", "info")
    mails = wait_for(lambda: received(stack, "email"), "payments' email")
    assert mails[0]["to"] == ["payments-oncall@acme.example"]
    assert "DemoFailing" in mails[0]["subject"]


def test_a_noisy_tenant_is_refused_and_both_it_and_the_platform_are_told(stack) -> None:
    wait_for(lambda: "TenantOverSampleLimit" in slack_alerts(stack, "checkout"), "checkout told")
    wait_for(lambda: "TenantOverSampleLimit" in slack_alerts(stack, "platform"), "platform told")
    # payments' own series keep flowing while checkout's scrape is refused.
    query = httpx2.get(f"{stack['stack'].prometheus}/api/v1/query",
                       params={"query": "up"}, timeout=5).json()  # fmt: skip
    up = {r["metric"]["tenant"]: r["value"][1] for r in query["data"]["result"]
          if "tenant" in r["metric"]}  # fmt: skip
    assert up == {"payments": "1", "checkout": "0"}


def rule_iterations(stack: Any) -> float:
    """How many rule group evaluations Prometheus has done, all groups together (from its
    own /metrics: it need not scrape itself)."""
    text = httpx2.get(f"{stack['stack'].prometheus}/metrics", timeout=5).text
    return sum(float(line.rsplit(" ", 1)[1]) for line in text.splitlines()
               if line.startswith("prometheus_rule_group_iterations_total{"))  # fmt: skip


def rule_groups(stack: Any) -> int:
    """How many rule groups Prometheus evaluates."""
    rules = httpx2.get(f"{stack['stack'].prometheus}/api/v1/rules", timeout=5).json()
    return len(rules["data"]["groups"])


def test_forged_labels_and_other_tenants_alerts_never_reach_a_tenant(stack) -> None:
    wait_for(lambda: "DemoFailing" in slack_alerts(stack, "payments"), "payments' alert")
    wait_for(lambda: "TenantOverSampleLimit" in slack_alerts(stack, "checkout"), "checkout's")
    # Let several rule evaluations and notification rounds pass before asserting that no
    # other alert arrived: counted, not assumed from a sleep.
    evaluated = rule_iterations(stack)
    wait_for(lambda: rule_iterations(stack) >= evaluated + 5 * rule_groups(stack),
             "five more rounds of rule evaluation", timeout_s=60, poll_s=0.5)  # fmt: skip
    # Only checkout's own trouble: its refused scrape (ScrapeFailing is its web's rule).
    assert slack_alerts(stack, "checkout") <= {"TenantOverSampleLimit", "ScrapeFailing"}
    assert slack_alerts(stack, "payments") == {"DemoFailing"}
    alerts = httpx2.get(f"{stack['stack'].prometheus}/api/v1/alerts", timeout=5).json()
    assert "CheckoutOrdersFailing" not in {a["labels"]["alertname"]
                                           for a in alerts["data"]["alerts"]}  # fmt: skip


def test_invalid_fragments_are_reported_and_skipped_while_the_rest_work(stack) -> None:
    problems = {(p.tenant, p.field) for p in stack["rendered"].problems}
    assert ("legacy", "alerts.email[0]") in problems
    assert ("payments", "groups[0].rules[0].expr") in problems  # selects checkout
    assert stack["rendered"].alerting_skipped == ("legacy",)
    custom = Path(stack["stack"].config_dir) / "rules" / "custom"
    assert sorted(p.name for p in custom.iterdir()) == ["checkout.web.yml", "payments.api.yml"]
    wait_for(lambda: "DemoFailing" in slack_alerts(stack, "payments"), "A still alerted")


def pod_log(stack: dict[str, Any], namespace: str, pod: str, lines: list[str]) -> None:
    directory = Path(stack["stack"].pod_logs) / f"{namespace}_{pod}_0a1b2c3d" / "app"
    directory.mkdir(parents=True, exist_ok=True)
    with (directory / "0.log").open("a") as out:
        for line in lines:
            out.write(f"2026-11-22T06:00:00.000000000Z stdout F {line}\n")


def hec_lines(stack: dict[str, Any]) -> dict[str, str]:
    return {r["event"]: r["index"] for r in received(stack, "hec")}


def test_container_logs_reach_each_tenants_index(stack) -> None:
    pod_log(stack, "payments", "api-0", ["payments says hello"])
    pod_log(stack, "checkout", "web-0", ["checkout says hello"])
    pod_log(stack, "legacy", "app-0", ["legacy says hello"])
    pod_log(stack, "kube-system", "dns-0", ["platform says hello"])
    lines = wait_for(lambda: len(hec_lines(stack)) >= 4 and hec_lines(stack), "four lines")
    assert lines["payments says hello"] == "payments"
    assert lines["checkout says hello"] == "checkout"
    assert lines["legacy says hello"] == "legacy"
    assert lines["platform says hello"] == "kubernetes"  # platform default index


def test_no_line_is_lost_while_the_receiver_is_down_for_30_seconds(stack) -> None:
    before = len(received(stack, "hec"))
    assert processes.stop(monitoring.RECEIVERS)
    try:
        sent = [f"outage line {i}" for i in range(200)]
        for start in range(0, 200, 20):
            pod_log(stack, "payments", "api-1", sent[start : start + 20])
            time.sleep(3)  # 30 s of writing while nothing receives
    finally:
        monitoring.start_receivers(stack["ports"])
    arrived = wait_for(
        lambda: (got := {r["event"] for r in received(stack, "hec")[before:]}) >= set(sent) and got,
        "every line written during the outage", timeout_s=60,
    )  # fmt: skip
    assert set(sent) <= arrived


def test_apply_rewrites_the_configuration_and_reloads_every_server(stack) -> None:
    config = Path(stack["stack"].config_dir)
    before = (config / "prometheus.yml").stat().st_mtime_ns
    rendered = monitoring.apply(stack["repo"], secret_values=stack["values"],
                                secret_problems=stack["problems"])  # fmt: skip
    assert (config / "prometheus.yml").stat().st_mtime_ns > before
    assert {p.tenant for p in rendered.problems} == {"legacy", "payments"}
    metrics = httpx2.get(f"{stack['stack'].prometheus}/metrics", timeout=5).text
    assert "prometheus_config_last_reload_successful 1" in metrics
    targets = json.loads((config / "targets" / "payments.json").read_text())
    assert targets[0]["labels"]["service"] == "api"  # target files survive a render
