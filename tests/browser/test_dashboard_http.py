"""The dashboard at the HTTP level: the session cookie's flags, CSRF refusals, sign-out,
and a token that never leaves the server."""

from __future__ import annotations

import html
import json
import os
import re
import subprocess
import sys
from collections.abc import Iterator

import httpx2
import yaml

from tenantry.ledger import Ledger, now, tables
from tenantry.server.dashboard.views import HISTORY_PAGE
from tests.browser.conftest import Dashboard

COOKIE = "tenantry_session"


def _nonce(page: str) -> str:
    found = re.search(r'name="csrf" value="([^"]+)"', page)
    assert found, page
    return found.group(1)


def sign_in(http: httpx2.Client, token: str, **headers: str) -> httpx2.Response:
    form = http.get("/signin", headers=headers)
    assert form.status_code == 200
    nonce = _nonce(form.text)
    # Sent by hand: behind TLS the sign-in cookie is Secure, which a client on plain http
    # would keep to itself.
    return http.post("/signin", data={"csrf": nonce, "token": token},
                     headers={**headers, "Cookie": f"tenantry_signin={nonce}"})  # fmt: skip


def test_the_session_cookie_is_opaque_httponly_and_samesite_strict(
    dashboard: Dashboard, tokens: dict[str, str]
) -> None:
    with dashboard.http() as http:
        answer = sign_in(http, tokens["bob"])
        assert (answer.status_code, answer.headers["location"]) == (303, "/")
        cookie = next(c for c in answer.headers.get_list("set-cookie") if c.startswith(COOKIE))
        flags = {f.strip().lower() for f in cookie.split(";")[1:]}
        assert {"httponly", "samesite=strict", "path=/"} <= flags and "secure" not in flags
        assert tokens["bob"] not in cookie
        page = http.get("/")
        assert page.status_code == 200 and "payments" in page.text
        assert tokens["bob"] not in page.text
        assert "default-src 'self'" in page.headers["content-security-policy"]


def test_the_cookie_is_secure_behind_tls(dashboard: Dashboard, tokens: dict[str, str]) -> None:
    # A TLS-terminating proxy on loopback says the browser came over https (uvicorn trusts
    # X-Forwarded-Proto from 127.0.0.1 only).
    with dashboard.http() as http:
        answer = sign_in(http, tokens["bob"], **{"X-Forwarded-Proto": "https"})
    cookie = next(c for c in answer.headers.get_list("set-cookie") if c.startswith(COOKIE))
    assert "secure" in {f.strip().lower() for f in cookie.split(";")[1:]}


def test_a_bad_token_and_a_forged_sign_in_are_refused(
    dashboard: Dashboard, tokens: dict[str, str]
) -> None:
    with dashboard.http() as http:
        bad = sign_in(http, "not-a-token")
        assert bad.status_code == 401 and "unknown, expired or revoked" in bad.text
        forged = http.post("/signin", data={"csrf": "guessed", "token": tokens["bob"]})
        assert forged.status_code == 403
        assert COOKIE not in forged.headers.get("set-cookie", "")


def test_a_post_without_the_csrf_token_is_refused_and_changes_nothing(
    dashboard: Dashboard, tokens: dict[str, str]
) -> None:
    number = dashboard.promotion(requested_by="alice")
    with dashboard.http() as http:
        sign_in(http, tokens["bob"])
        missing = http.post(f"/promotions/{number}/approve", data={})
        wrong = http.post(f"/promotions/{number}/approve", data={"csrf": "x" * 43})
    for answer in (missing, wrong):
        assert answer.status_code == 403
        assert "CSRF token" in answer.text and "nothing was changed" in answer.text
    assert dashboard.status_of(number) == "pending"


def test_sign_out_ends_the_session_and_an_unknown_one_goes_to_sign_in(
    dashboard: Dashboard, tokens: dict[str, str]
) -> None:
    with dashboard.http() as http:
        sign_in(http, tokens["alice"])
        page = http.get("/")
        session = http.cookies[COOKIE]
        assert http.post("/signout", data={"csrf": _nonce(page.text)}).status_code == 303
    with dashboard.http() as http:
        http.cookies.set(COOKIE, session)  # the old id, replayed
        again = http.get("/")
        assert (again.status_code, again.headers["location"].split("?")[0]) == (303, "/signin")
        number = dashboard.promotion(requested_by="erin")
        post = http.post(f"/promotions/{number}/reject", data={"csrf": "x"})
        assert post.headers["location"].startswith("/signin")
    assert dashboard.status_of(number) == "pending"


