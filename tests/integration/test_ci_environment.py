"""`tenantry verify` in a CI without --base: the change comes from the CI's own variables
(real git, the real command); a CI that names no change, or a ref the clone lacks, is
refused with the variable and the fix, never a traceback."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import CHARTS

EXAMPLE = Path(__file__).parents[2] / "examples" / "platform-repo"


def git(root: Path, *args: str) -> str:
    return subprocess.run(
        ["git", "-C", str(root), "-c", "user.name=CI", "-c", "user.email=ci@example.com", *args],
        check=True, capture_output=True, text=True,
    ).stdout.strip()  # fmt: skip


@pytest.fixture
def clone(tmp_path: Path) -> Path:
    """The example platform repository with main on origin and one commit on top that
    changes no service (a README)."""
    root = tmp_path / "repo"
    shutil.copytree(EXAMPLE, root)
    git(root, "init", "-q", "-b", "feature")
    git(root, "add", ".")
    git(root, "commit", "-q", "-m", "base")
    git(root, "update-ref", "refs/remotes/origin/main", "HEAD")
    (root / "NOTES.md").write_text("a change that touches no service\n")
    git(root, "add", ".")
    git(root, "commit", "-q", "-m", "notes")
    return root


def verify(root: Path, env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    ci_free = {k: v for k, v in os.environ.items()
               if not k.startswith(("GITHUB_", "GITLAB_", "CI_", "JENKINS_", "CHANGE_", "GIT_"))}  # fmt: skip
    return subprocess.run(
        [sys.executable, "-m", "tenantry", "verify", "--repo", str(root), *args],
        env={**ci_free, **env}, capture_output=True, text=True, timeout=120, check=False,
    )  # fmt: skip


def test_a_github_pull_request_is_compared_with_its_base_branch(clone: Path) -> None:
    sha = git(clone, "rev-parse", "HEAD")
    done = verify(clone, {"GITHUB_ACTIONS": "true", "GITHUB_EVENT_NAME": "pull_request",
                          "GITHUB_BASE_REF": "main", "GITHUB_SHA": sha})  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert (f"verify: base origin/main, head {sha} (from GitHub Actions: GITHUB_BASE_REF and "
            "GITHUB_SHA)") in done.stderr  # fmt: skip
    assert "no services changed; nothing to verify" in done.stderr


def test_a_gitlab_push_and_a_jenkins_build_name_their_commits(clone: Path) -> None:
    before, sha = git(clone, "rev-parse", "HEAD~1"), git(clone, "rev-parse", "HEAD")
    gitlab = verify(clone, {"GITLAB_CI": "true", "CI_PIPELINE_SOURCE": "push",
                            "CI_COMMIT_BEFORE_SHA": before, "CI_COMMIT_SHA": sha})  # fmt: skip
    assert gitlab.returncode == 0, gitlab.stderr
    assert f"base {before}, head {sha} (from GitLab CI" in gitlab.stderr
    jenkins = verify(clone, {"JENKINS_URL": "http://jenkins/", "GIT_COMMIT": sha,
                             "GIT_PREVIOUS_SUCCESSFUL_COMMIT": before})  # fmt: skip
    assert jenkins.returncode == 0, jenkins.stderr
    assert "(from Jenkins: GIT_PREVIOUS_SUCCESSFUL_COMMIT and GIT_COMMIT)" in jenkins.stderr


def test_what_a_ci_cannot_tell_is_refused_with_the_variable_and_the_fix(
    clone: Path, tmp_path: Path
) -> None:
    shallow = verify(clone, {"GITHUB_ACTIONS": "true", "GITHUB_EVENT_NAME": "pull_request",
                             "GITHUB_BASE_REF": "release-9", "GITHUB_SHA": "HEAD"})  # fmt: skip
    assert shallow.returncode == 2
    assert "GitHub Actions names origin/release-9...HEAD" in shallow.stderr
    assert "fetch-depth: 0" in shallow.stderr

    event = tmp_path / "event.json"
    event.write_text(json.dumps({"before": "0" * 40}))
    new_branch = verify(clone, {"GITHUB_ACTIONS": "true", "GITHUB_EVENT_NAME": "push",
                                "GITHUB_EVENT_PATH": str(event)})  # fmt: skip
    assert new_branch.returncode == 2
    assert "it created the branch" in new_branch.stderr and "--all" in new_branch.stderr

    nowhere = verify(clone, {})
    assert nowhere.returncode == 2 and "say what to verify" in nowhere.stderr
    for done in (shallow, new_branch, nowhere):
        assert "Traceback" not in done.stderr


def test_in_github_actions_a_failed_check_is_an_annotation_on_the_services_file(
    clone: Path,
) -> None:
    chart = clone / "services" / "payments" / "odd" / "chart"
    shutil.copytree(CHARTS / "app", chart)  # its image is another tenant's (alpha's)
    done = subprocess.run(
        [sys.executable, "-m", "tenantry", "-o", "json", "lint", "services/payments/odd",
         "--repo", str(clone)],
        env={**os.environ, "GITHUB_ACTIONS": "true"}, cwd=clone,
        capture_output=True, text=True, timeout=120, check=False,
    )  # fmt: skip
    assert done.returncode == 1
    assert json.loads(done.stdout)  # stdout stays what -o json asked for
    # The finding's template and the line that sets the refused field.
    template = chart / "templates" / "deployment.yaml"
    line = next(n for n, text in enumerate(template.read_text().splitlines(), start=1)
                if text.lstrip(" -").startswith("image:"))  # fmt: skip
    assert (f"::error file=services/payments/odd/chart/templates/deployment.yaml,line={line},"
            "title=tenantry policy%3A payments/odd::") in done.stderr  # fmt: skip


def test_a_forks_pull_request_without_the_kubeconfig_secret_is_told_why_and_what_to_do(
    clone: Path, tmp_path: Path
) -> None:
    """GitHub gives a fork's pull request none of the repository's secrets: the kubeconfig
    a workflow writes from one is empty there."""
    (clone / "services" / "payments" / "api" / "service.yaml").write_text(
        (EXAMPLE / "services" / "payments" / "api" / "service.yaml").read_text()
        .replace("LOG_LEVEL: info", "LOG_LEVEL: debug"))  # fmt: skip
    git(clone, "commit", "-q", "-am", "debug logs")
    kubeconfig = tmp_path / "kubeconfig.yaml"
    kubeconfig.write_text("")  # echo "$KUBECONFIG_SECRET" > kubeconfig.yaml
    event = tmp_path / "event.json"
    event.write_text(json.dumps({"pull_request": {"head": {"repo": {
        "full_name": "octo/platform", "fork": True}}}}))  # fmt: skip
    github = {"GITHUB_ACTIONS": "true", "GITHUB_EVENT_NAME": "pull_request",
              "GITHUB_BASE_REF": "main", "GITHUB_SHA": git(clone, "rev-parse", "HEAD"),
              "GITHUB_EVENT_PATH": str(event)}  # fmt: skip
    done = verify(clone, github, "--kubeconfig", str(kubeconfig))
    assert done.returncode == 2, done.stderr
    assert (f"kubeconfig {kubeconfig} is empty; this run is a pull request from the fork "
            "octo/platform") in done.stderr  # fmt: skip
    assert "drop --kubeconfig" in done.stderr and "Traceback" not in done.stderr

    event.write_text(json.dumps({"pull_request": {"head": {"repo": {
        "full_name": "acme/platform", "fork": False}}}}))  # fmt: skip
    ours = verify(clone, github, "--kubeconfig", str(kubeconfig))
    assert ours.returncode == 2 and f"kubeconfig {kubeconfig} is empty" in ours.stderr
    assert "pull request from the fork" not in ours.stderr


def test_in_a_forks_pull_request_the_secrets_check_says_why_it_could_not_ask(
    clone: Path, tmp_path: Path
) -> None:
    """The server's address is a repository variable, its token a secret: a fork's pull
    request has the one and not the other."""
    descriptor = clone / "services" / "payments" / "api" / "service.yaml"
    descriptor.write_text(descriptor.read_text()
                          + "secrets:\n  DB_PASSWORD: {name: db, key: password}\n")  # fmt: skip
    event = tmp_path / "event.json"
    event.write_text(json.dumps({"pull_request": {"head": {"repo": {
        "full_name": "octo/platform", "fork": True}}}}))  # fmt: skip
    ci_free = {k: v for k, v in os.environ.items()
               if not k.startswith(("GITHUB_", "TENANTRY_TOKEN", "TENANTRY_SERVER"))}  # fmt: skip
    github = {**ci_free, "GITHUB_ACTIONS": "true", "GITHUB_EVENT_NAME": "pull_request",
              "GITHUB_EVENT_PATH": str(event), "TENANTRY_SERVER": "https://tenantry.acme.example",
              "XDG_CONFIG_HOME": str(tmp_path / "config")}  # fmt: skip

    def secrets_check(env: dict[str, str]) -> str:
        done = subprocess.run(
            [sys.executable, "-m", "tenantry", "-o", "json", "lint", "services/payments/api",
             "--repo", str(clone)],
            env=env, cwd=clone, capture_output=True, text=True, timeout=120, check=False,
        )  # fmt: skip
        assert done.returncode == 0, done.stderr
        (row,) = [r for r in json.loads(done.stdout) if r["check"] == "secrets"]
        assert row["result"] == "skipped"
        return str(row["detail"])

    assert secrets_check(github) == (
        "reads db (password); not checked: no token for https://tenantry.acme.example: this "
        "run is a pull request from the fork octo/platform, which gets none of the "
        "repository's secrets (a run from a branch of this repository checks them)"
    )
    event.write_text(json.dumps({"pull_request": {"head": {"repo": {"fork": False}}}}))
    assert secrets_check(github) == (
        "reads db (password); not checked: no token for https://tenantry.acme.example; run "
        "`tenantry login` (token on stdin), or set TENANTRY_TOKEN"
    )
