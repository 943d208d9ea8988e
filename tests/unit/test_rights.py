"""Who may do what: the whole decision table, from the tenant files and platform.yaml."""

from __future__ import annotations

import base64
import json
from pathlib import Path

import httpx2
import pytest

from tenantry import errors
from tenantry.cli import client
from tenantry.deploy import promotion
from tenantry.server import app, context, identity, rights
from tenantry.spec import models, repository

EXAMPLE = Path(__file__).resolve().parents[2] / "examples" / "platform-repo"
REPO = repository.load(EXAMPLE)
PAYMENTS = REPO.tenant("payments")
CHECKOUT = REPO.tenant("checkout")  # selfApproval: true

ALICE = rights.Person("alice@acme.example")  # owner of payments (user)
LEAD = rights.Person("lee", frozenset({"payments-leads"}))  # owner of payments (group)
ERIN = rights.Person("erin@acme.example")  # member of payments (user)
DEV = rights.Person("dev", frozenset({"payments-devs", "unrelated"}))  # member (group)
CAROL = rights.Person("carol@acme.example")  # owner of checkout only
DANA = rights.Person("dana@acme.example")  # platform admin (user)
OPS = rights.Person("ops", frozenset({"platform-admins"}))  # platform admin (group)
NOBODY = rights.Person("mallory")

ACTIONS: tuple[rights.Right, ...] = (
    "read", "request", "cancel", "approve", "reject", "rollback", "pause", "resume", "abort",
    "retry", "secrets", "audit", "redrive",
)  # fmt: skip
PLATFORM = {"audit", "redrive"}  # rights on the platform as a whole, not on a tenant
OWNER = {"read", "request", "cancel", "approve", "reject", "rollback", "pause", "resume", "abort",
         "retry", "secrets"}  # fmt: skip
MEMBER = {"read", "request"}

TABLE = [
    (ALICE, OWNER),
    (LEAD, OWNER),
    (ERIN, MEMBER),
    (DEV, MEMBER),
    (CAROL, set()),
    (NOBODY, set()),
    (DANA, set(ACTIONS)),
    (OPS, set(ACTIONS)),
]


@pytest.mark.parametrize(("person", "allowed"), TABLE, ids=lambda v: getattr(v, "username", ""))
def test_rights_on_payments(person: rights.Person, allowed: set[str]) -> None:
    got = {
        right
        for right in ACTIONS
        if rights.decide(person, right, tenant=PAYMENTS if right not in PLATFORM else None,
                         platform=REPO.platform).allowed
    }  # fmt: skip
    assert got == allowed


def test_a_refusal_names_the_right_and_who_holds_it() -> None:
    decision = rights.decide(ERIN, "approve", tenant=PAYMENTS, platform=REPO.platform)
    assert not decision.allowed
    assert decision.reason == "erin@acme.example lacks the right 'approve' on tenant payments"
    assert "owners of payments (users alice@acme.example, bob@acme.example; groups " \
           "payments-leads)" in decision.holders  # fmt: skip
    assert "platform admins (users dana@acme.example; groups platform-admins)" in decision.holders
    assert "members of" not in decision.holders


def test_nobody_approves_their_own_request_without_self_approval() -> None:
    for person in (ALICE, DANA):
        decision = rights.decide(person, "approve", tenant=PAYMENTS, platform=REPO.platform,
                                 requested_by=person.username)  # fmt: skip
        assert not decision.allowed
        assert "cannot also approve it" in decision.reason
        assert decision.holders.endswith("other than the requester")
    bob = rights.Person("bob@acme.example")
    assert rights.decide(bob, "approve", tenant=PAYMENTS, platform=REPO.platform,
                         requested_by=ALICE.username).allowed  # fmt: skip


def test_self_approval_when_the_tenant_allows_it() -> None:
    assert rights.decide(CAROL, "approve", tenant=CHECKOUT, platform=REPO.platform,
                         requested_by=CAROL.username).allowed  # fmt: skip


