"""The dashboard on a whole `tenantry up` platform: three local clusters (each with a
real node where the machine can run containers), the S3/SQS server, the deployer
workers, the Tenantry server, HAProxy and the monitoring stack, all started by the
`tenantry` command in a state directory of this module's own and stopped with
`tenantry down`.

alice asks for payments/api 1.4.0 in production with the CLI; carol (checkout) has no
Approve button for it and her forged POST is refused; bob signs in in Chromium, approves
it with the button and watches — without reloading — the workers take the canary to
50 % of live traffic and then to the primary, and the history gain the entry.
A screenshot of each step is kept (see conftest); the one during the canary is the
README's picture.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from playwright.sync_api import Page, expect

from tests.browser.test_dashboard_browser import pages, shot, sign_in

__all__ = ["pages"]  # the fixture, shared

REPO = Path(__file__).parents[2] / "examples" / "platform-repo"
# The longest the workers may take from the approval to the primary: the canary and the
# primary's helm upgrades with real pods, and three analysis intervals at 5 s.
ROLLOUT_MS = 240_000
# A page's answer while the machine deploys (the default 5 s is for an idle machine).
LOADED_MS = 30_000


@dataclass(frozen=True)
class Platform:
    """A running `tenantry up` platform: its server and how to run the command on it."""

    url: str
    env: dict[str, str]
    logs: Path

    def cli(self, *args: str, token: str | None = None) -> str:
        """`tenantry ARGS` on this platform; the test fails with the output if it fails."""
        env = {**self.env, **({"TENANTRY_TOKEN": token} if token else {})}
        done = subprocess.run([sys.executable, "-m", "tenantry", *args], env=env,
                              capture_output=True, text=True, timeout=900)  # fmt: skip
        shown = "(a token)\n" if args[0] == "local-token" else done.stdout
        with (self.logs / "cli.log").open("a") as log:
            log.write(f"$ tenantry {' '.join(args)}\n{shown}{done.stderr}\n")
        if done.returncode != 0:
            pytest.fail(f"tenantry {' '.join(args)} failed ({done.returncode}):\n"
                        f"{done.stdout[-3000:]}\n{done.stderr[-3000:]}")  # fmt: skip
        return done.stdout

    @property
    def state(self) -> Path:
        return Path(self.env["TENANTRY_STATE_DIR"])

    def token(self, person: str) -> str:
        return self.cli("local-token", person).strip()


@pytest.fixture(scope="module")
def platform(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Platform]:
    root = tmp_path_factory.mktemp("up")
    env = {**os.environ, "TENANTRY_STATE_DIR": str(root / "state"),
           "XDG_CONFIG_HOME": str(root / "config"),  # no `tenantry login` of the developer's
           "TENANTRY_REPO": str(REPO)}  # fmt: skip
    env.pop("TENANTRY_SERVER", None)
    env.pop("TENANTRY_TOKEN", None)
    starting = Platform("", env, root)
    try:
        starting.cli("up")
        starting.cli("tenants", "apply")
        starting.cli("publish", "--all", "--wait", "180")
        yield Platform(_server_url(env), env, root)
    finally:
        subprocess.run([sys.executable, "-m", "tenantry", "down"], env=env, timeout=600,
                       stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)  # fmt: skip


def _server_url(env: dict[str, str]) -> str:
    found = subprocess.run(
        [sys.executable, "-c", "from tenantry.local import server; print(server.url() or '')"],
        env=env, capture_output=True, text=True, check=True, timeout=60,
    ).stdout.strip()  # fmt: skip
    assert found.startswith("http://127.0.0.1:"), f"`tenantry up` started no server: {found!r}"
    return found


def _forge_approval(page: Page, number: int) -> None:
    """A form of the page's own making, with the session's CSRF token, posted to approve."""
    page.evaluate(
        """number => {
            const form = document.createElement("form");
            form.method = "post";
            form.action = `/promotions/${number}/approve`;
            form.appendChild(document.querySelector("input[name=csrf]").cloneNode());
            document.body.appendChild(form);
            form.submit();
        }""",
        number,
    )


def test_bob_approves_in_the_browser_and_watches_the_canary_reach_the_primary(
    platform: Platform, pages: Any, screenshots: Path
) -> None:
    alice = platform.token("alice@acme.example")
    asked = json.loads(platform.cli("-o", "json", "promote", "payments/api", "1.4.0",
                                    "--to", "production", token=alice))  # fmt: skip
    number = asked["id"]

    carol: Page = pages()
    sign_in(carol, platform.url, platform.token("carol@acme.example"))
    expect(carol.locator("#refusal")).to_contain_text("Refused (404)")  # not her tenant
    expect(carol.get_by_role("button", name=f"Approve promotion {number}")).to_have_count(0)
    carol.goto(f"{platform.url}/")
    _forge_approval(carol, number)
    expect(carol.locator("#refusal")).to_contain_text("Refused (404)")
    shot(carol, screenshots, "up-1-carol-refused")
    shown = json.loads(platform.cli("-o", "json", "promotions", "--status", "pending",
                                    token=alice))  # fmt: skip
    assert number in [p["id"] for p in _items(shown)]  # still pending: nothing changed

    platform.cli("monitoring", "demo", "payments", "--wait", "0")  # a firing alert
    # Users' traffic for the canary analysis, bounded; stopped by its pid.
    load = subprocess.Popen(
        [sys.executable, "-m", "tenantry", "traffic", "load", "payments/api", "--rate", "40",
         "--seconds", "300"], env=platform.env, stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )  # fmt: skip
    try:
        bob: Page = pages()
        sign_in(bob, platform.url, platform.token("bob@acme.example"))
        bob.goto(f"{platform.url}/")
        expect(bob.locator("#tenant-payments")).to_be_visible()
        expect(bob.locator("#tenant-checkout")).to_have_count(0)
        expect(bob.locator("#alerts-payments")).to_contain_text("TenantryDemo")
        expect(bob.locator("#waiting")).to_contain_text(f"#{number}")
        shot(bob, screenshots, "up-2-bob-overview")

        bob.get_by_role("link", name="payments/api").first.click()
        expect(bob.locator("#matrix")).to_contain_text("staging")
        bob.get_by_role("button", name=f"Approve promotion {number}").click()
        # The approval starts the worker's deploy to the canary cluster (its real node
        # busy at once): on 2 cores the page may take longer than Playwright's 5 s.
        expect(bob.locator(f"#promotion-{number}")).to_have_count(0, timeout=LOADED_MS)
        # From here on the page only follows the server's events.
        bob.evaluate("window.notReloaded = true")
        # "live", or "live · updated <time>" once the first change has arrived.
        expect(bob.locator("#live")).to_have_text(re.compile(r"^live\b"), timeout=LOADED_MS)

        expect(bob.locator("#canary-state")).to_contain_text("50 % of live traffic",
                                                             timeout=ROLLOUT_MS)  # fmt: skip
        shot(bob, screenshots, "up-3-canary-at-50")
        # The README's picture: the page down to the end of the canary panel.
        panel = bob.locator("#canary").bounding_box()
        assert panel is not None
        bob.screenshot(path=str(screenshots / "up-3-canary-at-50-top.png"), full_page=True,
                       clip={"x": 0, "y": 0, "width": 1280,
                             "height": panel["y"] + panel["height"] + 16})  # fmt: skip
        expect(bob.get_by_role("heading", name="Canary 1.4.0: promoted")).to_be_visible(
            timeout=ROLLOUT_MS
        )
        expect(bob.locator("#matrix tr", has_text="prod-primary")).to_contain_text(
            "1.4.0", timeout=ROLLOUT_MS
        )
        entry = bob.locator("#history tr", has_text="prod-primary").first
        expect(entry).to_contain_text("succeeded")
        work = bob.locator("#work > ul > li").first  # the worker's operation and its lines
        expect(work).to_contain_text("approve → production: succeeded", timeout=ROLLOUT_MS)
        expect(work.locator("ol.progress li").first).to_be_visible()
        assert bob.evaluate("window.notReloaded") is True
        shot(bob, screenshots, "up-4-promoted")
    finally:
        load.terminate()
        load.wait(timeout=60)
    logs = "".join(p.read_text(errors="replace") for p in platform.state.rglob("*.log"))
    leaked = [who for who in ("alice", "bob", "carol")
              if platform.token(f"{who}@acme.example") in logs]  # fmt: skip
    assert leaked == [], f"the tokens of {leaked} are in the platform's logs"


def _items(listing: Any) -> list[dict[str, Any]]:
    return listing["items"] if isinstance(listing, dict) else listing
