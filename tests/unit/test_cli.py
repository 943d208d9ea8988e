"""The CLI's contract: help on every command, exit codes, machine-readable output."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

COMMANDS = [
    [],
    ["tools"],
    ["tools", "install"],
    ["tools", "list"],
    ["cluster"],
    ["cluster", "create"],
    ["cluster", "delete"],
    ["cluster", "list"],
    ["cluster", "kubeconfig"],
    ["up"],
    ["down"],
    ["status"],
    ["tenants"],
    ["tenants", "validate"],
    ["tenants", "plan"],
    ["tenants", "apply"],
    ["tenants", "list"],
    ["tenants", "show"],
]


def tenantry(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "tenantry", *args],
        capture_output=True,
        text=True,
        env=env,
        check=False,
    )


@pytest.mark.parametrize("command", COMMANDS, ids=lambda c: " ".join(c) or "root")
def test_every_command_has_help(command: list[str]) -> None:
    done = tenantry(*command, "--help")
    assert done.returncode == 0, done.stderr
    assert "Usage:" in done.stdout


@pytest.mark.parametrize("command", [c for c in COMMANDS if len(c) == 2], ids=" ".join)
def test_every_leaf_command_shows_an_example(command: list[str]) -> None:
    assert "Example:" in tenantry(*command, "--help").stdout


def test_version() -> None:
    done = tenantry("--version")
    assert done.returncode == 0 and done.stdout.startswith("tenantry ")


def test_unknown_command_is_a_usage_error() -> None:
    assert tenantry("no-such-command").returncode == 2


def test_invalid_name_is_a_usage_error_with_a_fix_and_no_traceback() -> None:
    done = tenantry("cluster", "kubeconfig", "Not_A_Name")
    assert done.returncode == 2
    assert "invalid cluster name 'Not_A_Name'" in done.stderr
    assert "fix:" in done.stderr
    assert "Traceback" not in done.stderr


def test_missing_cluster_is_a_failure_naming_the_fix(tmp_path) -> None:
    import os

    env = dict(os.environ, TENANTRY_STATE_DIR=str(tmp_path))
    done = tenantry("cluster", "kubeconfig", "nope", env=env)
    assert done.returncode == 1
    assert "tenantry cluster create nope" in done.stderr


def test_tools_list_json_has_name_version_and_absolute_path(tmp_path) -> None:
    import os

    env = dict(os.environ, TENANTRY_TOOLS_DIR=str(tmp_path))
    done = tenantry("--output", "json", "tools", "list", env=env)
    assert done.returncode == 0, done.stderr
    rows = json.loads(done.stdout)
    names = {r["name"] for r in rows}
    assert {"kube-apiserver", "etcd", "kwokctl", "helm", "kubectl"} <= names
    for row in rows:
        assert row["path"].startswith(str(tmp_path))
        assert row["status"] == "missing"
        assert row["version"]


EXAMPLE = Path(__file__).resolve().parents[2] / "examples" / "platform-repo"


def test_tenants_validate_reports_every_problem_and_exits_1(tmp_path: Path) -> None:
    shutil.copytree(EXAMPLE, tmp_path / "repo")
    (tmp_path / "repo" / "tenants" / "bad.yaml").write_text(
        "name: bad\nowners: {users: [u]}\nenvironments: [qa]\nquota: {cpu: lots}\n"
    )
    done = tenantry("tenants", "validate", "--repo", str(tmp_path / "repo"))
    assert done.returncode == 1
    assert "tenants/bad.yaml: environments: 'qa' not an environment" in done.stderr
    assert "tenants/bad.yaml: quota.cpu: 'lots' is not a Kubernetes quantity" in done.stderr
    assert "2 problem(s)" in done.stderr


def test_tenants_show_json_has_namespace_and_deployer_per_cluster() -> None:
    done = tenantry("-o", "json", "tenants", "show", "payments", "--repo", str(EXAMPLE))
    assert done.returncode == 0, done.stderr
    record = json.loads(done.stdout)
    placements = {(p["environment"], p["cluster"]): p for p in record["placements"]}
    assert set(placements) == {
        ("staging", "staging"),
        ("production", "prod-primary"),
        ("production", "prod-canary"),
    }
    assert placements["staging", "staging"]["namespace"] == "payments"
    assert placements["staging", "staging"]["deployer"] == "payments/tenantry-deployer"
