"""The local platform's people: who gets a token, and the static token file's rows (pure)."""

from __future__ import annotations

import csv
import dataclasses
import io
import itertools
from pathlib import Path

import pytest

from tenantry import errors
from tenantry.local import people
from tenantry.spec import models, repository

EXAMPLE = Path(__file__).resolve().parents[2] / "examples" / "platform-repo"
REPO = repository.load(EXAMPLE)


def with_owners(**owners: tuple[str, ...]) -> repository.Repository:
    """The example repository with payments' owners replaced."""
    payments = REPO.tenant("payments").model_copy(update={"owners": models.People(**owners)})
    tenants = tuple(payments if t.name == "payments" else t for t in REPO.tenants)
    return dataclasses.replace(REPO, tenants=tenants)


def rows(text: str) -> list[list[str]]:
    # Read back as kube-apiserver does: a CSV reader, groups split on ','.
    return list(csv.reader(io.StringIO(text)))


def test_everyone_the_example_names_gets_a_user_and_every_group_a_member() -> None:
    assert [n.user for n in people.named(REPO)] == [
        "carol@acme.example",
        "alice@acme.example",
        "bob@acme.example",
        "erin@acme.example",
        "dana@acme.example",
        "member-of-payments-leads",
        "member-of-payments-devs",
        "member-of-platform-admins",
    ]


def test_each_name_says_where_the_repository_names_it() -> None:
    found = {n.user: n for n in people.named(REPO)}
    assert found["erin@acme.example"].file == "tenants/payments.yaml"
    assert found["erin@acme.example"].field == "members.users.0"
    assert found["dana@acme.example"].file == "platform.yaml"
    assert found["dana@acme.example"].field == "server.admins.users.0"
    assert found["member-of-payments-devs"].group == "payments-devs"


def test_a_person_named_twice_gets_one_user() -> None:
    repo = with_owners(users=("alice@acme.example", "erin@acme.example"), groups=("payments-devs",))
    users = [n.user for n in people.named(repo)]
    assert users.count("erin@acme.example") == 1
    assert users.count("member-of-payments-devs") == 1


def test_real_users_get_no_groups_and_group_users_their_group() -> None:
    assert people.groups_of("alice@acme.example") == ()
    assert people.groups_of("member-of-payments-devs") == ("payments-devs",)
    assert people.groups_of("member-of-") == ()


@pytest.mark.parametrize(
    ("name", "reason"),
    [
        ("doe, jane", "contains a comma"),
        ('jane "jd" doe', "contains a double quote"),
        ("jane\ndoe", "contains a line break"),
        ("jane\rdoe", "contains a line break"),
        ("jane\x00doe", "contains a control character"),
        ("", "is empty"),
    ],
)
def test_a_name_that_would_break_the_token_file_is_refused(name: str, reason: str) -> None:
    problem = people.name_problem(name)
    assert problem is not None and problem.startswith(reason)


@pytest.mark.parametrize("name", ["alice@acme.example", "CN=Alice/O=Acme", "system:anything"])
def test_ordinary_names_are_accepted(name: str) -> None:
    assert people.name_problem(name) is None


def test_a_bad_user_name_is_a_spec_error_naming_file_and_field() -> None:
    repo = with_owners(users=("alice@acme.example", "doe, jane"))
    with pytest.raises(errors.SpecError) as raised:
        people.check(people.named(repo))
    (problem,) = raised.value.problems
    assert (problem.file, problem.field) == ("tenants/payments.yaml", "owners.users.1")
    assert "'doe, jane' contains a comma" in problem.message and problem.fix


def test_a_bad_group_name_is_reported_as_the_group() -> None:
    repo = with_owners(users=("alice@acme.example",), groups=('leads"',))
    with pytest.raises(errors.SpecError) as raised:
        people.check(people.named(repo))
    (problem,) = raised.value.problems
    assert problem.field == "owners.groups.0" and "'leads\"' contains a double quote" in (
        problem.message
    )


def test_a_real_user_may_not_pose_as_a_group_user() -> None:
    repo = with_owners(users=("member-of-platform-admins",))
    with pytest.raises(errors.SpecError, match="names the local group users"):
        people.check(people.named(repo))


def test_the_example_passes_the_check() -> None:
    people.check(people.named(REPO))


def test_merge_keeps_existing_tokens_and_order_and_appends_new_people() -> None:
    counter = itertools.count()
    existing = {"bob": "t-bob", "alice": "t-alice"}
    merged = people.merge(existing, ["alice", "carol", "bob", "dave"], lambda: f"n{next(counter)}")
    assert merged == {"bob": "t-bob", "alice": "t-alice", "carol": "n0", "dave": "n1"}
    assert list(merged) == ["bob", "alice", "carol", "dave"]
    # Someone no longer named keeps their token: nothing is ever taken away here.
    assert people.merge(existing, [], lambda: "x") == existing


TOKEN_A = "A" * 43
TOKEN_B = "b-_9" * 11


def test_csv_rows_are_token_user_uid_and_groups_for_group_users() -> None:
    text = people.render_csv({"alice@acme.example": TOKEN_A, "member-of-payments-devs": TOKEN_B})
    assert rows(text) == [
        [TOKEN_A, "alice@acme.example", "alice@acme.example"],
        [TOKEN_B, "member-of-payments-devs", "member-of-payments-devs", "payments-devs"],
    ]
    assert text.endswith("\n") and "\r" not in text


def test_csv_refuses_a_name_rather_than_writing_a_broken_row() -> None:
    with pytest.raises(errors.TenantryError, match="'doe, jane' contains a comma") as raised:
        people.render_csv({"doe, jane": TOKEN_A})
    assert raised.value.fix


@pytest.mark.parametrize("token", ["", "short", "has,comma" + "x" * 20, "new\nline" + "x" * 20])
def test_csv_refuses_a_token_that_is_not_url_safe_and_never_shows_it(token: str) -> None:
    with pytest.raises(errors.TenantryError) as raised:
        people.render_csv({"alice": token})
    assert "not URL-safe" in str(raised.value)
    if token:
        assert token not in str(raised.value)


def test_tokens_json_must_map_users_to_tokens_and_errors_never_echo_it() -> None:
    assert people.parse_tokens('{"alice": "t"}', file="f.json") == {"alice": "t"}
    for bad in ['["alice"]', '{"alice": 1}', '{"alice": "secret-value"', ""]:
        with pytest.raises(errors.TenantryError, match=r"f\.json is not a JSON object") as raised:
            people.parse_tokens(bad, file="f.json")
        assert "secret-value" not in str(raised.value)
