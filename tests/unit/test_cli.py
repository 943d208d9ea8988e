"""The CLI's contract: help on every command, exit codes, machine-readable output."""

from __future__ import annotations

import json
import subprocess
import sys

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


@pytest.mark.parametrize("command", COMMANDS[4:9], ids=" ".join)
def test_cluster_commands_show_an_example(command: list[str]) -> None:
    if command == ["cluster"]:
        return
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
