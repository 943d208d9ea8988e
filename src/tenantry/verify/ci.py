"""Which change a CI job is about, from the CI's own environment (pure).

`tenantry verify` and `tenantry publish` compare a base and a head. Every CI names them
differently; when neither ``--base`` nor ``--all`` is given, these are read:

- **GitHub Actions** (``GITHUB_ACTIONS=true``): a ``pull_request`` event compares
  ``origin/$GITHUB_BASE_REF`` with ``GITHUB_SHA`` (the pull request merged into it); a
  ``push`` compares the event's ``before`` commit (the file ``GITHUB_EVENT_PATH``) with
  ``GITHUB_SHA``.
- **GitLab CI** (``GITLAB_CI=true``): a merge request pipeline compares
  ``CI_MERGE_REQUEST_DIFF_BASE_SHA`` with ``CI_COMMIT_SHA``; a branch pipeline
  ``CI_COMMIT_BEFORE_SHA`` with ``CI_COMMIT_SHA``.
- **Jenkins** (``JENKINS_URL``): a pull request of a multibranch pipeline (``CHANGE_ID``)
  compares ``origin/$CHANGE_TARGET`` with ``GIT_COMMIT``; a branch build
  ``GIT_PREVIOUS_SUCCESSFUL_COMMIT`` with ``GIT_COMMIT``.

A CI that names no change (a push that created the branch, a scheduled run) is refused
with the variable that was missing and what to pass instead.

A pull request from a fork gets none of the repository's secrets on any of the three
(`fork` says whether the run is one), so a kubeconfig or token kept in a secret is empty
there; verify in a local cluster needs neither.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from tenantry import errors

# What a CI gives as "the commit before" when there is none (a new branch).
_NO_COMMIT = "0" * 40


@dataclass(frozen=True)
class Refs:
    """The change a CI job is about, and which of its variables said so."""

    ci: str
    base: str
    head: str
    said_by: str

    def describe(self) -> str:
        return f"base {self.base}, head {self.head} (from {self.ci}: {self.said_by})"


class UnknownChangeError(errors.UsageError):
    """The CI's environment does not say which change to look at."""


def from_environment(
    env: Mapping[str, str], *, event: Mapping[str, Any] | None = None
) -> Refs | None:
    """The refs a known CI names, None outside a known CI. ``event`` is the GitHub event
    payload (the JSON file ``GITHUB_EVENT_PATH`` names), when there is one."""
    if env.get("GITHUB_ACTIONS") == "true":
        return _github(env, event or {})
    if env.get("GITLAB_CI") == "true":
        return _gitlab(env)
    if env.get("JENKINS_URL"):
        return _jenkins(env)
    return None


def _github(env: Mapping[str, str], event: Mapping[str, Any]) -> Refs:
    ci = "GitHub Actions"
    head = env.get("GITHUB_SHA") or "HEAD"
    name = env.get("GITHUB_EVENT_NAME", "")
    if name in ("pull_request", "pull_request_target"):
        target = _required(env, "GITHUB_BASE_REF", ci, f"a {name} event")
        return Refs(ci, f"origin/{target}", head, "GITHUB_BASE_REF and GITHUB_SHA")
    if name == "push":
        before = str(event.get("before") or "")
        if not before or before == _NO_COMMIT:
            raise UnknownChangeError(
                f"{ci}: this push has no commit before it (it created the branch), so there "
                "is no change to compare",
                fix="pass --all to take every service, or --base REF",
            )
        return Refs(ci, before, head, "the push event's 'before' (GITHUB_EVENT_PATH) and "
                    "GITHUB_SHA")  # fmt: skip
    raise UnknownChangeError(
        f"{ci}: a {name or 'unnamed'} event (GITHUB_EVENT_NAME) names no change",
        fix="run on pull_request or push, or pass --base REF (or --all)",
    )


