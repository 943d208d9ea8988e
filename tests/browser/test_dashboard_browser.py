"""The dashboard in a real browser (Debian's chromium, driven by Playwright) against a
real server process whose identities come from the session cluster's TokenReview.

Each step is kept as a screenshot (see conftest). Waiting is Playwright's ``expect``,
which polls the page until the condition holds and fails the test otherwise."""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from playwright.sync_api import Browser, Page, expect

from tenantry.server.dashboard import chart
from tests.browser.conftest import Dashboard

WAIT_MS = 15_000


@pytest.fixture
def pages(chromium: Any) -> Iterator[Any]:
    """A fresh browser context (its own cookies) per person."""
    browser: Browser = chromium
    opened = []

    def open_as(width: int = 1280, height: int = 800) -> Page:
        context = browser.new_context(viewport={"width": width, "height": height})
        opened.append(context)
        return context.new_page()

    yield open_as
    for context in opened:
        context.close()


def sign_in(page: Page, url: str, token: str) -> None:
    """Sign in at the dashboard at ``url``, asking first for payments/api's page."""
    page.goto(f"{url}/services/payments/api")
    expect(page.locator("#message")).to_contain_text("your session has ended")
    page.get_by_label("Your token").fill(token)
    page.get_by_role("button", name="Sign in").click()
    expect(page.get_by_text("signed in as")).to_be_visible(timeout=WAIT_MS)
    expect(page).to_have_url(f"{url}/services/payments/api")  # where it was going


def shot(page: Page, where: Path, name: str) -> None:
    page.screenshot(path=str(where / f"{name}.png"), full_page=True)


def test_bob_approves_alices_request_and_open_pages_follow_live(
    dashboard: Dashboard, tokens: dict[str, str], pages: Any, screenshots: Path
) -> None:
    number = dashboard.promotion(requested_by="alice")
    dashboard.fire("payments", "PaymentsErrorBudgetBurn", "critical")
    dashboard.fire("checkout", "CheckoutQueueStuck", "warning")
    bob: Page = pages()
    sign_in(bob, dashboard.url, tokens["bob"])
    bob.goto(f"{dashboard.url}/")
    expect(bob.locator("#tenant-payments")).to_be_visible()
    # Firing alerts from the real Alertmanager, only of the tenants he may see.
    expect(bob.locator("#alerts-payments")).to_contain_text("critical PaymentsErrorBudgetBurn")
    expect(bob.get_by_text("CheckoutQueueStuck")).to_have_count(0)
    bob.evaluate("window.notReloaded = true")
    expect(bob.locator("#live")).to_have_text("live", timeout=WAIT_MS)
    dashboard.fire("payments", "PaymentsDiskFilling", "warning")  # shows up on the open page
    expect(bob.locator("#alerts-payments")).to_contain_text("PaymentsDiskFilling",
                                                            timeout=WAIT_MS)  # fmt: skip
    assert bob.evaluate("window.notReloaded") is True
    # The real ResourceQuota's status, counted by the cluster's quota controller.
    pods = bob.locator("#tenant-payments tr", has_text="prod-primary").filter(has_text="pods")
    expect(pods).to_contain_text("0 / 30")
    expect(bob.locator("#tenant-checkout")).to_have_count(0)  # not his tenant
    expect(bob.locator("#waiting")).to_contain_text(f"#{number}")
    shot(bob, screenshots, "1-bob-overview")
    bob.goto(f"{dashboard.url}/services/checkout/web")
    expect(bob.locator("#refusal")).to_contain_text("Refused (404)")
    shot(bob, screenshots, "2-bob-checkout-refused")

    alice: Page = pages(390, 844)  # a phone
    sign_in(alice, dashboard.url, tokens["alice"])
    expect(alice.locator(f"#promotion-{number}")).to_be_visible()
    expect(alice.get_by_role("button", name=f"Approve promotion {number}")).to_have_count(0)
    alice.evaluate("window.notReloaded = true")
    expect(alice.locator("#live")).to_have_text("live", timeout=WAIT_MS)
    shot(alice, screenshots, "3-alice-phone-pending")

    bob.goto(f"{dashboard.url}/services/payments/api")
    expect(bob.locator("#published")).to_contain_text("cccccccccccc")  # provenance
    approve = bob.get_by_role("button", name=f"Approve promotion {number}")
    expect(approve).to_be_enabled()
    shot(bob, screenshots, "4-bob-service-page")
    approve.focus()
    bob.keyboard.press("Enter")  # keyboard usable
    expect(bob.locator(f"#promotion-{number}")).to_have_count(0, timeout=WAIT_MS)
    # No worker runs here: the approval's operation waits in the queue, and says so.
    expect(bob.locator("#work li").first).to_contain_text("approve → production: queued")
    shot(bob, screenshots, "5-bob-approved")
    assert dashboard.status_of(number) == "approved"

    # alice's open page follows without a reload: the request leaves her pending list,
    # and a deploy the worker records appears in the history.
    expect(alice.locator(f"#promotion-{number}")).to_have_count(0, timeout=WAIT_MS)
    deployed = dashboard.deployment("1.4.1")
    expect(alice.locator("#history")).to_contain_text("1.4.1", timeout=WAIT_MS)
    assert alice.evaluate("window.notReloaded") is True
    shot(alice, screenshots, "6-alice-live-update")
    assert deployed


