"""The CLI's contract: help on every command, exit codes, machine-readable output —
through the `tenantry` command itself, as a subprocess (so not a unit test)."""

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
    ["new", "service"],
    ["render"],
    ["lint"],
    ["verify"],
    ["aws", "setup"],
    ["publish"],
    ["deployer"],
    ["history"],
    ["promote"],
    ["promotions"],
    ["approve"],
    ["reject"],
    ["cancel"],
    ["rollback"],
    ["retry"],
    ["requests"],
    ["deadletters"],
    ["deadletters", "list"],
    ["deadletters", "redrive"],
    ["server"],
    ["login"],
    ["logout"],
    ["whoami"],
    ["operation"],
    ["local-token"],
    ["monitoring", "render"],
    ["monitoring", "apply"],
    ["monitoring", "status"],
    ["monitoring", "received"],
    ["monitoring", "demo"],
    ["traffic", "status"],
    ["traffic", "load"],
    ["traffic", "watch"],
    ["traffic", "ingress"],
    ["canary", "status"],
    ["canary", "pause"],
    ["canary", "resume"],
    ["canary", "abort"],
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


@pytest.mark.parametrize(
    "command",
    [
        c
        for c in COMMANDS
        if len(c) == 2
        or (
            len(c) == 1
            and c[0]
            not in ("tools", "cluster", "tenants", "new", "up", "down", "status", "deadletters")
        )
    ],
    ids=" ".join,
)
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


def test_lint_names_file_object_field_and_fix(tmp_path: Path) -> None:
    shutil.copytree(EXAMPLE, tmp_path / "repo")
    values = tmp_path / "repo" / "services" / "checkout" / "web" / "chart" / "values.yaml"
    values.write_text("image: docker.io/library/nginx:1.27\nreplicas: 2\n")
    done = tenantry("lint", "--repo", str(tmp_path / "repo"))
    assert done.returncode == 1
    assert (
        "web/templates/deployment.yaml: Deployment/web: spec.template.spec.containers[0].image: "
        "'docker.io/library/nginx:1.27' is not from the tenant's registries"
    ) in done.stderr
    assert "push the image to one of those registries" in done.stderr


def test_new_service_scaffolds_and_refuses_to_overwrite(tmp_path: Path) -> None:
    shutil.copytree(EXAMPLE, tmp_path / "repo")
    args = [
        "new",
        "service",
        "payments/refunds",
        "--image",
        "registry.acme.example/payments/refunds:0.1.0",
    ]
    done = tenantry(*args, "--repo", str(tmp_path / "repo"))
    assert done.returncode == 0, done.stderr
    assert (tmp_path / "repo" / "services" / "payments" / "refunds" / "service.yaml").exists()
    again = tenantry(*args, "--repo", str(tmp_path / "repo"))
    assert again.returncode == 2
    assert "already exists" in again.stderr


def test_new_service_that_would_be_invalid_leaves_nothing_behind(tmp_path: Path) -> None:
    shutil.copytree(EXAMPLE, tmp_path / "repo")
    done = tenantry("new", "service", "payments/refunds", "--image",
                    "registry.acme.example/payments/refunds:0.1.0", "--port", "70000",
                    "--repo", str(tmp_path / "repo"))  # fmt: skip
    assert done.returncode == 1
    assert "services/payments/refunds/service.yaml: port" in done.stderr
    assert not (tmp_path / "repo" / "services" / "payments" / "refunds").exists()


def test_verify_needs_to_be_told_what_to_verify() -> None:
    done = tenantry("verify", "--repo", str(EXAMPLE))
    assert done.returncode == 2
    assert "pass --all, or --base REF" in done.stderr


def test_output_option_works_before_and_after_the_command(tmp_path: Path) -> None:
    import os

    # The README writes `tenantry tools list --output json`, as kubectl and helm accept.
    env = dict(os.environ, TENANTRY_TOOLS_DIR=str(tmp_path))
    before = tenantry("-o", "json", "tools", "list", env=env)
    assert before.returncode == 0, before.stderr
    for after in (["--output", "json"], ["--output=json"], ["-o", "json"]):
        done = tenantry("tools", "list", *after, env=env)
        assert done.returncode == 0, done.stderr
        assert json.loads(done.stdout) == json.loads(before.stdout)


def test_output_option_after_the_command_still_rejects_a_bad_format() -> None:
    done = tenantry("tools", "list", "--output", "xml")
    assert done.returncode == 2
    assert "xml" in done.stderr


def test_output_option_is_moved_before_the_command_but_not_past_double_dash() -> None:
    from tenantry.cli.argv import hoist_output_option

    # `payments/api` is the command's argument; `-o json` after it is still ours.
    assert hoist_output_option(["render", "payments/api", "-o", "json"]) == [
        "-o",
        "json",
        "render",
        "payments/api",
    ]
    assert hoist_output_option(["tools", "list", "--output=yaml"]) == [
        "--output=yaml",
        "tools",
        "list",
    ]
    assert hoist_output_option(["-o", "json", "tools", "list"]) == ["-o", "json", "tools", "list"]
    assert hoist_output_option(["x", "--", "-o", "json"]) == ["x", "--", "-o", "json"]
