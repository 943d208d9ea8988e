"""Which change a CI job is about, from GitHub's, GitLab's and Jenkins' own variables
(pure)."""

from __future__ import annotations

from typing import Any

import pytest

from tenantry.verify import ci

SHA = "1" * 40
BEFORE = "2" * 40
ZERO = "0" * 40


@pytest.mark.parametrize(
    ("env", "event", "base", "head"),
    [
        ({"GITHUB_ACTIONS": "true", "GITHUB_EVENT_NAME": "pull_request",
          "GITHUB_BASE_REF": "main", "GITHUB_SHA": SHA}, None, "origin/main", SHA),
        ({"GITHUB_ACTIONS": "true", "GITHUB_EVENT_NAME": "push", "GITHUB_SHA": SHA},
         {"before": BEFORE}, BEFORE, SHA),
        ({"GITLAB_CI": "true", "CI_PIPELINE_SOURCE": "merge_request_event",
          "CI_MERGE_REQUEST_DIFF_BASE_SHA": BEFORE, "CI_COMMIT_SHA": SHA}, None, BEFORE, SHA),
        ({"GITLAB_CI": "true", "CI_PIPELINE_SOURCE": "push", "CI_COMMIT_BEFORE_SHA": BEFORE,
          "CI_COMMIT_SHA": SHA}, None, BEFORE, SHA),
        ({"JENKINS_URL": "http://ci/", "CHANGE_ID": "7", "CHANGE_TARGET": "main",
          "GIT_COMMIT": SHA}, None, "origin/main", SHA),
        ({"JENKINS_URL": "http://ci/", "GIT_PREVIOUS_SUCCESSFUL_COMMIT": BEFORE,
          "GIT_COMMIT": SHA}, None, BEFORE, SHA),
    ],
)  # fmt: skip
def test_each_ci_names_its_change_and_says_which_variables_did(
    env: dict[str, str], event: dict[str, Any] | None, base: str, head: str
) -> None:
    found = ci.from_environment(env, event=event)
    assert found is not None
    assert (found.base, found.head) == (base, head)
    assert found.ci in found.describe() and found.said_by in found.describe()


def test_outside_a_known_ci_nothing_is_guessed() -> None:
    assert ci.from_environment({"CI": "true", "PATH": "/bin"}) is None


@pytest.mark.parametrize(
    ("env", "event", "says"),
    [
        ({"GITHUB_ACTIONS": "true", "GITHUB_EVENT_NAME": "push"}, {"before": ZERO},
         "created the branch"),
        ({"GITHUB_ACTIONS": "true", "GITHUB_EVENT_NAME": "pull_request"}, None,
         "GITHUB_BASE_REF is empty"),
        ({"GITHUB_ACTIONS": "true", "GITHUB_EVENT_NAME": "schedule"}, None,
         "a schedule event (GITHUB_EVENT_NAME) names no change"),
        ({"GITLAB_CI": "true", "CI_COMMIT_BEFORE_SHA": ZERO}, None, "CI_COMMIT_BEFORE_SHA"),
        ({"GITLAB_CI": "true", "CI_PIPELINE_SOURCE": "merge_request_event"}, None,
         "CI_MERGE_REQUEST_DIFF_BASE_SHA is empty"),
        ({"JENKINS_URL": "http://ci/"}, None, "GIT_PREVIOUS_SUCCESSFUL_COMMIT is not set"),
        ({"JENKINS_URL": "http://ci/", "CHANGE_ID": "7"}, None, "CHANGE_TARGET is empty"),
    ],
)  # fmt: skip
def test_a_ci_that_names_no_change_is_refused_with_the_variable_and_the_fix(
    env: dict[str, str], event: dict[str, Any] | None, says: str
) -> None:
    with pytest.raises(ci.UnknownChangeError) as refused:
        ci.from_environment(env, event=event)
    assert says in refused.value.message
    assert refused.value.fix and "--base REF" in refused.value.fix


def test_a_github_annotation_escapes_what_would_end_its_command_early() -> None:
    line = ci.github_annotation("services/a,b/service.yaml", "tenantry policy: a/b",
                                "100% wrong:\nline two\r")  # fmt: skip
    assert line == ("::error file=services/a%2Cb/service.yaml,title=tenantry policy%3A a/b::"
                    "100%25 wrong:%0Aline two%0D")  # fmt: skip


def test_a_findings_line_is_where_its_template_sets_the_fields_last_key() -> None:
    template = "spec:\n  containers:\n    - name: app\n      image: {{ .Values.image }}\n"
    assert ci.line_of(template, "spec.template.spec.containers[0].image") == 4
    assert ci.line_of(template, "spec.template.spec.containers[0].resources") is None
    assert ci.line_of(template, "(document)") is None
    assert (
        ci.github_annotation("a.yaml", "t", "m", line=4) == "::error file=a.yaml,line=4,title=t::m"
    )


@pytest.mark.parametrize(
    ("env", "event", "fork"),
    [
        ({"GITHUB_ACTIONS": "true"},
         {"pull_request": {"head": {"repo": {"full_name": "octo/platform", "fork": True}}}},
         "octo/platform"),
        ({"GITHUB_ACTIONS": "true"},
         {"pull_request": {"head": {"repo": {"full_name": "acme/platform", "fork": False}}}}, None),
        ({"GITHUB_ACTIONS": "true"}, {"before": "abc"}, None),  # a push
        ({"GITHUB_ACTIONS": "true"}, {"pull_request": ["not", "a", "mapping"]}, None),
        ({"GITHUB_ACTIONS": "true"}, {"pull_request": {"head": {"repo": {"fork": "yes"}}}}, None),
        ({"GITLAB_CI": "true", "CI_MERGE_REQUEST_PROJECT_ID": "1",
          "CI_MERGE_REQUEST_SOURCE_PROJECT_ID": "9",
          "CI_MERGE_REQUEST_SOURCE_PROJECT_PATH": "octo/platform"}, None, "octo/platform"),
        ({"GITLAB_CI": "true", "CI_MERGE_REQUEST_PROJECT_ID": "1",
          "CI_MERGE_REQUEST_SOURCE_PROJECT_ID": "1"}, None, None),
        ({"JENKINS_URL": "http://j/", "CHANGE_ID": "7", "CHANGE_FORK": "octo"}, None, "octo"),
        ({"JENKINS_URL": "http://j/", "CHANGE_ID": "7"}, None, None),
        ({"CHANGE_FORK": "octo"}, None, None),  # not in a CI Tenantry knows
    ],
)  # fmt: skip
def test_a_forks_pull_request_is_told_apart(
    env: dict[str, str], event: dict[str, Any] | None, fork: str | None
) -> None:
    assert ci.fork(env, event=event) == fork