def test_carol_sees_no_approve_button_and_her_forged_post_is_refused(
    dashboard: Dashboard, tokens: dict[str, str], pages: Any, screenshots: Path
) -> None:
    number = dashboard.promotion(requested_by="alice")
    carol: Page = pages()
    sign_in(carol, dashboard.url, tokens["carol"])
    dashboard.fire("checkout", "CheckoutQueueStuck", "warning")
    carol.goto(f"{dashboard.url}/")
    expect(carol.locator("#tenant-checkout")).to_be_visible()
    expect(carol.locator("#tenant-payments")).to_have_count(0)
    expect(carol.locator("#alerts-checkout")).to_contain_text("warning CheckoutQueueStuck")
    expect(carol.get_by_text("PaymentsErrorBudgetBurn")).to_have_count(0)
    carol.goto(f"{dashboard.url}/services/payments/api")
    expect(carol.locator("#refusal")).to_contain_text("no tenant 'payments' that you may see")
    expect(carol.get_by_role("button", name=f"Approve promotion {number}")).to_have_count(0)
    shot(carol, screenshots, "7-carol-payments-refused")
    # Her own session's CSRF token, on a form she builds herself: the API's rule refuses.
    carol.goto(f"{dashboard.url}/")
    carol.evaluate(
        """number => {
            const form = document.createElement("form");
            form.method = "post";
            form.action = `/promotions/${number}/approve`;
            const csrf = document.querySelector("input[name=csrf]").cloneNode();
            form.appendChild(csrf);
            document.body.appendChild(form);
            form.submit();
        }""",
        number,
    )
    expect(carol.locator("#refusal")).to_contain_text("Refused (404)")
    shot(carol, screenshots, "8-carol-forged-post-refused")
    assert dashboard.status_of(number) == "pending"


def test_a_post_without_csrf_is_refused_and_sign_out_ends_the_session(
    dashboard: Dashboard, tokens: dict[str, str], pages: Any, screenshots: Path
) -> None:
    number = dashboard.promotion(requested_by="alice")
    bob: Page = pages()
    sign_in(bob, dashboard.url, tokens["bob"])
    bob.evaluate(
        """number => {
            const form = document.createElement("form");
            form.method = "post";
            form.action = `/promotions/${number}/approve`;
            document.body.appendChild(form);
            form.submit();
        }""",
        number,
    )
    expect(bob.locator("#refusal")).to_contain_text("CSRF token")
    shot(bob, screenshots, "9-no-csrf-refused")
    assert dashboard.status_of(number) == "pending"
    bob.goto(f"{dashboard.url}/")
    bob.get_by_role("button", name="Sign out").click()
    expect(bob.locator("#message")).to_have_text("signed out")
    bob.goto(f"{dashboard.url}/services/payments/api")
    expect(bob.get_by_label("Your token")).to_be_visible()
    shot(bob, screenshots, "10-signed-out")


