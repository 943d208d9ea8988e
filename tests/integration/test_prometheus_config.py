"""The generated Prometheus configuration passes the real validator (promtool, Debian's package)."""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path

import pytest
import yaml

from tenantry.observability import prometheus
from tenantry.spec import repository

EXAMPLE = Path(__file__).resolve().parents[2] / "examples" / "platform-repo"


@pytest.fixture
def promtool() -> str:
    path = shutil.which("promtool")
    assert path, "promtool is missing: apt-get install prometheus (./run test installs it)"
    return path


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
    assert "6 rules found" in output  # 3 default alerts for each of the 2 descriptor services
