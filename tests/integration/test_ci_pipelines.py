"""The pipelines of examples/ci/, run for real on a copy of the example platform repository:
a pull (merge) request with a good change passes, one with a broken chart fails with the
reason in the pipeline's output, and the merge publishes to the chart store.

- **GitLab**: ``.gitlab-ci.yml`` run by gitlab-ci-local's shell executor, with the
  variables GitLab gives a merge request pipeline and a branch pipeline.
- **GitHub Actions**: the workflow parsed and checked against GitHub's schema by
  GitHub's own parser, each ``if:`` decided by GitHub's own expression evaluator, and the
  ``run:`` steps run in order the way the runner runs them (``bash -e``, ``GITHUB_PATH``,
  ``GITHUB_ENV``) with GitHub's variables and event payload. ``uses:`` steps are GitHub's
  actions, not run here: the test provides what each one leaves behind (`USES`).
- **Jenkins**: the Jenkinsfile parsed by Groovy's parser, its ``when`` conditions decided
  from a multibranch pipeline's variables, its ``sh`` steps run in order the way Jenkins
  runs them (``sh -xe``).

The tools are pinned in tests/ci_tools. Verification runs in the warm local cluster
`verify` (deleted after the module); publishing goes to the session's local S3 server,
into a bucket of the test's own. ``TENANTRY``, what the pipelines install, names the
Tenantry under test: where the pipeline installs into the Python under test (GitHub's
setup-python, GitLab's image), it is there already; Jenkins' fresh virtualenv gets a wheel
built from this checkout, its dependencies pinned by constraints.txt.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import xml.etree.ElementTree as ET
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from tenantry import paths
from tenantry.kube import localcluster
from tenantry.verify import run as verification
from tests import ci_tools

ROOT = Path(__file__).parents[2]
EXAMPLE = ROOT / "examples" / "platform-repo"
PIPELINES = {
    ".gitlab-ci.yml": ROOT / "examples" / "ci" / "gitlab-ci.yml",
    ".github/workflows/tenantry.yml": ROOT / "examples" / "ci" / "github-actions.yml",
    "Jenkinsfile": ROOT / "examples" / "ci" / "Jenkinsfile",
}
GIT_IDENTITY = {"GIT_AUTHOR_NAME": "José Müller", "GIT_AUTHOR_EMAIL": "jose@acme.example",
                "GIT_COMMITTER_NAME": "José Müller", "GIT_COMMITTER_EMAIL": "jose@acme.example"}  # fmt: skip
# A function no Helm knows: `helm lint` names it in its error.
BROKEN_TEMPLATE = "{{ .Values.image | nosuchfunction }}\n"
PIPELINE_TIMEOUT_S = 600


def git(root: Path, *args: str) -> str:
    return subprocess.run(["git", "-C", str(root), *args], check=True, capture_output=True,
                          text=True, env={**os.environ, **GIT_IDENTITY}).stdout.strip()  # fmt: skip


def good_change(root: Path) -> None:
    descriptor = root / "services" / "payments" / "api" / "service.yaml"
    text = descriptor.read_text()
    descriptor.write_text(text.replace("version: 1.4.0", "version: 1.4.1")
                          .replace("LOG_LEVEL: info", "LOG_LEVEL: debug"))  # fmt: skip


def broken_chart(root: Path) -> None:
    template = root / "services" / "checkout" / "web" / "chart" / "templates" / "deployment.yaml"
    template.write_text(template.read_text() + BROKEN_TEMPLATE)


@dataclass(frozen=True)
class Origin:
    """The platform repository's server side (a bare repository) and a working clone that
    pushes changes to it, as a team would."""

    bare: Path
    work: Path
    scratch: Path

    def change(self, branch: str, edit: Callable[[Path], None], message: str) -> str:
        """Commit ``edit`` on a branch from main, push it; its commit."""
        git(self.work, "checkout", "-q", "-B", branch, "origin/main")
        edit(self.work)
        git(self.work, "commit", "-q", "-am", message)
        git(self.work, "push", "-q", "-f", "origin", branch)
        return git(self.work, "rev-parse", "HEAD")

    def merge(self, branch: str) -> tuple[str, str]:
        """Fast-forward main to ``branch`` on the server; main's commits before and after."""
        before = git(self.work, "rev-parse", "origin/main")
        git(self.work, "push", "-q", "origin", f"{branch}:main")
        git(self.work, "fetch", "-q", "origin")
        return before, git(self.work, "rev-parse", "origin/main")

    def checkout(self, name: str, sha: str) -> Path:
        """A full clone at ``sha`` in a fresh workspace (actions/checkout with fetch-depth: 0,
        GitLab's GIT_DEPTH: 0, Jenkins' checkout scm)."""
        workspace = self.scratch / name
        subprocess.run(["git", "clone", "-q", str(self.bare), str(workspace)], check=True)
        git(workspace, "checkout", "-q", sha)
        return workspace


