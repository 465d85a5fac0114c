"""The chat widget in a real Chromium, embedded on a page of another origin than the edge."""

from __future__ import annotations

import itertools
import json
from collections.abc import Callable
from pathlib import Path

import httpx
import pytest
from playwright.sync_api import Browser, Page, Route, expect

from tests.browser.conftest import Site, create_publishable_key, widget_tag
from tests.conftest import RunningServer

# Records each text the reply bubble shows, to see it grow delta by delta.
WATCH_REPLIES = """() => {
  const root = document.querySelector('[data-switchboard-support-bot]').shadowRoot;
  window.replyTexts = [];
  new MutationObserver((records) => {
    for (const record of records) {
      const target = record.target;
      if (target.classList && target.classList.contains('text') &&
          target.closest('.msg.bot') && record.addedNodes.length) {
        window.replyTexts.push(record.addedNodes[0].data);
      }
    }
  }).observe(root.querySelector('.log'), {childList: true, subtree: true});
}"""


def _open_widget(page: Page) -> None:
    launcher = page.locator("button.launcher")
    expect(launcher).to_be_visible()
    launcher.click()
    expect(page.locator(".panel")).to_be_visible()


def _ask(page: Page, question: str) -> None:
    page.locator("textarea#input").fill(question)
    page.locator("textarea#input").press("Enter")


def _session_id(page: Page) -> str:
    keys = page.evaluate("Object.keys(localStorage)")
    [key] = [k for k in keys if k.startswith("switchboard:")]
    return str(page.evaluate("(key) => localStorage.getItem(key)", key))


def test_widget_chats_streams_and_continues_after_a_reload(
    browser: Browser,
    server: RunningServer,
    shop: Site,
    publishable_key: str,
    artifacts: Path,
) -> None:
    url = shop.embed("/", widget_tag(server, publishable_key))
    context = browser.new_context(viewport={"width": 1280, "height": 800})
    page = context.new_page()
    try:
        page.goto(url)
        _open_widget(page)
        expect(page.locator("#title")).to_have_text("Support bot")
        greeting = page.locator(".msg.bot.greeting")
        expect(greeting).to_contain_text("Hi! Ask me about shipping, returns or our opening hours.")
        expect(page.locator(".replies button")).to_have_count(3)
        # The page's hostile `button` rule does not reach into the shadow root.
        background = page.locator("button.launcher").evaluate(
            "(b) => getComputedStyle(b).backgroundColor"
        )
        assert background == "rgb(37, 99, 235)"

        page.evaluate(WATCH_REPLIES)
        _ask(page, "Do you ship to Canada?")
        expect(page.locator(".msg.user")).to_have_text("You: Do you ship to Canada?")
        answer = page.locator(".msg.bot").nth(1)
        expect(answer).to_contain_text("orders to Canada arrive in 5 to 8 business days")
        expect(answer.locator(".sources li")).to_have_text(["Shipping"])
        expect(page.locator(".send")).to_have_text("Send")
        partials = page.evaluate("window.replyTexts")
        assert len(partials) >= 3, partials
        assert all(b.startswith(a) for a, b in itertools.pairwise(partials))
        assert partials[-1].endswith("over $50.")
        # The reply is announced once, whole, to screen readers.
        expect(page.locator(".sr[aria-live]")).to_contain_text("Support bot: We ship to all")
        page.screenshot(path=artifacts / "widget-answer.png")

        page.locator(".replies button", has_text="How do returns work?").click()
        expect(page.locator(".msg.bot").nth(2)).to_contain_text("within 30 days of delivery")
        session = _session_id(page)
        assert session.startswith("sess_")

        page.reload()
        _open_widget(page)
        expect(page.locator(".msg")).to_have_count(5)
        expect(page.locator(".msg.user").nth(1)).to_contain_text("How do returns work?")
        expect(page.locator(".msg.bot").nth(1).locator(".sources li")).to_have_text(["Shipping"])
        _ask(page, "When are you open?")
        expect(page.locator(".msg.bot").nth(3)).to_contain_text("Monday to Friday")
        assert _session_id(page) == session
        page.screenshot(path=artifacts / "widget-after-reload.png")
    finally:
        context.close()

    stored = httpx.get(
        f"{server.http_url}/v1/sessions/{session}/messages",
        headers={"authorization": f"Bearer {server.api_key}"},
    ).json()["messages"]
    assert [m["role"] for m in stored] == ["ROLE_USER", "ROLE_ASSISTANT"] * 3


