"""The operators' playground in a real Chromium: pick an agent, chat, watch the native events,
copy the last request as code."""

from __future__ import annotations

import json
from pathlib import Path

from playwright.sync_api import Browser, expect

from tests.conftest import RunningServer


def test_playground_chats_and_shows_every_event(
    browser: Browser, server: RunningServer, artifacts: Path
) -> None:
    context = browser.new_context(viewport={"width": 1280, "height": 900})
    page = context.new_page()
    errors: list[str] = []
    page.on("pageerror", lambda error: errors.append(str(error)))
    page.on("console", lambda m: errors.append(m.text) if m.type == "error" else None)
    try:
        page.goto(f"{server.http_url}/playground")
        page.locator("#key").fill(server.api_key)
        page.get_by_role("button", name="Connect").click()
        agent = page.locator("#agent")
        expect(agent).to_be_enabled()
        expect(agent.locator("option", has_text="support-bot")).to_have_count(1)
        agent.select_option("support-bot")
        expect(page.locator("#messages .assistant").first).to_contain_text("Hi! Ask me about")

        page.locator("#message").fill("Do you ship to Canada?")
        page.get_by_role("button", name="Send").click()
        events = page.locator("#events li")
        expect(page.locator('#events li[data-kind="done"]')).to_have_count(1)
        kinds = events.evaluate_all("(items) => items.map((item) => item.dataset.kind)")
        assert kinds[0] == "POST /v1/sessions"
        assert "session" in kinds and "quick_replies" in kinds
        assert kinds.count("content") >= 3
        assert kinds[-1] == "done"
        done = json.loads(page.locator('#events li[data-kind="done"] pre').inner_text())
        assert done["usage"]["total_tokens"] > 0
        assert done["metrics"]["backend"] == "builtin"
        assert done["sources"][0]["title"] == "Shipping"
        reply = page.locator("#messages .assistant").nth(1)
        expect(reply).to_contain_text("orders to Canada arrive in 5 to 8 business days")
        expect(reply.locator(".cites")).to_contain_text("Shipping")

        snippet = page.locator("#snippet")
        expect(snippet).to_contain_text("curl -N " + server.http_url + "/v1/sessions/sess_")
        expect(snippet).to_contain_text(":stream")
        expect(snippet).to_contain_text('"content":"Do you ship to Canada?"')
        expect(snippet).not_to_contain_text(server.api_key)
        page.get_by_role("tab", name="Python").click()
        expect(snippet).to_contain_text('httpx.stream("POST", url')
        page.get_by_role("tab", name="Node").click()
        expect(snippet).to_contain_text("await fetch(")
        page.get_by_role("tab", name="curl").click()

        page.locator("#quick-replies button", has_text="When are you open?").click()
        expect(page.locator('#events li[data-kind="done"]')).to_have_count(2)
        expect(page.locator("#messages .assistant").nth(2)).to_contain_text("Monday to Friday")
        page.screenshot(path=artifacts / "playground.png", full_page=True)
    finally:
        context.close()
    assert not errors, errors


def test_playground_explains_a_bad_key(browser: Browser, server: RunningServer) -> None:
    context = browser.new_context()
    page = context.new_page()
    try:
        page.goto(f"{server.http_url}/playground")
        page.locator("#key").fill("sk_not-a-key")
        page.get_by_role("button", name="Connect").click()
        expect(page.locator("#notice")).to_contain_text("401")
        expect(page.locator("#notice")).to_contain_text("invalid or revoked API key")
    finally:
        context.close()