def test_members_cancel_only_their_own_requests() -> None:
    assert rights.decide(ERIN, "cancel", tenant=PAYMENTS, platform=REPO.platform,
                         requested_by=ERIN.username).allowed  # fmt: skip
    assert not rights.decide(ERIN, "cancel", tenant=PAYMENTS, platform=REPO.platform,
                             requested_by=ALICE.username).allowed  # fmt: skip
    # Being the requester is no right on another tenant.
    assert not rights.decide(CAROL, "cancel", tenant=PAYMENTS, platform=REPO.platform,
                             requested_by=CAROL.username).allowed  # fmt: skip


def test_roles() -> None:
    assert [rights.role(p, PAYMENTS, REPO.platform) for p in (ALICE, ERIN, CAROL, DANA)] == [
        "owner", "member", "none", "admin",
    ]  # fmt: skip
    no_server = REPO.platform.model_copy(update={"server": None})
    assert rights.role(DANA, PAYMENTS, no_server) == "none"


def _jwt(claims: dict[str, object]) -> str:
    def part(data: dict[str, object]) -> str:
        return base64.urlsafe_b64encode(json.dumps(data).encode()).decode().rstrip("=")

    return f"{part({'alg': 'RS256'})}.{part(claims)}.signature"


def test_a_cached_review_never_outlives_the_token() -> None:
    assert identity.jwt_expiry(_jwt({"exp": 1000})) == 1000.0
    assert identity.cache_until(_jwt({"exp": 1005}), now=1000, ttl_s=10) == 1005
    assert identity.cache_until(_jwt({"exp": 9999}), now=1000, ttl_s=10) == 1010
    assert identity.cache_until("static-token", now=1000, ttl_s=10) == 1010
    for not_a_jwt in ("a.b.c", "x", _jwt({"sub": "alice"}), "a.!!!.c"):
        assert identity.jwt_expiry(not_a_jwt) is None


def test_refusals_keep_the_servers_words() -> None:
    forbidden = httpx2.Response(403, json={"error": "erin lacks the right 'approve'",
                                           "fix": "ask one of: owners"})  # fmt: skip
    refused = client._refusal(forbidden)
    assert (refused.status, refused.message, refused.fix) == (
        403, "erin lacks the right 'approve' (HTTP 403)", "ask one of: owners",
    )  # fmt: skip
    unknown = client._refusal(httpx2.Response(401, json={"error": "the token is unknown"}))
    assert unknown.fix == "run `tenantry login` with a current token"
    invalid = client._refusal(httpx2.Response(422, json={"detail": [
        {"loc": ["body", "version"], "msg": "String should match pattern"}]}))  # fmt: skip
    assert invalid.message == "the server refused the request: body.version: String should " \
                              "match pattern"  # fmt: skip


def test_people_write_defaults_to_false_in_production_only() -> None:
    env = REPO.platform.environment
    assert (env("staging").people_may_write, env("production").people_may_write) == (True, False)
    explicit = models.Environment.model_validate(
        {"name": "production", "peopleWrite": True, "clusters": [{"name": "p", "local": "p"}]}
    )
    assert explicit.people_may_write


@pytest.mark.parametrize(("error", "status"), [
    (identity.UnauthenticatedError("no bearer token"), 401),
    (context.ApiError(403, "lacks the right"), 403),
    (errors.UsageError("no service 'a/b'"), 404),
    (promotion.PromotionError("promotion 7 is deployed, not pending"), 409),
    (identity.IdentityUnavailableError("the management cluster could not review"), 503),
    (errors.KubeUnavailableError("the API server did not answer"), 503),
    (errors.ClusterError("no local cluster"), 503),
    (errors.HelmError("helm list failed"), 503),
])  # fmt: skip
def test_errors_become_http_statuses(error: errors.TenantryError, status: int) -> None:
    assert app._status_of(error) == status
