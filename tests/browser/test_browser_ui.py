"""The playground and the dashboard in real headless Chromium."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest
from harness import Running

pytestmark = pytest.mark.browser
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
    expect(card.locator('li[data-step="fetch api key"] .out')).to_have_text("[REDACTED]")
    expect(card.locator(".logs")).to_contain_text("Hello, Ada!", timeout=LONG)
    expect(card.locator('[data-role="output"]')).to_contain_text('"letters":8')
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
    expect(page.locator("#detail-result")).to_contain_text('"ok":true')
    page.screenshot(path=str(artifacts / "dashboard.png"), full_page=True)
