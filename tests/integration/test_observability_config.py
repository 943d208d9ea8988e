"""Generated Prometheus and Alertmanager configuration passes the real validators (promtool
of the pinned Prometheus, amtool from Debian's package) and routes each tenant's alerts to
its own receivers."""

from __future__ import annotations

import dataclasses
import json
import shutil
import subprocess
from pathlib import Path

import pytest
import yaml

from tenantry.monitoring import files
from tenantry.observability import alertmanager, config, pods, prometheus, promql
from tenantry.observability.config import Settings
from tenantry.spec import repository
from tenantry.tools import install

EXAMPLE = Path(__file__).resolve().parents[2] / "examples" / "platform-repo"
DATA = Path(__file__).resolve().parents[1] / "data" / "prometheus"


@pytest.fixture
def promtool() -> str:
    # The monitoring stack's own: Debian's promtool cannot read Kubernetes discovery.
    return str(install.binary("promtool"))


def test_generated_config_and_rules_pass_promtool(promtool: str, tmp_path: Path) -> None:
    repo = repository.load(EXAMPLE)
    rules = tmp_path / "tenants.rules.yml"
    rules.write_text(yaml.safe_dump(prometheus.rule_groups(repo), sort_keys=False))
    targets = tmp_path / "targets"
    targets.mkdir()
    for tenant in repo.tenants:
        doc = prometheus.targets(tenant.name, [("127.0.0.1:9", "api", "api-0")])
        (targets / f"{tenant.name}.json").write_text(json.dumps(doc))
    config = tmp_path / "prometheus.yml"
    generated = prometheus.config(repo, rule_files=[str(rules)], targets_dir=str(targets))
    config.write_text(yaml.safe_dump(generated, sort_keys=False))

    checked = subprocess.run(
        [promtool, "check", "config", str(config)], capture_output=True, text=True, check=False
    )
    output = checked.stdout + checked.stderr
    assert checked.returncode == 0, output
    assert "SUCCESS" in output
    # 3 platform rules; 5 per descriptor service (SLOs + the rest), 3 for the own chart.
    assert "16 rules found" in output


def test_pod_discovery_through_clusters_apis_passes_promtool(promtool: str, tmp_path: Path) -> None:
    repo = repository.load(EXAMPLE)
    (tmp_path / "ca.crt").write_text("not checked by promtool, only that it exists\n")
    (tmp_path / "token").write_text("a-token\n")
    access = [
        pods.ClusterAccess(cluster=name, api_server=f"https://127.0.0.1:{port}",
                           ca_file=str(tmp_path / "ca.crt"), token_file=str(tmp_path / "token"),
                           node_pattern=f"{name}-real-[0-9]+")
        for name, port in (("staging", 6443), ("prod-primary", 6444))
    ]  # fmt: skip
    planned = config.plan(repo, tmp_path, Settings(clusters=access), own_rules={})
    (document,) = planned.documents["prometheus.yml"]
    (tmp_path / "targets").mkdir()
    for name, empty in planned.targets.items():
        (tmp_path / name).write_text(json.dumps(empty))
    (tmp_path / "prometheus.yml").write_text(yaml.safe_dump(document, sort_keys=False))
    checked = subprocess.run([promtool, "check", "config", str(tmp_path / "prometheus.yml")],
                             capture_output=True, text=True, check=False)  # fmt: skip
    assert checked.returncode == 0, checked.stdout + checked.stderr
    jobs = [j["job_name"] for j in document["scrape_configs"]]
    assert "tenant-payments/staging" in jobs and "tenant-checkout/prod-primary" in jobs


def test_generated_alertmanager_config_passes_amtool_and_routes_by_tenant(tmp_path: Path) -> None:
    amtool = shutil.which("amtool")
    assert amtool, "amtool is missing: apt-get install prometheus-alertmanager"
    repo = repository.load(EXAMPLE)
    planned = alertmanager.plan(repo, secrets_dir=str(tmp_path / "secrets"))
    assert planned.problems == ()
    config = tmp_path / "alertmanager.yml"
    config.write_text(yaml.safe_dump(planned.config, sort_keys=False))

    checked = subprocess.run(
        [amtool, "check-config", str(config)], capture_output=True, text=True, check=False
    )
    assert checked.returncode == 0, checked.stdout + checked.stderr

    def routes(*labels: str) -> str:
        done = subprocess.run([amtool, "config", "routes", "test", f"--config.file={config}", *labels],
                              capture_output=True, text=True, check=False)  # fmt: skip
        return done.stdout.strip()

    assert (
        routes("tenant=payments", "severity=critical")
        == "payments-pagerduty,payments-slack,payments-email"
    )
    assert routes("tenant=payments", "severity=warning") == "payments-slack,payments-email"
    assert routes("tenant=checkout", "severity=critical") == "checkout-slack"
    assert routes("tenant=ghost") == "platform"


