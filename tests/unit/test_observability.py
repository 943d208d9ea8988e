"""Prometheus configuration planned from the tenant files and descriptors (pure)."""

from __future__ import annotations

import dataclasses
import re
from pathlib import Path

from tenantry.observability import config, pods, prometheus
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


ACCESS = pods.ClusterAccess(
    cluster="staging", api_server="https://127.0.0.1:6443", ca_file="/m/staging/ca.crt",
    token_file="/m/staging/token", node_pattern="staging-real-[0-9]+",
)  # fmt: skip


def test_pods_are_discovered_per_tenant_and_cluster_in_the_tenants_namespace_only() -> None:
    other = dataclasses.replace(ACCESS, cluster="prod-primary")
    jobs = pods.scrape_configs(REPO.tenants, REPO.platform, [ACCESS, other])
    assert [j["job_name"] for j in jobs] == [
        "tenant-checkout/prod-primary", "tenant-checkout/staging",
        "tenant-payments/prod-primary", "tenant-payments/staging",
    ]  # fmt: skip
    job = jobs[-1]
    (sd,) = job["kubernetes_sd_configs"]
    assert sd == {
        "role": "pod",
        "api_server": "https://127.0.0.1:6443",
        "namespaces": {"names": ["payments"]},
        "tls_config": {"ca_file": "/m/staging/ca.crt"},
        # A token file, read on every request: no key in the configuration.
        "authorization": {"type": "Bearer", "credentials_file": "/m/staging/token"},
    }
    default = REPO.platform.defaults.monitoring
    assert (job["sample_limit"], job["label_limit"], job["target_limit"]) == (
        default.sample_limit, default.label_limit, default.target_limit,
    )  # fmt: skip
    assert job["honor_labels"] is False


def test_pod_targets_are_the_metrics_port_of_live_pods_on_real_nodes() -> None:
    rules = pods.pod_scrape_job(REPO.tenant("payments"), REPO.platform, ACCESS)["relabel_configs"]
    keeps = {r["source_labels"][0]: r["regex"] for r in rules if r.get("action") == "keep"}
    # The port named http (where the charts put the app), or the app image's 8080.
    assert rules[0]["source_labels"] == [
        "__meta_kubernetes_pod_container_port_name", "__meta_kubernetes_pod_container_port_number",
    ]  # fmt: skip
    keep_port = re.compile(rules[0]["regex"])
    assert keep_port.fullmatch("http;3000") and keep_port.fullmatch(";8080")
    assert not keep_port.fullmatch("grpc;9090") and not keep_port.fullmatch("http2;80800")
    assert keeps == {
        "__meta_kubernetes_pod_container_port_name": "http;.*|.*;8080",
        "__meta_kubernetes_pod_phase": "Pending|Running",
        "__meta_kubernetes_pod_node_name": "staging-real-[0-9]+",
    }
    # Every keep comes before any label is set.
    assert [r.get("action") for r in rules[:3]] == ["keep"] * 3


def test_pod_labels_become_the_labels_rules_and_the_canary_select_on() -> None:
    rules = pods.pod_scrape_job(REPO.tenant("payments"), REPO.platform, ACCESS)["relabel_configs"]
    copied = [(r["source_labels"][0], r["target_label"]) for r in rules if "source_labels" in r
              and "target_label" in r]  # fmt: skip
    assert copied == [
        ("__meta_kubernetes_pod_label_app_kubernetes_io_name", "service"),
        ("__meta_kubernetes_pod_label_tenantry_dev_service", "service"),  # the chart's, wins
        ("__meta_kubernetes_pod_label_app_kubernetes_io_version", "version"),
        ("__meta_kubernetes_pod_name", "pod"),
        ("__meta_kubernetes_pod_node_name", "node"),
    ]
    # An unset pod label sets nothing (the app's own label then stays as it is).
    assert all(
        r["regex"] == "(.+)" for r in rules if r.get("target_label") in ("service", "version")
    )
    assert rules[-3:] == [
        {"target_label": "cluster", "replacement": "staging"},
        {"target_label": "namespace", "replacement": "payments"},
        {"target_label": "tenant", "replacement": "payments"},
    ]


def test_the_discovery_identity_reads_pods_and_nothing_else() -> None:
    objects = {o["kind"]: o for o in pods.discovery_identity("tenantry-monitoring")}
    assert objects["ServiceAccount"]["metadata"] == {
        "name": "prometheus-discovery", "namespace": "tenantry-monitoring",
    }  # fmt: skip
    assert objects["ClusterRole"]["rules"] == [
        {"apiGroups": [""], "resources": ["pods"], "verbs": ["get", "list", "watch"]}
    ]
    assert objects["ClusterRoleBinding"]["subjects"] == [
        {"kind": "ServiceAccount", "name": "prometheus-discovery",
         "namespace": "tenantry-monitoring"},
    ]  # fmt: skip


def test_the_platform_config_lists_pod_jobs_after_the_file_based_ones() -> None:
    settings = config.Settings(clusters=[ACCESS], platform_targets=["127.0.0.1:9"])
    plan = config.plan(REPO, Path("/srv/m"), settings, own_rules={})
    (document,) = plan.documents["prometheus.yml"]
    assert [j["job_name"] for j in document["scrape_configs"]] == [
        "tenant-checkout", "tenant-payments", "tenant-checkout/staging",
        "tenant-payments/staging", prometheus.PLATFORM_JOB,
    ]  # fmt: skip
    # A platform without such clusters (kwok only) has the file-based jobs as before.
    (plain,) = config.plan(REPO, Path("/srv/m"), config.Settings(), own_rules={}).documents[
        "prometheus.yml"
    ]
    assert not any("kubernetes_sd_configs" in j for j in plain["scrape_configs"])


def test_meta_label_names_follow_prometheus() -> None:
    assert (
        pods.meta_label("tenantry.dev/service")
        == "__meta_kubernetes_pod_label_tenantry_dev_service"
    )
    assert pods.meta_label("app.kubernetes.io/name") == (
        "__meta_kubernetes_pod_label_app_kubernetes_io_name"
    )
