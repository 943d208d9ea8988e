"""The workflow a team sees, through the `tenantry` command, on the shipped example.

A pull request changes one service; `tenantry verify --base --head` verifies that
service alone, for real, writes JUnit, and exits 0; a broken one exits 1 with the
reason. The example repository's services all verify.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import xml.etree.ElementTree as ET
from collections.abc import Iterator
from pathlib import Path

import pytest

from tenantry.kube import localcluster
from tenantry.verify import run as verification

EXAMPLE = Path(__file__).resolve().parents[2] / "examples" / "platform-repo"


def tenantry(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "tenantry", *args],
        cwd=cwd, capture_output=True, text=True, env=dict(os.environ), timeout=600, check=False,
    )  # fmt: skip


def git(repo: Path, *args: str) -> None:
    subprocess.run(
        ["git", "-C", str(repo), "-c", "user.name=ci", "-c", "user.email=ci@example.com", *args],
        check=True, capture_output=True,
    )  # fmt: skip


@pytest.fixture(scope="module")
def warm_verify_cluster(state_dir: Path) -> Iterator[None]:
    """The CLI creates the warm `verify` cluster on first use; delete it after the module."""
    yield
    localcluster.delete(verification.WARM_CLUSTER)


@pytest.fixture
def platform_repo(tmp_path: Path) -> Path:
    repo = tmp_path / "platform"
    shutil.copytree(EXAMPLE, repo)
    git(repo, "init", "-q", "-b", "main")
    git(repo, "add", ".")
    git(repo, "commit", "-q", "-m", "platform")
    return repo


def test_a_pull_request_verifies_only_the_changed_service(
    platform_repo: Path, warm_verify_cluster: None, tmp_path: Path
) -> None:
    descriptor = platform_repo / "services" / "payments" / "api" / "service.yaml"
    descriptor.write_text(descriptor.read_text().replace("replicas: 3", "replicas: 4"))
    git(platform_repo, "commit", "-q", "-am", "payments/api: 4 replicas")
    report = tmp_path / "verify.xml"

    done = tenantry(
        "verify", "--base", "HEAD~1", "--head", "HEAD", "--junit", str(report), cwd=platform_repo
    )

    assert done.returncode == 0, done.stdout + done.stderr
    assert "verifying payments/api ..." in done.stderr
    assert "Deployment/api 4/4 ready" in done.stdout
    suite = ET.parse(report).getroot().find("testsuite")  # noqa: S314 - our own output
    assert suite is not None and suite.get("failures") == "0"
    assert {case.get("classname") for case in suite.findall("testcase")} == {"payments.api"}


def test_a_broken_service_fails_the_pull_request_with_the_reason(
    platform_repo: Path, warm_verify_cluster: None
) -> None:
    descriptor = platform_repo / "services" / "checkout" / "web" / "chart" / "values.yaml"
    descriptor.write_text("image: docker.io/library/nginx:1.27\nreplicas: 2\n")
    git(platform_repo, "commit", "-q", "-am", "checkout/web from Docker Hub")

    done = tenantry("verify", "--base", "HEAD~1", "--head", "HEAD", cwd=platform_repo)

    assert done.returncode == 1
    assert "checkout/web: policy failed" in done.stderr
    assert "'docker.io/library/nginx:1.27' is not from the tenant's registries" in done.stderr
    assert "checkout/web: dry-run failed" in done.stderr
    assert "ValidatingAdmissionPolicy 'tenantry-tenant-guardrails'" in done.stderr


def test_nothing_changed_means_nothing_to_verify(platform_repo: Path) -> None:
    done = tenantry("verify", "--base", "HEAD", "--head", "HEAD", cwd=platform_repo)
    assert done.returncode == 0
    assert "no services changed" in done.stderr


def test_a_ref_that_looks_like_a_git_option_is_refused(platform_repo: Path, tmp_path: Path) -> None:
    written = tmp_path / "written-by-git"
    done = tenantry("verify", f"--base=--output={written}", "--head", "HEAD", cwd=platform_repo)
    assert done.returncode == 2
    assert "--base '--output=" in done.stderr
    assert not written.exists()


def test_the_shipped_examples_verify(warm_verify_cluster: None, tmp_path: Path) -> None:
    done = tenantry(
        "-o", "json", "verify", "--all", "--jobs", "2", "--repo", str(EXAMPLE), cwd=tmp_path
    )
    assert done.returncode == 0, done.stdout + done.stderr
    assert "checkout/web: passed" in done.stderr
    assert "payments/api: passed" in done.stderr
    assert "payments/ledger: passed" in done.stderr