def test_a_refusal_names_the_right_and_its_holders(
    dashboard: Dashboard, tokens: dict[str, str]
) -> None:
    number = dashboard.promotion(requested_by="alice")
    with dashboard.http() as http:
        sign_in(http, tokens["alice"])
        page = http.get("/services/payments/api")
        assert f"Approve promotion {number}" not in page.text  # her own request
        own = http.post(f"/promotions/{number}/approve", data={"csrf": _nonce(page.text)})
    assert own.status_code == 403
    assert "alice requested this promotion and cannot also approve it" in own.text
    assert "owners of payments" in own.text and "approve" in own.text
    assert dashboard.status_of(number) == "pending"
    with Ledger.open(dashboard.database) as ledger:
        audited = ledger.audit_log(tenants=["payments"], limit=20)
    assert any((a.actor, a.action, a.target, a.status) == (
        "alice", "POST /promotions/{promotion_id}/{verb}", f"/promotions/{number}/approve", 403)
        for a in audited), [(a.actor, a.action, a.status) for a in audited]  # fmt: skip


def test_the_requester_cancels_and_an_owner_rejects_with_a_reason(
    dashboard: Dashboard, tokens: dict[str, str]
) -> None:
    mine, theirs = dashboard.promotion(requested_by="alice"), dashboard.promotion("erin")
    with dashboard.http() as http:
        sign_in(http, tokens["alice"])
        page = http.get("/services/payments/api").text
        assert f"Cancel promotion {mine}" in page and f"Cancel promotion {theirs}" not in page
        csrf = _nonce(page)
        cancelled = http.post(f"/promotions/{mine}/cancel", data={"csrf": csrf})
        too_long = http.post(f"/promotions/{theirs}/reject",
                             data={"csrf": csrf, "reason": "x" * 1001})  # fmt: skip
        assert too_long.status_code == 422 and "reason" in too_long.text
        assert dashboard.status_of(theirs) == "pending"
        rejected = http.post(f"/promotions/{theirs}/reject",
                             data={"csrf": csrf, "reason": "needs the migration first"})  # fmt: skip
    assert cancelled.headers["location"] == rejected.headers["location"] == "/services/payments/api"
    assert (dashboard.status_of(mine), dashboard.status_of(theirs)) == ("cancelled", "rejected")


def test_history_filters_by_result(dashboard: Dashboard, tokens: dict[str, str]) -> None:
    ok, bad = dashboard.deployment("2.0.1"), dashboard.deployment("2.0.2", result="failed")
    with dashboard.http() as http:
        sign_in(http, tokens["erin"])
        failed = http.get("/services/payments/api", params={"result": "failed"}).text
        everything = http.get("/services/payments/api").text
    history = failed[failed.index('id="history"') :]
    assert "2.0.2" in history and "2.0.1" not in history
    assert "2.0.1" in everything[everything.index('id="history"') :]
    assert ok < bad


def _history(page: str) -> tuple[list[tuple[int, str, str]], str, str]:
    """The history table's rows (id, version, environment) and its Older/Newest links."""
    table = page[page.index('id="history"') :]
    table = table[: table.index("</section>")]
    rows = [(int(i), v, e) for i, v, e in
            re.findall(r"<tr><td>(\d+)</td><td>([^<]*)</td><td>([^<]*)</td>", table)]  # fmt: skip
    links = {name: html.unescape(href) for name, href in
             re.findall(r'id="history-(older|newest)" href="([^"]+)"', table)}  # fmt: skip
    return rows, links.get("older", ""), links.get("newest", "")


def test_history_pages_back_with_older_links_keeping_the_filters(
    dashboard: Dashboard, tokens: dict[str, str]
) -> None:
    # More than two pages of deploys, every other one to production.
    count = 2 * HISTORY_PAGE + 10
    with Ledger.open(dashboard.database) as ledger, ledger.session() as session:
        session.add_all([tables.Deployment(
            tenant="payments", service="api", version=f"8.{i}.0", digest="b" * 64,
            environment="production" if i % 2 else "staging",
            cluster="prod-primary" if i % 2 else "staging", actor="worker w1",
            result="succeeded", reason="", started=now(), finished=now(),
        ) for i in range(count)])  # fmt: skip
    with dashboard.http() as http:
        sign_in(http, tokens["erin"])
        first, older, newest = _history(http.get("/services/payments/api").text)
        assert len(first) == HISTORY_PAGE and first[0][1] == f"8.{count - 1}.0"
        assert [r[0] for r in first] == sorted((r[0] for r in first), reverse=True)
        assert older == f"/services/payments/api?before={first[-1][0]}" and newest == ""
        second, _, newest = _history(http.get(older).text)
        assert second[0][0] < first[-1][0] and len(second) == HISTORY_PAGE  # no gap, no repeat
        assert newest == "/services/payments/api"

        # A filter stays on every page: production only, page after page.
        query = {"environment": "production"}
        first, older, _ = _history(http.get("/services/payments/api", params=query).text)
        assert len(first) == HISTORY_PAGE and {r[2] for r in first} == {"production"}
        assert first[0][1] == f"8.{count - 1}.0"
        assert older == f"/services/payments/api?environment=production&before={first[-1][0]}"
        rest, last, newest = _history(http.get(older).text)
        assert {r[2] for r in rest} == {"production"} and rest[0][0] < first[-1][0]
        assert "8.1.0" in {r[1] for r in rest}  # the oldest production deploy is reached
        assert last == "" and newest == "/services/payments/api?environment=production"

        for bad in ("abc", "0", "-1", "9" * 30):
            refused = http.get("/services/payments/api", params={"before": bad})
            assert refused.status_code == 422 and "is not a deployment id" in refused.text