def _gitlab(env: Mapping[str, str]) -> Refs:
    ci = "GitLab CI"
    head = env.get("CI_COMMIT_SHA") or "HEAD"
    if env.get("CI_PIPELINE_SOURCE") == "merge_request_event":
        base = _required(env, "CI_MERGE_REQUEST_DIFF_BASE_SHA", ci, "a merge request pipeline")
        return Refs(ci, base, head, "CI_MERGE_REQUEST_DIFF_BASE_SHA and CI_COMMIT_SHA")
    before = env.get("CI_COMMIT_BEFORE_SHA", "")
    if not before or before == _NO_COMMIT:
        raise UnknownChangeError(
            f"{ci}: CI_COMMIT_BEFORE_SHA names no commit (a new branch, or a pipeline not "
            "started by a push)",
            fix="pass --all to take every service, or --base REF",
        )
    return Refs(ci, before, head, "CI_COMMIT_BEFORE_SHA and CI_COMMIT_SHA")


def _jenkins(env: Mapping[str, str]) -> Refs:
    ci = "Jenkins"
    head = env.get("GIT_COMMIT") or "HEAD"
    if env.get("CHANGE_ID"):
        target = _required(env, "CHANGE_TARGET", ci, "a pull request build (CHANGE_ID)")
        return Refs(ci, f"origin/{target}", head, "CHANGE_TARGET and GIT_COMMIT")
    before = env.get("GIT_PREVIOUS_SUCCESSFUL_COMMIT", "")
    if not before:
        raise UnknownChangeError(
            f"{ci}: GIT_PREVIOUS_SUCCESSFUL_COMMIT is not set (the branch's first build, or "
            "a job without the Git plugin)",
            fix="pass --all to take every service, or --base REF",
        )
    return Refs(ci, before, head, "GIT_PREVIOUS_SUCCESSFUL_COMMIT and GIT_COMMIT")


def _required(env: Mapping[str, str], name: str, ci: str, what: str) -> str:
    value = env.get(name, "")
    if not value:
        raise UnknownChangeError(f"{ci}: {name} is empty in {what}",
                                 fix="pass --base REF (or --all)")  # fmt: skip
    return value


def fork(env: Mapping[str, str], *, event: Mapping[str, Any] | None = None) -> str | None:
    """Which fork the pull request of this CI run comes from (as the CI names it), None
    when it is not a fork's pull request or the CI does not say."""
    if env.get("GITHUB_ACTIONS") == "true":
        repo = _field(_field(_field(event, "pull_request"), "head"), "repo")
        return str(repo.get("full_name") or "a fork") if repo.get("fork") is True else None
    if env.get("GITLAB_CI") == "true":
        source = env.get("CI_MERGE_REQUEST_SOURCE_PROJECT_ID")
        if source and source != env.get("CI_MERGE_REQUEST_PROJECT_ID"):
            return env.get("CI_MERGE_REQUEST_SOURCE_PROJECT_PATH") or f"project {source}"
        return None
    if env.get("JENKINS_URL") and env.get("CHANGE_FORK"):
        return env["CHANGE_FORK"]
    return None


def _field(mapping: Mapping[str, Any] | None, name: str) -> Mapping[str, Any]:
    """``mapping[name]`` when it is a mapping, else an empty one (the event is GitHub's
    JSON; a field it lacks or holds differently reads as absent, never as an error)."""
    value = (mapping or {}).get(name)
    return value if isinstance(value, Mapping) else {}


def github_annotation(file: str, title: str, message: str, *, line: int | None = None) -> str:
    """A GitHub Actions workflow command that shows ``message`` as an error on ``file``
    (at ``line``) in the pull request (its data and properties escaped as GitHub
    documents)."""

    def data(text: str) -> str:
        return text.replace("%", "%25").replace("\r", "%0D").replace("\n", "%0A")

    def prop(text: str) -> str:
        return data(text).replace(":", "%3A").replace(",", "%2C")

    at = f",line={line}" if line is not None else ""
    return f"::error file={prop(file)}{at},title={prop(title)}::{data(message)}"


def line_of(template_text: str, field: str) -> int | None:
    """The line of a template where ``field`` (a rendered object's dotted path, such as
    ``spec.template.spec.containers[0].image``) is most likely written: the first line
    that sets its last key. None when no line does (a value from a helper, say)."""
    key = field.rsplit(".", 1)[-1].split("[", 1)[0]
    if not key or key == "(document)":
        return None
    for number, line in enumerate(template_text.splitlines(), start=1):
        stripped = line.lstrip(" -")
        if stripped.startswith((f"{key}:", f'"{key}":')):
            return number
    return None
