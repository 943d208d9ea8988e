"""Prometheus configuration planned from the tenant files and descriptors (pure)."""

from __future__ import annotations

from pathlib import Path

from tenantry.observability import prometheus
from tenantry.spec import models, repository

EXAMPLE = Path(__file__).resolve().parents[2] / "examples" / "platform-repo"
REPO = repository.load(EXAMPLE)


def test_each_tenant_has_a_job_scoped_to_its_namespace_with_limits() -> None:
    jobs = {j["job_name"]: j for j in prometheus.scrape_configs(REPO)}
    assert set(jobs) == {"tenant-checkout", "tenant-payments"}
    job = jobs["tenant-payments"]
    assert job["file_sd_configs"] == [{"files": ["targets/payments.json"]}]
    default = REPO.platform.defaults.monitoring
    assert (job["sample_limit"], job["label_limit"], job["target_limit"]) == (
        default.sample_limit, default.label_limit, default.target_limit,
    )  # fmt: skip


def test_tenant_labels_are_set_last_and_target_labels_win() -> None:
    job = prometheus.scrape_job(REPO.tenant("payments"), REPO.platform)
    assert job["honor_labels"] is False
    assert job["relabel_configs"] == [
        {"target_label": "namespace", "replacement": "payments"},
        {"target_label": "tenant", "replacement": "payments"},
    ]


def test_a_tenant_quota_overrides_the_platform_default() -> None:
    tenant = REPO.tenant("payments").model_copy(
        update={"monitoring": models.MonitoringQuota(sample_limit=500)}
    )
    assert prometheus.scrape_job(tenant, REPO.platform)["sample_limit"] == 500


def test_slo_rules_follow_the_descriptor() -> None:
    group = prometheus.service_rules(REPO.service("payments/api"))
    rules = {r["alert"]: r for r in group["rules"]}
    assert rules["SuccessRateBelowObjective"]["expr"].endswith(") > 0.001")  # 99.9 %
    assert rules["LatencyAboveObjective"]["expr"].endswith("> 0.3")  # 300 ms
    assert all(r["labels"]["tenant"] == "payments" for r in rules.values())
    assert {"PodsNotReady", "DeployFailed", "ScrapeFailing"} <= set(rules)
    # An own chart has no descriptor, so no SLOs: only the rules every service gets.
    own = prometheus.service_rules(REPO.service("checkout/web"))
    assert {r["alert"] for r in own["rules"]} == {"PodsNotReady", "DeployFailed", "ScrapeFailing"}


def test_hold_shortens_every_pending_period() -> None:
    groups = prometheus.rule_groups(REPO, hold="0s")["groups"]
    holds = {r.get("for", "0s") for g in groups for r in g["rules"]}
    assert holds == {"0s"}
    assert groups[0]["name"] == "tenantry.platform"


def test_platform_alerts_about_a_tenant_also_notify_the_platform() -> None:
    rules = {r["alert"]: r for r in prometheus.platform_rules()["rules"]}
    assert rules["TenantOverSampleLimit"]["labels"]["notify"] == "platform"
    assert "scrape_sample_limit" in rules["TenantOverSampleLimit"]["expr"]


def test_config_points_at_alertmanager_and_scrapes_the_platform() -> None:
    config = prometheus.config(REPO, rule_files=[], targets_dir="t",
                               alertmanagers=["127.0.0.1:9093"], platform_targets=["127.0.0.1:9"])  # fmt: skip
    assert config["alerting"]["alertmanagers"][0]["static_configs"][0]["targets"] == [
        "127.0.0.1:9093"
    ]
    assert config["scrape_configs"][-1]["job_name"] == prometheus.PLATFORM_JOB


def test_targets_document() -> None:
    assert prometheus.targets("payments", [("127.0.0.1:8080", "api", "api-1")]) == [
        {"targets": ["127.0.0.1:8080"], "labels": {"service": "api", "pod": "api-1"}}
    ]