def test_widget_on_an_origin_its_key_does_not_list_is_refused(
    browser: Browser,
    server: RunningServer,
    stranger: Site,
    publishable_key: str,
    artifacts: Path,
) -> None:
    url = stranger.embed("/", widget_tag(server, publishable_key), title="Not the shop")
    context = browser.new_context()
    page = context.new_page()
    refused: list[str] = []
    page.on("console", lambda message: refused.append(message.text))
    try:
        page.goto(url)
        _open_widget(page)
        expect(page.locator(".status")).to_contain_text("Can't reach the assistant")
        expect(page.locator(".msg")).to_have_count(0)
        # The browser itself refuses: the preflight grants this origin nothing.
        outcome = page.evaluate(
            """async ([base, key]) => {
                try {
                  await fetch(base + '/v1/models/support-bot',
                              {headers: {authorization: 'Bearer ' + key}});
                  return 'read';
                } catch (error) { return 'blocked'; }
            }""",
            [server.http_url, publishable_key],
        )
        assert outcome == "blocked"
        assert any("CORS" in text for text in refused), refused
        page.screenshot(path=artifacts / "widget-refused-origin.png")
    finally:
        context.close()
    preflight = httpx.options(
        f"{server.http_url}/v1/models/support-bot",
        headers={"origin": stranger.origin, "access-control-request-method": "GET"},
    )
    assert preflight.status_code == 403
    assert "access-control-allow-origin" not in preflight.headers


def test_widget_is_keyboard_and_screen_reader_usable_on_a_phone(
    browser: Browser,
    server: RunningServer,
    shop: Site,
    publishable_key: str,
    artifacts: Path,
) -> None:
    url = shop.embed(
        "/phone",
        widget_tag(server, publishable_key, color="#0f766e", position="left", title="Help"),
    )
    context = browser.new_context(
        viewport={"width": 375, "height": 667}, is_mobile=True, has_touch=True
    )
    page = context.new_page()
    try:
        page.goto(url)
        launcher = page.locator("button.launcher")
        expect(launcher).to_have_attribute("aria-expanded", "false")
        expect(launcher).to_have_attribute("aria-label", "Chat with Help")
        box = launcher.bounding_box()
        assert box is not None and box["x"] < 100, "data-position=left puts it on the left"
        assert launcher.evaluate("(b) => getComputedStyle(b).backgroundColor") == (
            "rgb(15, 118, 110)"
        )

        page.keyboard.press("Tab")  # the page's own link
        page.keyboard.press("Tab")
        assert page.evaluate("document.activeElement.shadowRoot.activeElement.className") == (
            "launcher"
        )
        page.keyboard.press("Enter")
        expect(launcher).to_have_attribute("aria-expanded", "true")
        panel = page.locator(".panel")
        expect(panel).to_have_attribute("role", "dialog")
        assert page.evaluate("document.activeElement.shadowRoot.activeElement.id") == "input"
        panel_box = panel.bounding_box()
        assert panel_box == {"x": 0, "y": 0, "width": 375, "height": 667}

        page.keyboard.type("Do you ship to Canada?")
        page.keyboard.press("Enter")
        expect(page.locator(".msg.bot").nth(1)).to_contain_text("Canada")
        expect(page.locator(".sr[aria-live]")).to_contain_text("Help: We ship to all")
        page.screenshot(path=artifacts / "widget-phone.png")

        page.keyboard.press("Escape")
        expect(panel).to_be_hidden()
        assert page.evaluate("document.activeElement.shadowRoot.activeElement.className") == (
            "launcher"
        )
    finally:
        context.close()


