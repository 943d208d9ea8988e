"""`tenantry monitoring render` as a platform engineer runs it: validated files, an invalid
tenant fragment reported and skipped, and a collector file the real collector accepts."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import yaml

from tests.e2e.test_workflow import EXAMPLE, tenantry


def test_render_writes_validated_files_and_skips_only_the_broken_tenant(tmp_path: Path) -> None:
    repo = tmp_path / "repo"
    shutil.copytree(EXAMPLE, repo)
    checkout = repo / "tenants" / "checkout.yaml"
    doc = yaml.safe_load(checkout.read_text())
    doc["alerts"]["email"] = ["oncall-at-checkout"]
    checkout.write_text(yaml.safe_dump(doc))
    done = tenantry("-o", "json", "monitoring", "render", "--out", str(tmp_path / "mon"),
                    "--repo", str(repo), cwd=tmp_path)  # fmt: skip
    assert done.returncode == 0, done.stderr
    summary = json.loads(done.stdout)
    assert summary["alertingSkipped"] == ["checkout"]
    assert "tenants/checkout.yaml: alerts.email[0]" in done.stderr
    out = tmp_path / "mon"
    assert {p.name for p in out.iterdir()} >= {
        "prometheus.yml", "alertmanager.yml", "collector.yaml", "rules", "targets", "secrets",
    }  # fmt: skip
    routes = yaml.safe_load((out / "alertmanager.yml").read_text())["route"]["routes"]
    assert ['tenant="payments"'] in [r["matchers"] for r in routes]
    assert ['tenant="checkout"'] not in [r["matchers"] for r in routes]


def test_without_a_running_stack_the_error_says_how_to_start_one(
    tmp_path: Path, state_dir: Path
) -> None:
    done = tenantry("monitoring", "received", "slack", cwd=tmp_path)
    assert done.returncode == 1
    assert "tenantry up" in done.stderr