def test_rollback_asks_for_confirmation(
    dashboard: Dashboard, tokens: dict[str, str], pages: Any, screenshots: Path
) -> None:
    dashboard.deployment("1.3.9")
    dashboard.deployment("1.4.2")
    bob: Page = pages()
    sign_in(bob, dashboard.url, tokens["bob"])
    bob.get_by_label("Environment", exact=True).first.select_option("staging")
    bob.get_by_label("To version").select_option("1.3.9")
    bob.get_by_role("button", name="Roll back…").click()
    expect(bob.get_by_role("heading", name="Roll back payments/api in staging?")).to_be_visible()
    shot(bob, screenshots, "11-rollback-confirm")
    bob.get_by_role("link", name="No, go back").click()
    expect(bob.locator("#matrix")).to_be_visible()
    assert dashboard.operations("rollback") == []  # asking changed nothing

    bob.get_by_label("To version").select_option("1.3.9")
    bob.get_by_role("button", name="Roll back…").click()
    bob.get_by_role("button", name="Yes, roll back").click()
    expect(bob.locator("#matrix")).to_be_visible()
    (queued,) = dashboard.operations("rollback")
    assert (queued.requested_by, queued.environment, queued.status) == ("bob", "staging",
                                                                        "queued")  # fmt: skip
    assert "1.3.9" in queued.params  # the plan the workers will carry out


# Intervals as the canary controller records them (`Ledger.add_canary_interval`).
QUIET = {"verdict": "no-data", "reason": "3 canary requests in the interval, fewer than 20",
         "canary_requests": 3.0, "primary_requests": 30.0,
         "primary_success_rate": 100.0}  # fmt: skip
GOOD = {"verdict": "pass", "reason": "success rate 100.00%, p99 42 ms over 40 requests",
        "canary_requests": 40.0, "canary_success_rate": 100.0, "canary_p99_s": 0.042,
        "primary_requests": 160.0, "primary_success_rate": 99.9,
        "primary_p99_s": 0.040}  # fmt: skip
FAILING = {**GOOD, "verdict": "fail", "canary_success_rate": 80.0,
           "reason": "success rate 80.00% below the SLO 99.0%"}  # fmt: skip


