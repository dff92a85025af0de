"""The playground and the dashboard in real headless Chromium: Debian's chromium driven by
Playwright (never a downloaded browser), against a real server."""

from __future__ import annotations

import re
import shutil
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "http"))

from harness import TOKEN, Running, serve

pytestmark = pytest.mark.browser
CHROMIUM = "/usr/bin/chromium"
ARTIFACTS = Path(__file__).resolve().parents[2] / "test-artifacts"
ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Running]:
    with serve(tmp_path_factory.mktemp("dynwf-browser"), admin_token="") as running:
        yield running


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    if shutil.which(CHROMIUM) is None:
        pytest.fail(f"{CHROMIUM} is missing: run scripts/system-deps.sh (apt-get install chromium)")
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        b = p.chromium.launch(executable_path=CHROMIUM, args=ARGS)
        yield b
        b.close()


@pytest.fixture
def page(browser: Any) -> Iterator[Any]:
    context = browser.new_context(viewport={"width": 1440, "height": 960})
    pg = context.new_page()
    errors: list[str] = []
    pg.on("pageerror", lambda exc: errors.append(str(exc)))
    yield pg
    context.close()
    assert not errors, f"JavaScript errors on the page: {errors}"


@pytest.fixture(scope="session")
def artifacts() -> Path:
    ARTIFACTS.mkdir(exist_ok=True)
    return ARTIFACTS


LONG = 90_000  # ms: a hang guard for a busy machine, not a performance check


def test_playground_run_lights_up_its_steps(server: Running, page: Any, artifacts: Path) -> None:
    from playwright.sync_api import expect

    page.goto(f"{server.url}/admin/playground")
    expect(page.locator("#code")).to_have_value(re.compile("TenantWorkflow"))
    page.fill("#payload", '{"name": "Ada"}')
    page.click("#run")
    card = page.locator("article.card").first
    expect(card).to_have_attribute("data-status", "complete", timeout=LONG)
    for name in ("compose greeting", "take a breath", "count letters", "fetch api key"):
        expect(card.locator(f'li[data-step="{name}"]')).to_have_attribute(
            "data-state", "complete", timeout=LONG
        )
    expect(card.locator('li[data-step="count letters"]')).to_contain_text("2 attempts")
    expect(card.locator('li[data-step="count letters"] .attempt')).to_have_text(
        "attempt 1 failed: RuntimeError: flaky service, try again"
    )
    expect(card.locator('li[data-step="fetch api key"] .out')).to_have_text("[REDACTED]")
    expect(card.locator(".logs")).to_contain_text("Hello, Ada!", timeout=LONG)
    expect(card.locator('[data-role="output"]')).to_contain_text('"letters": 8')
    page.screenshot(path=str(artifacts / "playground.png"), full_page=True)

    # an error in the code shows as the run's error
    page.fill("#code", "def broken(:\n")
    page.click("#run")
    expect(page.locator("#run-error")).to_contain_text("line 1")


def test_dashboard_pauses_and_resumes_an_instance(
    server: Running, page: Any, artifacts: Path
) -> None:
    from playwright.sync_api import expect

    with server.client() as client:
        instance_id = client.post("/t/probe/start", json={"name": "Lin"}).json()["id"]
    page.goto(f"{server.url}/admin/")
    row = page.locator(f'#instances tr[data-id="{instance_id}"]')
    expect(row).to_be_visible(timeout=LONG)
    expect(page.locator('#tenants [data-tenant="probe"]')).to_be_visible()
    row.click()
    timeline = page.locator("#timeline")
    expect(timeline.locator('li[data-step="go"]')).to_have_attribute(
        "data-state", "waiting", timeout=LONG
    )
    expect(timeline.locator('li[data-step="secret"] .out')).to_have_text("[REDACTED]")
    expect(page.locator("#logs")).to_contain_text("probe greets Lin", timeout=LONG)

    page.click("#btn-pause")
    expect(page.locator("#detail-badge .badge")).to_have_text("paused", timeout=LONG)
    expect(row.locator(".badge")).to_have_text("paused", timeout=LONG)
    page.click("#btn-resume")
    expect(page.locator("#detail-badge .badge")).to_have_text("waiting", timeout=LONG)

    page.fill("#event-type", "go")
    page.fill("#event-payload", '{"ok": true}')
    page.click("#btn-send")
    expect(page.locator("#detail-badge .badge")).to_have_text("complete", timeout=LONG)
    expect(page.locator("#detail-result")).to_contain_text('"ok": true')
    page.screenshot(path=str(artifacts / "dashboard.png"), full_page=True)


def test_dashboard_asks_for_the_token_and_uses_it(browser: Any, tmp_path: Path) -> None:
    from playwright.sync_api import expect

    with serve(tmp_path, admin_token=TOKEN) as secured:
        context = browser.new_context(viewport={"width": 1280, "height": 800})
        page = context.new_page()
        try:
            page.goto(f"{secured.url}/admin/")
            bar = page.locator(".authbar")
            expect(bar).to_be_visible(timeout=LONG)
            bar.locator("input").fill(TOKEN)
            bar.locator("button").click()
            expect(page.locator('#tenants [data-tenant="etl"]')).to_be_visible(timeout=LONG)
            expect(bar).to_be_hidden()
        finally:
            context.close()
