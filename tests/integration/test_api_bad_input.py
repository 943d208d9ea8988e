"""Property tests: whatever body a caller with a valid token POSTs, the real Tenantry
server answers 4xx with a JSON ``error`` naming the field (or does what a valid body
asks), never 5xx, never a traceback, and a refused body changes nothing in the ledger.

The oracle is the server's own request models: a body they refuse must be refused
with the field named. Targets are live — a pending promotion, a running canary — so a
body that slipped through would show as a changed ledger, not as a harmless 409.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

import httpx2
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from pydantic import BaseModel, ValidationError

from tenantry.ledger import Ledger, now, tables
from tenantry.server import actions
from tests.integration.test_promotion import production
from tests.integration.test_server import Running, running

__all__ = ["production", "running"]  # the server and its clusters, as test_server has them

PER_ENDPOINT = settings(
    max_examples=30,
    deadline=None,
    derandomize=True,
    database=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)

ODD = [
    "",
    "José",
    "../../etc/passwd",
    "echo/../other",
    "a" * 100_000,
    "a\x00b",
    "\ud800",  # a lone surrogate: valid JSON (as \ud800), not encodable as UTF-8
    "'\"",
    "echo/web",
    "echo/web\n",
    "1.0.0",
    "1.0.0\n",
    "production",
    "pause",
]
odd_text = st.sampled_from(ODD) | st.text(max_size=30)
json_scalars = (
    st.none()
    | st.booleans()
    | st.integers()
    | st.sampled_from([2**64, -(2**70)])
    | st.floats(allow_nan=False, allow_infinity=False)
    | odd_text
)
json_values = st.recursive(
    json_scalars,
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(odd_text, inner, max_size=3),
    max_leaves=12,
)


def bodies(valid: dict[str, Any]) -> st.SearchStrategy[Any]:
    """Anything JSON, or ``valid`` with one field replaced, removed, or one added."""

    @st.composite
    def mutated(draw: st.DrawFn) -> dict[str, Any]:
        body = dict(valid)
        kind = draw(st.sampled_from(["replace", "remove", "add"]))
        if kind == "add" or not body:
            body[draw(odd_text | st.sampled_from(["approvedBy", "to", "reason"]))] = draw(
                json_values
            )
        else:
            field = draw(st.sampled_from(sorted(body)))
            if kind == "remove":
                del body[field]
            else:
                body[field] = draw(json_values)
        return body

    return mutated() | json_values


@dataclass
class Target:
    """The live promotion the bodies are aimed at (replaced once a valid one declines it)."""

    promotion: int


def _ledger_state(running: Running) -> tuple[Any, ...]:
    with Ledger.open(running.database) as ledger, ledger.session() as session:
        return (
            session.query(tables.Promotion).count(),
            session.query(tables.Operation).count(),
            tuple((p.id, p.status, p.reason) for p in session.query(tables.Promotion)),
            tuple((c.id, c.status, c.reason) for c in session.query(tables.Canary)),
        )


def _pending(running: Running) -> int:
    """A pending promotion of echo/web requested by erin (so alice may approve it)."""
    with Ledger.open(running.database) as ledger:
        row = ledger.add(tables.Promotion(
            tenant="echo", service="web", version="0.0.2", digest="0" * 64,
            environment="production", requested_by="erin", requested_at=now(),
            status="pending", reason="",
        ))  # fmt: skip
        return row.id


@pytest.fixture(scope="module")
def target(running: Running) -> Target:
    with Ledger.open(running.database) as ledger:
        # Paused, not running: no controller drives it, yet resume/abort would change it.
        ledger.add(tables.Canary(tenant="echo", service="web", version="0.0.2", step=1,
                                 weight=10, passes=0, failures=0, status="paused",
                                 reason="bad-input target", updated=now()))  # fmt: skip
    return Target(promotion=_pending(running))


def post(api: httpx2.Client, path: str, content: bytes | None, content_type: str) -> Any:
    # Encoded here, ASCII-escaped, so lone surrogates travel as valid JSON text.
    headers = {"Content-Type": content_type} if content is not None else {}
    return api.post(path, content=content, headers=headers)


def encode(body: Any) -> bytes:
    return json.dumps(body, ensure_ascii=True).encode()


def refused_properly(answer: httpx2.Response, fields: set[str]) -> None:
    """A 4xx whose JSON ``error`` names one of ``fields``, with no traceback."""
    assert 400 <= answer.status_code < 500, (answer.status_code, answer.text[:2000])
    assert "Traceback" not in answer.text
    refusal = answer.json()
    assert isinstance(refusal, dict) and isinstance(refusal.get("error"), str), refusal
    assert any(f in refusal["error"] for f in fields), (fields, refusal)
    assert len(answer.content) < 20_000, "a refusal must not echo a huge body back"


def check(
    running: Running, token: str, path: str, body: Any, model: type[BaseModel] | None,
    *, optional: bool,
) -> None:  # fmt: skip
    """POST ``body``; if ``model`` (the server's own) refuses it, so must the server,
    naming the field, with the ledger unchanged. ``optional``: no body at all is fine."""
    expected_fields: set[str] = set()
    valid = body is None and optional
    if not valid:
        try:
            if model is None or not isinstance(body, dict):
                raise TypeError("the body must be an object")
            model.model_validate(body)
            valid = True
        except ValidationError as e:
            expected_fields = {str(err["loc"][0]) for err in e.errors() if err["loc"]}
            # A name no one could read is shown escaped; then "body" is enough.
            expected_fields = {
                f if f.isprintable() and len(f) <= 100 else "body" for f in expected_fields
            }
        except TypeError:
            pass
        if not expected_fields:
            expected_fields = {"body"}
    before = _ledger_state(running)
    with running.as_(token) as api:
        answer = post(api, path, None if body is None else encode(body), "application/json")
    assert answer.status_code < 500, (path, body if len(repr(body)) < 500 else "…",
                                      answer.status_code, answer.text[:2000])  # fmt: skip
    assert "Traceback" not in answer.text
    if valid:
        return  # the state decides (201/202/200 or 404/409); covered by test_server
    refused_properly(answer, expected_fields)
    assert _ledger_state(running) == before, f"a refused body changed the ledger: {body!r}"


# Bodies a valid one would act on are left out where acting would start real work
# (an approval queues a production deploy): success is test_server's business.
def _not_empty(body: Any) -> bool:
    return body not in (None, {})


@PER_ENDPOINT
@given(body=bodies({"service": "echo/web", "version": "1.0.0", "environment": "production"}))
def test_promotion_requests(running: Running, tokens: dict[str, str], body: Any) -> None:
    check(running, tokens["alice"], "/promotions", body, actions.PromotionRequest,
          optional=False)  # fmt: skip


@PER_ENDPOINT
@given(body=bodies({"service": "echo/web", "environment": "production", "to": "1.0.0"}))
def test_rollbacks(running: Running, tokens: dict[str, str], body: Any) -> None:
    check(running, tokens["alice"], "/rollbacks", body, actions.RollbackRequest, optional=False)


@pytest.mark.parametrize("verb", ["reject", "cancel"])
@PER_ENDPOINT
@given(body=bodies({"reason": "not now"}))
def test_declining(
    running: Running, tokens: dict[str, str], target: Target, verb: str, body: Any
) -> None:
    check(running, tokens["alice"], f"/promotions/{_live(running, target)}/{verb}", body,
          actions.Reason, optional=True)  # fmt: skip


def _live(running: Running, target: Target) -> int:
    # A valid reason really declines it; the next example gets a new pending one.
    with Ledger.open(running.database) as ledger:
        row = ledger.promotion(target.promotion)
        if row is not None and row.status == "pending":
            return target.promotion
    target.promotion = _pending(running)
    return target.promotion


class _Nothing(BaseModel):
    model_config = {"extra": "forbid"}


@PER_ENDPOINT
@given(body=bodies({}).filter(_not_empty))
def test_approving(running: Running, tokens: dict[str, str], target: Target, body: Any) -> None:
    check(running, tokens["alice"], f"/promotions/{_live(running, target)}/approve", body,
          _Nothing, optional=True)  # fmt: skip


@pytest.mark.parametrize("action", ["pause", "resume", "abort"])
@PER_ENDPOINT
@given(body=bodies({}).filter(_not_empty))
def test_canary_control(
    running: Running, tokens: dict[str, str], target: Target, action: str, body: Any
) -> None:
    check(running, tokens["alice"], f"/canaries/echo/web/{action}", body, _Nothing,
          optional=True)  # fmt: skip


ENDPOINTS = ["/promotions", "/rollbacks", "/promotions/{p}/approve", "/promotions/{p}/reject",
             "/promotions/{p}/cancel", "/canaries/echo/web/pause",
             "/canaries/echo/web/resume", "/canaries/echo/web/abort"]  # fmt: skip
MALFORMED = [
    (b'{"service": ', "application/json"),
    (b"\xff\xfe not utf-8", "application/json"),
    (b"[1, 2]", "application/json"),
    (b'"a string"', "application/json"),
    (b"42", "application/json"),
    (b"[" * 100_000, "application/json"),
    (b"1" * 5000, "application/json"),
    (b'{"reason": "x"}', "text/plain"),
    (b"service=echo/web&version=1.0.0", "application/x-www-form-urlencoded"),
    (b'{"service": "echo/web", "version": "1.0.0"}', "application/xml"),
]


@pytest.mark.parametrize("path", ENDPOINTS)
def test_malformed_json_non_objects_and_wrong_content_types_are_refused(
    running: Running, tokens: dict[str, str], target: Target, path: str
) -> None:
    for content, content_type in MALFORMED:
        before = _ledger_state(running)
        with running.as_(tokens["alice"]) as api:
            answer = post(api, path.format(p=_live(running, target)), content, content_type)
        refused_properly(answer, {"body"})
        assert _ledger_state(running) == before, (path, content[:40], content_type)


@PER_ENDPOINT
@given(number=st.integers() | st.sampled_from([2**31, 2**63, 2**64, -(2**63) - 1]))
def test_any_promotion_number_is_found_or_not(
    running: Running, tokens: dict[str, str], number: int
) -> None:
    before = _ledger_state(running)
    with running.as_(tokens["alice"]) as api:
        answer = api.post(f"/promotions/{number}/reject", json={"reason": "x"})
        shown = api.get(f"/promotions/{number}")
    for response in (answer, shown):
        # 200: one of the pending promotions made here, really declined.
        assert response.status_code in (200, 404, 409, 422), (number, response.text[:500])
        assert isinstance(response.json().get("error"), str)
    if answer.status_code != 200:
        assert _ledger_state(running) == before