def _sse(*events: dict[str, object]) -> str:
    return "".join(f"data: {json.dumps(event)}\n\n" for event in events)


FAILURES = {
    "insufficient balance": (
        {
            "status": 402,
            "body": {
                "code": 8,
                "message": "the workspace's token balance is used up",
                "details": [{"reason": "INSUFFICIENT_BALANCE", "domain": "switchboard"}],
            },
        },
        "can't take new questions right now",
    ),
    "rate limited": (
        {
            "status": 429,
            "headers": {"retry-after": "7"},
            "body": {"code": 8, "message": "slow down", "details": []},
        },
        "Please try again in 7 seconds.",
    ),
    "server error": (
        {"status": 500, "body": {"code": 13, "message": "internal error", "details": []}},
        "Something went wrong on our side",
    ),
    "error after the stream began": (
        {
            "status": 200,
            "content_type": "text/event-stream",
            "raw": _sse(
                {"result": {"content": {"text": "We ship to "}}},
                {"result": {"error": {"code": "UNAVAILABLE", "message": "upstream failed"}}},
            ),
        },
        "Something went wrong on our side",
    ),
    "network loss": (None, "Can't reach the assistant right now"),
}


@pytest.mark.parametrize("failure", list(FAILURES))
def test_widget_explains_failures(
    browser: Browser,
    server: RunningServer,
    shop: Site,
    publishable_key: str,
    artifacts: Path,
    failure: str,
) -> None:
    answer, expected = FAILURES[failure]
    url = shop.embed("/failures", widget_tag(server, publishable_key))
    context = browser.new_context()
    page = context.new_page()

    def fail(route: Route) -> None:
        if answer is None:
            route.abort("internetdisconnected")
            return
        headers = {"access-control-allow-origin": shop.origin, **answer.get("headers", {})}
        headers["access-control-expose-headers"] = "retry-after"
        route.fulfill(
            status=answer["status"],
            headers=headers,
            content_type=answer.get("content_type", "application/json"),
            body=answer.get("raw") or json.dumps(answer["body"]),
        )

    try:
        page.goto(url)
        _open_widget(page)
        expect(page.locator(".msg.bot.greeting")).to_be_visible()
        page.route("**/messages:stream", fail)
        _ask(page, "Do you ship to Canada?")
        status = page.locator(".status")
        expect(status).to_contain_text(expected)
        expect(status).to_have_attribute("role", "alert")
        if failure == "error after the stream began":
            expect(page.locator(".msg.bot").nth(1)).to_contain_text("We ship to (reply cut short)")
        expect(page.locator(".send")).to_have_text("Send")
        if failure == "network loss":
            page.unroute("**/messages:stream")
            status.get_by_role("button", name="Try again").click()
            expect(page.locator(".msg.bot").nth(1)).to_contain_text("Canada")
            expect(status).to_be_hidden()
        page.screenshot(path=artifacts / f"widget-failure-{failure.replace(' ', '-')}.png")
    finally:
        context.close()


def test_a_key_without_listed_origins_gets_no_grant_in_the_browser(
    browser: Browser, server: RunningServer, site_factory: Callable[[], Site]
) -> None:
    site = site_factory()
    anywhere = create_publishable_key(server, [])
    url = site.embed("/", widget_tag(server, anywhere, open="true"))
    context = browser.new_context()
    page = context.new_page()
    try:
        page.goto(url)
        # data-open shows the panel at load, without taking the page's focus.
        expect(page.locator(".panel")).to_be_visible()
        assert page.evaluate("document.activeElement === document.body")
        expect(page.locator(".status")).to_contain_text("Can't reach the assistant")
    finally:
        context.close()