def _next_event(lines: Iterator[str]) -> str:
    """The name of the next event on a server-sent stream (comment lines skipped)."""
    for line in lines:
        if line.startswith("event: "):
            return line.removeprefix("event: ")
    raise AssertionError("the stream ended")


def test_two_peoples_live_streams_of_one_tenant_both_learn_of_a_change(
    dashboard: Dashboard, tokens: dict[str, str]
) -> None:
    # bob (an owner) and erin (a member) watch payments: one shared ledger read serves
    # both streams, and both are told of a deploy; signing out ends bob's stream.
    with dashboard.http() as bob, dashboard.http() as erin:
        sign_in(bob, tokens["bob"])
        sign_in(erin, tokens["erin"])
        csrf = _nonce(bob.get("/").text)
        with bob.stream("GET", "/events") as one, erin.stream("GET", "/events") as two:
            streams = [one.iter_lines(), two.iter_lines()]
            assert [_next_event(lines) for lines in streams] == ["hello", "hello"]
            dashboard.deployment("3.0.0")
            assert [_next_event(lines) for lines in streams] == ["change", "change"]
            assert bob.post("/signout", data={"csrf": csrf}).status_code == 303
            assert _next_event(streams[0]) == "signedout"
            dashboard.deployment("3.0.1")  # erin's stream goes on without bob's
            assert _next_event(streams[1]) == "change"


def test_a_crafted_sign_in_link_cannot_put_words_or_a_redirect_on_the_page(
    dashboard: Dashboard, tokens: dict[str, str]
) -> None:
    with dashboard.http() as http:
        page = http.get("/signin", params={"why": "Call 555-0100 now", "message": "evil",
                                           "next": "//evil.example/x"}).text  # fmt: skip
        assert "555-0100" not in page and "evil" not in page
        assert 'name="next" value="/"' in page
        form = http.get("/signin", params={"next": "https://evil.example/"})
        nonce = _nonce(form.text)
        answer = http.post("/signin", data={"csrf": nonce, "token": tokens["erin"],
                                            "next": "https://evil.example/"},
                           headers={"Cookie": f"tenantry_signin={nonce}"})  # fmt: skip
    assert (answer.status_code, answer.headers["location"]) == (303, "/")


def test_the_api_and_the_cli_show_a_canarys_intervals(
    dashboard: Dashboard, tokens: dict[str, str]
) -> None:
    dashboard.canary(step=0, weight=20)
    dashboard.canary(step=0, weight=20, interval={
        "verdict": "no-data", "reason": "Prometheus unreachable: ConnectError: refused",
    })  # fmt: skip
    dashboard.canary(step=1, weight=50, interval={
        "verdict": "pass", "reason": "success rate 100.00%, p99 12 ms over 41 requests",
        "canary_requests": 41.0, "canary_success_rate": 100.0, "canary_p99_s": 0.012,
        "primary_requests": 160.0, "primary_success_rate": 99.5, "primary_p99_s": 0.011,
    })  # fmt: skip
    answer = httpx2.get(f"{dashboard.url}/api/v1/canaries/payments/api", timeout=30,
                        headers={"Authorization": f"Bearer {tokens['erin']}"})  # fmt: skip
    assert answer.status_code == 200
    quiet, passed = answer.json()["intervals"][-2:]  # oldest first
    assert (quiet["verdict"], quiet["step"], quiet["weight"]) == ("no-data", 0, 20)
    assert quiet["canarySuccessRate"] is None and quiet["canaryRequests"] is None  # not 0
    assert {k: v for k, v in passed.items() if k not in ("at", "reason")} == {
        "step": 0, "weight": 20, "verdict": "pass", "canaryRequests": 41.0,
        "canarySuccessRate": 100.0, "canaryP99Seconds": 0.012, "primaryRequests": 160.0,
        "primarySuccessRate": 99.5, "primaryP99Seconds": 0.011,
    }  # fmt: skip

    env = {**os.environ, "TENANTRY_SERVER": dashboard.url, "TENANTRY_TOKEN": tokens["erin"]}
    table = cli("canary", "status", "payments/api", env=env)
    assert "intervals" in table and "100.00 % vs 99.50 %" in table and "12 ms vs 11 ms" in table
    assert "41 vs 160" in table and "- vs -" in table  # no data: a dash, never 0
    as_json = json.loads(cli("canary", "status", "payments/api", "-o", "json", env=env))
    assert as_json["intervals"][-1]["canaryP99Seconds"] == 0.012
    assert yaml.safe_load(cli("canary", "status", "payments/api", "-o", "yaml",
                              env=env))["intervals"][-2]["verdict"] == "no-data"  # fmt: skip


def cli(*args: str, env: dict[str, str]) -> str:
    done = subprocess.run([sys.executable, "-m", "tenantry", *args], capture_output=True,
                          text=True, env=env, check=False, timeout=120)  # fmt: skip
    assert done.returncode == 0, done.stderr
    return done.stdout
