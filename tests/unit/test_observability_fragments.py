"""Tenant fragments of the monitoring configuration (pure): own rules, secrets, log routing,
and the stand-in receivers' parsing of the wire formats."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest
import yaml

from tenantry.local import receivers
from tenantry.observability import alertmanager, config, logs, rules, secrets
from tenantry.observability.problems import Problem
from tenantry.spec import models, repository

EXAMPLE = Path(__file__).resolve().parents[2] / "examples" / "platform-repo"
REPO = repository.load(EXAMPLE)


def service_with_rules(tmp_path: Path, document: object) -> repository.ServiceSource:
    (tmp_path / rules.FILE_NAME).write_text(yaml.safe_dump(document))
    return dataclasses.replace(REPO.service("payments/api"), directory=tmp_path)


def test_own_rules_are_pinned_to_the_tenant(tmp_path: Path) -> None:
    rule = {"alert": "QueueBacklog", "expr": 'queue_depth{tenant="payments"} > 100',
            "for": "5m", "labels": {"severity": "warning", "tenant": "checkout"}}  # fmt: skip
    groups, problems = rules.service_rules(service_with_rules(tmp_path, {"groups": [
        {"name": "queues", "rules": [rule]}]}))  # fmt: skip
    assert problems == []
    assert groups[0]["name"] == "payments.api.queues"
    labels = groups[0]["rules"][0]["labels"]
    assert labels == {"severity": "warning", "tenant": "payments", "namespace": "payments",
                      "service": "api"}  # fmt: skip


@pytest.mark.parametrize(
    ("rule", "field", "words"),
    [
        ({"alert": "X", "expr": 'up{namespace="checkout"} == 0'}, "expr", "own tenant"),
        ({"alert": "X", "expr": 'up{tenant=~".+"} == 0'}, "expr", "own tenant"),
        ({"alert": "X", "expr": "up == 0", "for": "five minutes"}, "for", "duration"),
        ({"alert": "X"}, "expr", "missing"),
        ({"alert": "X", "record": "y", "expr": "up"}, "", "exactly one"),
        ({"alert": "X", "expr": "up", "labels": {"a": 1}}, "labels", "strings"),
        ({"alert": "X", "expr": "up", "severity": "page"}, "severity", "not a rule field"),
    ],
)
def test_bad_own_rules_name_the_field_and_skip_the_service(
    tmp_path: Path, rule: dict, field: str, words: str
) -> None:
    groups, problems = rules.service_rules(service_with_rules(tmp_path, {"groups": [
        {"name": "g", "rules": [rule]}]}))  # fmt: skip
    assert groups == []
    (problem,) = problems
    assert problem.tenant == "payments"
    assert problem.file == "services/payments/api/alerts.yaml"
    assert problem.field == f"groups[0].rules[0]{'.' + field if field else ''}"
    assert words in problem.message


def test_a_service_without_own_rules_has_none() -> None:
    assert rules.service_rules(REPO.service("payments/api")) == ([], [])


def test_secrets_resolve_to_files_and_problems_name_the_secret_not_its_value() -> None:
    stored = {("payments-alerts", "webhook-url"): "https://hooks.slack.com/services/T/B/x",
              ("payments-pagerduty", "routing-key"): "not a key!",
              ("checkout-alerts", "webhook-url"): "https://hooks.slack.com/services/T/B/y",
              ("platform-alerts", "webhook-url"): "https://hooks.slack.com/services/T/B/z"}  # fmt: skip
    values, problems = secrets.resolve(
        secrets.needs(REPO), lambda ref: stored.get((ref.name, ref.key))
    )
    assert values == {"payments-slack": stored[("payments-alerts", "webhook-url")],
                      "checkout-slack": stored[("checkout-alerts", "webhook-url")],
                      "platform-slack": stored[("platform-alerts", "webhook-url")]}  # fmt: skip
    (problem,) = problems
    assert (problem.tenant, problem.field) == ("payments", "alerts.pagerduty")
    assert "not a key" not in str(problem)
    assert "payments-pagerduty" in str(problem)


def test_a_missing_secret_skips_only_that_tenants_alerting() -> None:
    _, problems = secrets.resolve(secrets.needs(REPO), lambda ref: None)
    planned = alertmanager.plan(REPO, secrets_dir="/s", skip=problems)
    routed = {r["matchers"][0] for r in planned.config["route"]["routes"]}
    assert routed == {'notify="platform"'}
    # The platform team's own receiver is missing too; it is reported, not a tenant skipped.
    assert {p.tenant for p in planned.problems} == {"payments", "checkout", "platform"}


def test_platform_alerts_route_first_and_continue() -> None:
    first = alertmanager.plan(REPO, secrets_dir="/s").config["route"]["routes"][0]
    assert first["matchers"] == ['notify="platform"']
    assert first["continue"] is True


def test_logs_are_routed_by_namespace_to_each_tenants_index() -> None:
    shipper = logs.Shipper("http://127.0.0.1:1/services/collector", "/state", 13133)
    config = logs.collector_config(REPO, shipper)
    table = config["connectors"]["routing"]["table"]
    assert [r["pipelines"] for r in table] == [["logs/checkout"], ["logs/payments"]]
    assert table[1]["condition"] == 'attributes["k8s.namespace.name"] == "payments"'
    exporter = config["exporters"]["splunk_hec/payments"]
    assert exporter["index"] == "payments"
    assert exporter["token"] == "${env:SPLUNK_HEC_TOKEN}"  # never the token itself
    assert exporter["sending_queue"]["storage"] == "file_storage/queue"
    assert config["exporters"]["splunk_hec/platform"]["index"] == "kubernetes"


def test_a_tenant_without_an_index_uses_the_platform_default() -> None:
    tenant = REPO.tenant("payments").model_copy(update={"splunk_index": None})
    assert logs.index(tenant, REPO.platform) == REPO.platform.defaults.splunk_index


def test_an_invalid_index_name_is_refused() -> None:
    with pytest.raises(ValueError, match="splunkIndex"):
        models.Tenant.model_validate(
            {**REPO.tenant("payments").model_dump(by_alias=True), "splunkIndex": "Bad Index"}
        )


def test_hec_bodies_are_concatenated_events() -> None:
    body = b'{"event": "a", "index": "x"}\n{"event": {"k": 1}}'
    assert [e["event"] for e in receivers.hec_events(body)] == ["a", {"k": 1}]
    with pytest.raises(ValueError, match="event"):
        list(receivers.hec_events(b'{"index": "x"}'))


def test_pagerduty_events_are_checked_like_the_events_api() -> None:
    good = {"routing_key": "k" * 32, "event_action": "trigger",
            "payload": {"summary": "s", "source": "am", "severity": "critical"}}  # fmt: skip
    assert receivers.pagerduty_errors(good) == []
    assert receivers.pagerduty_errors({**good, "event_action": "fire"})
    assert receivers.pagerduty_errors({**good, "payload": {"summary": "s"}})
    assert receivers.pagerduty_errors({"routing_key": "k", "event_action": "resolve"})


def test_an_unknown_receiver_type_skips_only_that_tenants_alerting() -> None:
    document = REPO.tenant("checkout").model_dump(by_alias=True, exclude_none=True)
    document["alerts"] = {**document["alerts"], "teams": {"channel": "checkout"}}
    checkout = models.Tenant.model_validate(document)  # loads: the planner reports it
    repo = dataclasses.replace(REPO, tenants=(checkout, REPO.tenant("payments")))
    planned = alertmanager.plan(repo, secrets_dir="/s")
    (problem,) = planned.problems
    assert (problem.tenant, problem.field) == ("checkout", "alerts.teams")
    assert "slack, email, pagerduty" in problem.message
    routed = [r["matchers"] for r in planned.config["route"]["routes"]]
    assert ['tenant="payments"'] in routed
    assert ['tenant="checkout"'] not in routed


def test_a_missing_platform_secret_leaves_the_platform_receiver_empty() -> None:
    _, problems = secrets.resolve(secrets.needs(REPO), lambda ref: None)
    planned = alertmanager.plan(REPO, secrets_dir="/s", skip=problems)
    receivers = {r["name"] for r in planned.config["receivers"]}
    assert receivers == {"platform"}  # the catch-all with no integrations, still valid


def test_the_whole_directory_is_planned_without_touching_it() -> None:
    out = Path("/srv/monitoring")
    problem = Problem("payments", "tenants/payments.yaml", "alerts.slack", "missing")
    plan = config.plan(REPO, out, config.Settings(), own_rules={}, secret_problems=[problem])
    assert {"prometheus.yml", "alertmanager.yml", "rules/platform.yml"} <= set(plan.documents)
    assert "collector.yaml" not in plan.documents  # no shipper configured
    assert {f"operator/{t.name}.yaml" for t in REPO.tenants} <= set(plan.documents)
    assert set(plan.targets) == {f"targets/{t.name}.json" for t in REPO.tenants}
    (prometheus_yml,) = plan.documents["prometheus.yml"]
    assert str(out / "rules" / "*.yml") in prometheus_yml["rule_files"]
    assert not out.exists()


def test_each_clusters_kubelet_log_dirs_get_a_receiver_tagging_the_cluster() -> None:
    nodes = (
        logs.NodeLogs("staging", "/state/staging/real/0/pod-logs"),
        logs.NodeLogs("staging", "/state/staging/real/1/pod-logs/"),
        logs.NodeLogs("prod", "/state/prod/real/0/pod-logs"),
    )
    shipper = logs.Shipper("http://127.0.0.1:1/services/collector", "/state", 13133,
                           log_glob="/demo/*/*/*.log", nodes=nodes)  # fmt: skip
    config = logs.collector_config(REPO, shipper)
    found = config["receivers"]
    assert list(found) == ["file_log", "file_log/prod", "file_log/staging"]
    assert found["file_log"]["include"] == ["/demo/*/*/*.log"]
    assert "resource" not in found["file_log"]
    staging = found["file_log/staging"]
    assert staging["include"] == [
        "/state/staging/real/0/pod-logs/*/*/*.log", "/state/staging/real/1/pod-logs/*/*/*.log",
    ]  # fmt: skip
    assert staging["resource"] == {"k8s.cluster.name": "staging"}
    # The CRI lines are parsed, and namespace/pod/container come from the path, as before.
    assert staging["operators"] == [{"type": "container", "id": "container-parser"}]
    assert staging["storage"] == "file_storage/offsets"
    # Every input goes through the one routing connector: tenants' logs by namespace.
    assert config["service"]["pipelines"]["logs/in"]["receivers"] == list(found)


def test_without_real_nodes_the_shipper_reads_as_before() -> None:
    shipper = logs.Shipper("http://127.0.0.1:1/services/collector", "/state", 13133)
    config = logs.collector_config(REPO, shipper)
    assert list(config["receivers"]) == ["file_log"]
    assert config["service"]["pipelines"]["logs/in"]["receivers"] == ["file_log"]