@pytest.fixture(scope="module")
def tools() -> ci_tools.Tools:
    return ci_tools.install()


@pytest.fixture(scope="module")
def wheel(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A wheel of the Tenantry under test, built from a copy (the checkout stays as it is)."""
    source = tmp_path_factory.mktemp("tenantry-source")
    for name in ("pyproject.toml", "README.md"):
        shutil.copyfile(ROOT / name, source / name)
    shutil.copytree(ROOT / "src", source / "src",
                    ignore=shutil.ignore_patterns("__pycache__", "*.egg-info"))  # fmt: skip
    out = tmp_path_factory.mktemp("wheel")
    subprocess.run([sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", "-w", str(out),
                    str(source)], check=True, capture_output=True, timeout=300)  # fmt: skip
    (built,) = out.glob("tenantry-*.whl")
    return built


@pytest.fixture(scope="module", autouse=True)
def warm_cluster_removed() -> Iterator[None]:
    """The pipelines verify in the warm cluster, which outlives them; gone after the module
    (its warm process exits with it)."""
    yield
    localcluster.delete(verification.WARM_CLUSTER)


@pytest.fixture
def origin(tmp_path: Path, aws_server: str, request: pytest.FixtureRequest) -> Origin:
    """The example repository with the pipelines in it, on a bucket and queue of its own
    (`tenantry aws setup` run once, as the platform team does)."""
    work = tmp_path / "work"
    shutil.copytree(EXAMPLE, work)
    for place, source in PIPELINES.items():
        (work / place).parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(source, work / place)
    bucket = "ci-" + re.sub(r"[^a-z0-9]+", "-", request.node.name.lower())[:40].strip("-")
    platform = (work / "platform.yaml").read_text()
    (work / "platform.yaml").write_text(platform.replace("bucket: acme-charts", f"bucket: {bucket}")
                                        .replace("name: acme-chart-events", f"name: {bucket}"))  # fmt: skip
    tenantry("aws", "setup", "--repo", str(work))
    bare = tmp_path / "origin.git"
    subprocess.run(["git", "init", "-q", "--bare", "-b", "main", str(bare)], check=True)
    git(work, "init", "-q", "-b", "main")
    git(work, "add", ".")
    git(work, "commit", "-q", "-m", "the platform repository")
    git(work, "remote", "add", "origin", str(bare))
    git(work, "push", "-q", "-u", "origin", "main")
    scratch = tmp_path / "workspaces"
    scratch.mkdir()
    return Origin(bare, work, scratch)


def tenantry(*args: str) -> str:
    done = subprocess.run([sys.executable, "-m", "tenantry", *args], capture_output=True,
                          text=True, timeout=120, check=False)  # fmt: skip
    assert done.returncode == 0, done.stderr
    return done.stdout


def runner_env(**extra: str) -> dict[str, str]:
    """This machine's environment without any CI's variables, the Python under test first
    on PATH (the `python` the pipelines install Tenantry with), plus ``extra``."""
    ci_free = {k: v for k, v in os.environ.items()
               if not k.startswith(("GITHUB_", "GITLAB_", "CI_", "JENKINS_", "CHANGE_", "GIT_",
                                    "RUNNER_", "BUILD_", "BRANCH_"))}  # fmt: skip
    ci_free["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{ci_free['PATH']}"
    return {**ci_free, "CI": "true", "TENANTRY": "tenantry", **extra}


@dataclass(frozen=True)
class Run:
    passed: bool
    output: str


def junit_report(workspace: Path) -> ET.Element:
    return ET.parse(workspace / "verify.xml").getroot()  # noqa: S314 - our own output


def assert_good_run(run: Run, workspace: Path) -> None:
    assert run.passed, run.output
    assert "payments/api: passed" in run.output
    report = junit_report(workspace)
    cases = report.findall(".//testcase")
    assert cases and not report.findall(".//failure"), ET.tostring(report).decode()


def assert_broken_run(run: Run, workspace: Path) -> None:
    assert not run.passed, run.output
    assert "checkout/web: FAILED" in run.output
    assert "nosuchfunction" in run.output  # helm's own reason, in the pipeline's log
    failures = junit_report(workspace).findall(".//failure")
    assert failures and any("nosuchfunction" in (f.get("message", "") + (f.text or ""))
                            for f in failures)  # fmt: skip


def assert_published(run: Run) -> None:
    assert run.passed, run.output
    assert "payments/api 1.4.1: published" in run.output


# --- GitLab ------------------------------------------------------------------------------


def gitlab_pipeline(tools: ci_tools.Tools, workspace: Path, variables: dict[str, str],
                    unset: tuple[str, ...] = ()) -> Run:  # fmt: skip
    """gitlab-ci-local runs the workspace's pipeline; ``variables`` are GitLab's for it."""
    # Where gitlab-ci-local reads the project's path from; origin stays the real server.
    git(workspace, "remote", "add", "gcl-origin", "https://gitlab.example.com/acme/platform.git")
    argv = [str(tools.gitlab_ci_local), "--force-shell-executor", "--no-color"]
    # GITLAB_CI is "true" on GitLab (gitlab-ci-local says "false" on purpose). The runner's
    # tool cache already holds the tools the job's cache would restore.
    variables = {**variables, "GITLAB_CI": "true", "CI_DEFAULT_BRANCH": "main",
                 "TENANTRY": "tenantry", "TENANTRY_TOOLS_DIR": str(paths.tools_dir())}  # fmt: skip
    for name, value in variables.items():
        argv += ["--variable", f"{name}={value}"]
    for name in unset:
        argv += ["--unset-variable", name]
    done = subprocess.run(argv, cwd=workspace, env=runner_env(), capture_output=True, text=True,
                          timeout=PIPELINE_TIMEOUT_S, check=False)  # fmt: skip
    return Run(done.returncode == 0, done.stdout + done.stderr)


def gitlab_jobs(run: Run) -> dict[str, str]:
    """Each job that ran and how it ended, from gitlab-ci-local's summary."""
    return dict((job, result) for result, job in
                re.findall(r"^ (PASS|FAIL)  (\S+) *$", run.output, re.MULTILINE))  # fmt: skip


def test_the_gitlab_pipeline_verifies_merge_requests_and_publishes_the_default_branch(
    tools: ci_tools.Tools, origin: Origin
) -> None:
    base = git(origin.work, "rev-parse", "origin/main")

    def merge_request(branch: str, sha: str) -> tuple[Run, Path]:
        workspace = origin.checkout(f"mr-{branch}", sha)
        run = gitlab_pipeline(tools, workspace, {
            "CI_PIPELINE_SOURCE": "merge_request_event", "CI_MERGE_REQUEST_IID": "7",
            "CI_MERGE_REQUEST_DIFF_BASE_SHA": base, "CI_MERGE_REQUEST_TARGET_BRANCH_NAME": "main",
            "CI_MERGE_REQUEST_SOURCE_BRANCH_NAME": branch,
        }, unset=("CI_COMMIT_BRANCH",))  # fmt: skip
        return run, workspace

    good = origin.change("debug-logs", good_change, "payments/api: debug logs")
    run, workspace = merge_request("debug-logs", good)
    assert_good_run(run, workspace)
    assert gitlab_jobs(run) == {"verify": "PASS"}
    assert "(from GitLab CI: CI_MERGE_REQUEST_DIFF_BASE_SHA and CI_COMMIT_SHA)" in run.output

    broken = origin.change("broken", broken_chart, "checkout/web: a broken template")
    run, workspace = merge_request("broken", broken)
    assert_broken_run(run, workspace)
    assert gitlab_jobs(run) == {"verify": "FAIL"}

    before, after = origin.merge("debug-logs")
    workspace = origin.checkout("main", after)
    run = gitlab_pipeline(tools, workspace, {"CI_PIPELINE_SOURCE": "push", "CI_COMMIT_BRANCH": "main",
                                             "CI_COMMIT_REF_NAME": "main",
                                             "CI_COMMIT_BEFORE_SHA": before})  # fmt: skip
    assert_published(run)
    assert gitlab_jobs(run) == {"publish": "PASS"}


# --- GitHub Actions ----------------------------------------------------------------------

# What each action leaves behind, which the test provides instead of running it.
USES = {
    "actions/checkout": "the workspace is a full clone at the event's commit (Origin.checkout)",
    "actions/setup-python": "the Python under test is first on PATH (runner_env)",
    "actions/setup-go": "this machine's Go is on PATH",
    "actions/cache": "the tool cache already holds the built tools",
    "actions/upload-artifact": "the test reads verify.xml from the workspace",
    "aws-actions/configure-aws-credentials": "the local S3 server takes the platform's local keys",
}


def github_workflow(tools: ci_tools.Tools, workflow: Path, event_name: str) -> dict[str, Any]:
    done = subprocess.run(["node", str(tools.script("github_workflow.mjs")), str(workflow),
                           event_name], capture_output=True, text=True, timeout=60,
                          check=True)  # fmt: skip
    parsed: dict[str, Any] = json.loads(done.stdout)
    return parsed


def github_run(tools: ci_tools.Tools, workspace: Path, event_name: str,
               event: dict[str, Any], variables: dict[str, str]) -> Run:  # fmt: skip
    """Run the jobs the workflow runs on ``event_name``, their steps in order."""
    parsed = github_workflow(tools, workspace / ".github" / "workflows" / "tenantry.yml",
                             event_name)  # fmt: skip
    assert parsed["errors"] == []
    temp = workspace.parent / f"{workspace.name}-runner"
    temp.mkdir()
    (temp / "event.json").write_text(json.dumps(event))
    env = runner_env(**{**{k: v for k, v in parsed["env"].items() if v is not None},
                        "TENANTRY": "tenantry", "GITHUB_ACTIONS": "true",
                        "GITHUB_EVENT_NAME": event_name,
                        "GITHUB_EVENT_PATH": str(temp / "event.json"),
                        "GITHUB_WORKSPACE": str(workspace), "RUNNER_TEMP": str(temp),
                        **variables})  # fmt: skip
    log: list[str] = []
    failed = False
    for job in parsed["jobs"]:
        log.append(f"job {job['id']}")
        for number, step in enumerate(job["steps"]):
            if not (step["ifFailure"] if failed else step["ifSuccess"]):
                continue
            if step.get("uses"):
                action = step["uses"].split("@")[0]
                assert action in USES, f"a step uses {action}, which the test cannot stand in for"
                continue
            assert isinstance(step["run"], str), f"step {step['name']!r} has an expression"
            files = {
                name: temp / f"{name.lower()}-{number}" for name in ("GITHUB_PATH", "GITHUB_ENV")
            }
            for file in files.values():
                file.touch()
            script = temp / f"step-{number}.sh"
            script.write_text(step["run"])
            # The runner's default shell: bash --noprofile --norc -eo pipefail {0}
            done = subprocess.run(["bash", "--noprofile", "--norc", "-eo", "pipefail", str(script)],
                                  cwd=workspace, env={**env, **{k: str(v) for k, v in files.items()}},
                                  capture_output=True, text=True, timeout=PIPELINE_TIMEOUT_S,
                                  check=False)  # fmt: skip
            log.append(f"step {step['name']}: exit {done.returncode}\n{done.stdout}{done.stderr}")
            failed = failed or done.returncode != 0
            for line in files["GITHUB_PATH"].read_text().splitlines():
                env["PATH"] = f"{line}{os.pathsep}{env['PATH']}"
            for line in files["GITHUB_ENV"].read_text().splitlines():
                name, _, value = line.partition("=")
                env[name] = value
    return Run(not failed and bool(parsed["jobs"]), "\n".join(log))


def test_the_github_workflow_verifies_pull_requests_and_publishes_pushes_to_main(
    tools: ci_tools.Tools, origin: Origin
) -> None:
    def pull_request(branch: str, sha: str) -> tuple[Run, Path]:
        workspace = origin.checkout(f"pr-{branch}", sha)
        event = {"number": 7, "pull_request": {"head": {"ref": branch, "sha": sha,
                 "repo": {"full_name": "acme/platform", "fork": False}},
                 "base": {"ref": "main"}}}  # fmt: skip
        run = github_run(tools, workspace, "pull_request", event, {
            "GITHUB_BASE_REF": "main", "GITHUB_HEAD_REF": branch, "GITHUB_SHA": sha,
            "GITHUB_REF": "refs/pull/7/merge"})  # fmt: skip
        return run, workspace

    good = origin.change("debug-logs", good_change, "payments/api: debug logs")
    run, workspace = pull_request("debug-logs", good)
    assert_good_run(run, workspace)
    assert run.output.startswith("job verify") and "job publish" not in run.output
    assert "(from GitHub Actions: GITHUB_BASE_REF and GITHUB_SHA)" in run.output

    broken = origin.change("broken", broken_chart, "checkout/web: a broken template")
    run, workspace = pull_request("broken", broken)
    assert_broken_run(run, workspace)
    # The failure is an annotation on the service in the pull request.
    assert re.search(r"^::error file=services/checkout/web/", run.output, re.MULTILINE), run.output

    before, after = origin.merge("debug-logs")
    workspace = origin.checkout("main", after)
    run = github_run(tools, workspace, "push", {"before": before, "after": after},
                     {"GITHUB_SHA": after, "GITHUB_REF": "refs/heads/main"})  # fmt: skip
    assert_published(run)
    assert run.output.startswith("job publish") and "job verify" not in run.output


def test_a_workflow_github_would_reject_is_reported_by_its_parser(
    tools: ci_tools.Tools, tmp_path: Path
) -> None:
    """The parser is GitHub's: what makes GitHub refuse a workflow makes this one fail."""
    workflow = tmp_path / "broken.yml"
    workflow.write_text(PIPELINES[".github/workflows/tenantry.yml"].read_text()
                        .replace("runs-on: ubuntu-24.04", "runs_on: ubuntu-24.04", 1))  # fmt: skip
    errors = github_workflow(tools, workflow, "pull_request")["errors"]
    assert any("runs_on" in e for e in errors), errors


# --- Jenkins -----------------------------------------------------------------------------


def jenkinsfile(tools: ci_tools.Tools, path: Path) -> list[dict[str, Any]]:
    done = subprocess.run(["java", "-cp", tools.groovy_classpath, "groovy.ui.GroovyMain",
                           str(tools.script("jenkinsfile.groovy")), str(path)],
                          capture_output=True, text=True, timeout=120, check=False)  # fmt: skip
    assert done.returncode == 0, done.stderr
    parsed: list[dict[str, Any]] = json.loads(done.stdout)
    return parsed


def directive(block: list[dict[str, Any]], name: str) -> list[dict[str, Any]]:
    return [d for d in block if d["name"] == name]


def jenkins_build(tools: ci_tools.Tools, workspace: Path, wheel: Path,
                  variables: dict[str, str]) -> Run:  # fmt: skip
    """Run the Jenkinsfile's stages as a multibranch pipeline does for ``variables``."""
    pipeline = jenkinsfile(tools, workspace / "Jenkinsfile")
    env = runner_env(**variables)
    for block in directive(pipeline, "environment"):
        for assignment in block["args"][0]:
            name, value = assignment["args"]
            env[name] = re.sub(r"\$\{(\w+)\}", lambda m: env.get(m.group(1), ""), value)
    env.update(
        TENANTRY=f"tenantry @ {wheel.as_uri()}", PIP_CONSTRAINT=str(ROOT / "constraints.txt")
    )
    log: list[str] = []
    failed = False

    def steps(block: list[dict[str, Any]]) -> None:
        nonlocal failed
        for step in block:
            if step["name"] == "sh" and not failed:
                done = subprocess.run(["sh", "-xe", "-c", step["args"][0]], cwd=workspace, env=env,
                                      capture_output=True, text=True, timeout=PIPELINE_TIMEOUT_S,
                                      check=False)  # fmt: skip
                log.append(f"sh (line {step['line']}): exit {done.returncode}\n"
                           f"{done.stdout}{done.stderr}")  # fmt: skip
                failed = done.returncode != 0
            elif step["name"] == "junit":
                report = workspace / step["args"][0]
                assert report.exists(), f"junit: {report} was not written"
                log.append(f"junit {step['args'][0]}")
            elif step["name"] != "sh":
                raise AssertionError(f"line {step['line']}: step {step['name']} is not run here")

    for stage in directive(directive(pipeline, "stages")[0]["args"][0], "stage"):
        name, body = stage["args"]
        if not all(when_holds(c, env) for w in directive(body, "when") for c in w["args"][0]):
            continue
        log.append(f"stage {name}")
        for block in directive(body, "steps"):
            steps(block["args"][0])
        for post in directive(body, "post"):
            for condition in post["args"][0]:
                assert condition["name"] in ("always", "failure", "success")
                if condition["name"] == "always" or (condition["name"] == "failure") == failed:
                    steps(condition["args"][0])
    return Run(not failed, "\n".join(log))


def when_holds(condition: dict[str, Any], env: dict[str, str]) -> bool:
    """A declarative `when` condition, as Jenkins decides it for a multibranch build."""
    if condition["name"] == "changeRequest":
        return bool(env.get("CHANGE_ID"))
    if condition["name"] == "branch":
        return env.get("BRANCH_NAME") == condition["args"][0]
    raise AssertionError(f"line {condition['line']}: when {condition['name']} is not decided here")


def test_the_jenkinsfile_verifies_pull_requests_and_publishes_main(
    tools: ci_tools.Tools, origin: Origin, wheel: Path, tmp_path: Path
) -> None:
    jenkins = {"JENKINS_URL": "http://jenkins.acme.example/", "JENKINS_HOME": str(tmp_path)}

    def pull_request(branch: str, sha: str, workspace: Path) -> Run:
        git(workspace, "checkout", "-q", sha)
        return jenkins_build(tools, workspace, wheel, {**jenkins, "CHANGE_ID": "7",
                             "CHANGE_TARGET": "main", "CHANGE_BRANCH": branch,
                             "BRANCH_NAME": "PR-7", "GIT_COMMIT": sha})  # fmt: skip

    # One workspace for the pull request's job: its second build reuses the first's .venv.
    good = origin.change("debug-logs", good_change, "payments/api: debug logs")
    workspace = origin.checkout("PR-7", good)
    git(workspace, "branch", "-q", "-D", "main")  # Jenkins checks out the pull request only
    git(workspace, "update-ref", "-d", "refs/remotes/origin/main")
    run = pull_request("debug-logs", good, workspace)
    assert_good_run(run, workspace)
    assert "stage verify" in run.output and "stage publish" not in run.output
    assert "(from Jenkins: CHANGE_TARGET and GIT_COMMIT)" in run.output

    broken = origin.change("broken", broken_chart, "checkout/web: a broken template")
    git(workspace, "fetch", "-q", "origin", "broken")
    run = pull_request("broken", broken, workspace)
    assert_broken_run(run, workspace)

    before, after = origin.merge("debug-logs")
    workspace = origin.checkout("main", after)
    run = jenkins_build(tools, workspace, wheel, {**jenkins, "BRANCH_NAME": "main",
                        "GIT_COMMIT": after, "GIT_PREVIOUS_SUCCESSFUL_COMMIT": before})  # fmt: skip
    assert_published(run)
    assert "stage publish" in run.output and "stage verify" not in run.output