def test_a_canary_in_progress_owners_pause_it_members_only_watch(
    dashboard: Dashboard, tokens: dict[str, str], pages: Any, screenshots: Path
) -> None:
    dashboard.canary(step=1, weight=10)
    dashboard.canary(step=1, weight=10, interval=QUIET)  # too few requests: no data
    erin: Page = pages(390, 844)  # a phone
    sign_in(erin, dashboard.url, tokens["erin"])
    expect(erin.locator("#canary-state")).to_contain_text("10 % of live traffic")
    expect(erin.get_by_role("button", name="Pause the canary")).to_have_count(0)
    expect(erin.get_by_role("button", name="Abort the canary")).to_have_count(0)
    expect(erin.locator("#intervals tbody tr")).to_have_count(1)
    expect(erin.locator("#intervals tbody tr")).to_contain_text("no-data")
    expect(erin.locator("#intervals tbody tr")).to_contain_text(f"{chart.NONE} / 100 %")
    expect(erin.get_by_role("img", name=re.compile(r"^Success rate.*canary: no figures; "
                                                   r"primary: newest 100 %")))\
        .to_be_visible()  # fmt: skip

    bob: Page = pages()
    sign_in(bob, dashboard.url, tokens["bob"])
    expect(bob.get_by_role("button", name="Resume the canary")).to_have_count(0)
    bob.evaluate("window.notReloaded = true")
    erin.evaluate("window.notReloaded = true")
    expect(bob.locator("#live")).to_have_text("live", timeout=WAIT_MS)
    expect(erin.locator("#live")).to_have_text("live", timeout=WAIT_MS)
    # The worker analyses an interval and moves on: the open pages follow.
    dashboard.canary(step=2, weight=25, interval=GOOD)
    expect(bob.locator("#canary-state")).to_contain_text("25 % of live traffic", timeout=WAIT_MS)
    expect(erin.locator("#canary-state")).to_contain_text("25 % of live traffic", timeout=WAIT_MS)
    newest = bob.locator("#intervals tbody tr").first
    expect(newest).to_contain_text("pass")
    expect(newest).to_contain_text("100 % / 99.90 %")
    expect(newest).to_contain_text("42 ms / 40 ms")
    expect(bob.get_by_role("img", name=re.compile(r"^Success rate, canary vs primary, 2 "
                                                  r"intervals.*canary: newest 100 %")))\
        .to_be_visible()  # fmt: skip
    rate = bob.locator("#chart-success svg")
    expect(bob.locator("#chart-success polyline")).to_have_count(2)  # canary, primary
    expect(bob.get_by_role("img", name=re.compile(r"^p99 latency.*canary: newest 42 ms")))\
        .to_be_visible()  # fmt: skip
    shot(bob, screenshots, "12-canary-running")
    # A failing interval, as the worker writes it: the verdict and the drop show live.
    dashboard.canary(step=2, weight=25, interval=FAILING)
    expect(newest).to_contain_text("fail", timeout=WAIT_MS)
    expect(newest).to_contain_text("80 % / 99.90 %")
    expect(rate).to_have_attribute("aria-label", re.compile(r"canary: newest 80 %, lowest 80 %"))
    expect(erin.locator("#intervals tbody tr")).to_have_count(3, timeout=WAIT_MS)
    assert bob.evaluate("window.notReloaded") is True
    assert erin.evaluate("window.notReloaded") is True
    # On the phone the page fits its width: the table scrolls inside its own box.
    assert erin.evaluate("document.documentElement.scrollWidth <= window.innerWidth")
    assert erin.locator("#chart-p99 svg").bounding_box()["width"] <= 390  # type: ignore[index]
    shot(erin, screenshots, "12-canary-intervals-phone")
    shot(bob, screenshots, "12-canary-failing-interval")
    bob.get_by_role("button", name="Pause the canary").click()
    expect(bob.get_by_role("heading", name="Canary 1.4.0: paused")).to_be_visible()
    expect(bob.get_by_role("button", name="Resume the canary")).to_be_visible()
    assert dashboard.canary_status() == "paused"
    shot(bob, screenshots, "13-canary-paused")


# Every control a person can reach, and what names it for a screen reader.
_UNLABELLED = """() => Array.from(document.querySelectorAll(
    "input:not([type=hidden]), select, textarea, button, a[href]"))
  .filter(el => !(el.labels && el.labels.length) && !el.getAttribute("aria-label")
                && !el.textContent.trim())
  .map(el => el.outerHTML.slice(0, 120))"""


@pytest.mark.parametrize("width", [1280, 390])
def test_every_control_has_a_label_and_the_pages_fit_the_screen(
    dashboard: Dashboard, tokens: dict[str, str], pages: Any, width: int
) -> None:
    dashboard.promotion(requested_by="alice")
    dashboard.canary(step=1, weight=10)
    bob: Page = pages(width, 800 if width > 600 else 844)
    sign_in(bob, dashboard.url, tokens["bob"])
    for path in (
        "/",
        "/services/payments/api",
        "/services/payments/api/rollback?environment=staging",
    ):
        bob.goto(f"{dashboard.url}{path}")
        expect(bob.locator("#main")).to_be_visible()
        assert bob.evaluate(_UNLABELLED) == [], path
        # Wide tables scroll inside their card; the page itself never scrolls sideways.
        overflow = bob.evaluate("document.documentElement.scrollWidth - window.innerWidth")
        assert overflow <= 0, f"{path} is {overflow} px wider than a {width} px screen"