def test_a_tenant_with_a_bad_contact_is_skipped_and_the_others_keep_their_alerts(
    tmp_path: Path,
) -> None:
    repo = repository.load(EXAMPLE)
    broken = repo.tenant("checkout").model_copy(
        update={
            "alerts": repo.tenant("checkout").alerts.model_copy(
                update={"email": ("not-an-address",)}
            )
        }
    )
    repo = dataclasses.replace(repo, tenants=(broken, repo.tenant("payments")))
    planned = alertmanager.plan(repo, secrets_dir="/secrets")
    assert [str(p) for p in planned.problems] == [
        "tenants/checkout.yaml: alerts.email[0]: 'not-an-address' is not an email address "
        "(write it as name@example.com) (tenant checkout: fragment skipped)"
    ]
    assert [r["matchers"] for r in planned.config["route"]["routes"]][1:] == [['tenant="payments"']]


def test_default_slo_alerts_pass_their_promtool_rule_tests(promtool: str, tmp_path: Path) -> None:
    repo = repository.load(EXAMPLE)
    (tmp_path / "tenants.rules.yml").write_text(
        yaml.safe_dump(prometheus.rule_groups(repo), sort_keys=False)
    )
    shutil.copy(DATA / "slo_alerts.test.yml", tmp_path)
    tested = subprocess.run(
        [promtool, "test", "rules", "slo_alerts.test.yml"],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        check=False,
    )
    assert tested.returncode == 0, tested.stdout + tested.stderr
    assert "SUCCESS" in tested.stdout + tested.stderr


def test_a_rule_promtool_rejects_is_skipped_and_the_rest_is_installed(tmp_path: Path) -> None:
    root = tmp_path / "repo"
    shutil.copytree(EXAMPLE, root)
    broken = {"alert": "Broken", "expr": "rate(http_requests_total[5m"}
    (root / "services/payments/api/alerts.yaml").write_text(
        yaml.safe_dump({"groups": [{"name": "g", "rules": [broken]}]})
    )
    rendered = files.write(repository.load(root), tmp_path / "out", Settings())
    (problem,) = rendered.problems
    assert problem.file == "services/payments/api/alerts.yaml"
    assert "promtool rejects it" in problem.message
    assert not (tmp_path / "out" / "rules" / "custom" / "payments.api.yml").exists()
    assert (tmp_path / "out" / "prometheus.yml").exists()
    assert not list(tmp_path.glob(".out-*"))  # the staging directory is gone


@pytest.mark.parametrize(
    "hostile", ['web"} or up{tenant="payments', 'web\\"} or up{tenant=\\"payments', "web\\"]
)
def test_a_hostile_service_name_stays_one_label_value_for_promtool(
    promtool: str, tmp_path: Path, hostile: str
) -> None:
    # The loader refuses such a directory; this builds the source past it, to show the
    # generated rules would still read checkout's own series only.
    source = dataclasses.replace(repository.load(EXAMPLE).service("checkout/web"), name=hostile)
    (tmp_path / "rules.yml").write_text(
        yaml.safe_dump({"groups": [prometheus.service_rules(source, hold="0s")]})
    )
    checked = subprocess.run([promtool, "check", "rules", "rules.yml"], cwd=tmp_path,
                             capture_output=True, text=True, check=False)  # fmt: skip
    assert checked.returncode == 0, checked.stdout + checked.stderr
    own = f"up{{{promql.matchers(tenant='checkout', service=hostile)}}}"
    tests = {
        "rule_files": ["rules.yml"],
        "evaluation_interval": "1m",
        "tests": [{
            "interval": "1m",
            "input_series": [
                # payments is down; only the series with checkout's odd name is checkout's.
                {"series": 'up{tenant="payments",service="api"}', "values": "0x5"},
                {"series": 'up{tenant="payments"}', "values": "0x5"},
                {"series": own, "values": "0x5"},
            ],
            "alert_rule_test": [{
                "eval_time": "2m",
                "alertname": "ScrapeFailing",
                "exp_alerts": [{
                    "exp_labels": {"tenant": "checkout", "service": hostile,
                                   "severity": "warning"},
                    "exp_annotations": {
                        "summary": f"checkout/{hostile}: a target is down or over its "
                        "sample limit",
                    },
                }],
            }],
        }],
    }  # fmt: skip
    (tmp_path / "hostile.test.yml").write_text(yaml.safe_dump(tests, sort_keys=False))
    tested = subprocess.run([promtool, "test", "rules", "hostile.test.yml"], cwd=tmp_path,
                            capture_output=True, text=True, check=False)  # fmt: skip
    assert tested.returncode == 0, tested.stdout + tested.stderr
