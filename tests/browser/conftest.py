"""A real headless Chromium (Debian's `chromium`, driven by Playwright), pages served from other
origins than the edge's, and publishable keys for them. A missing browser fails the tests:
install it with `apt-get install chromium chromium-driver` (`.ci/run` does)."""

from __future__ import annotations

import contextlib
import html
import shutil
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import httpx
import pytest
from playwright.sync_api import Browser, Playwright, sync_playwright

from tests.conftest import ROOT, RunningServer

CHROMIUM_CANDIDATES = ("/usr/bin/chromium", "/usr/bin/chromium-browser")
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--headless",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
ARTIFACTS = ROOT / "test-artifacts" / "browser"


def chromium_path() -> str:
    for candidate in CHROMIUM_CANDIDATES:
        if Path(candidate).exists():
            return candidate
    found = shutil.which("chromium")
    if found:
        return found
    pytest.fail(
        "no Chromium found: install Debian's `chromium` and `chromium-driver` "
        "(apt-get install -y chromium chromium-driver), as .ci/run does"
    )


# Playwright's sync API keeps an event loop running while it is started, which the async tests
# of other modules cannot share: it is started per module and stopped after it.
@pytest.fixture(scope="module")
def playwright() -> Iterator[Playwright]:
    with sync_playwright() as driver:
        yield driver


@pytest.fixture(scope="module")
def browser(playwright: Playwright) -> Iterator[Browser]:
    # Playwright gives every context a fresh profile (`--user-data-dir` of its own).
    with tempfile.TemporaryDirectory(prefix="chromium-") as downloads:
        launched = playwright.chromium.launch(
            executable_path=chromium_path(),
            headless=True,
            args=CHROMIUM_ARGS,
            downloads_path=downloads,
        )
        try:
            yield launched
        finally:
            launched.close()


@pytest.fixture(scope="session")
def server(
    server_factory: Callable[..., contextlib.AbstractContextManager[RunningServer]],
) -> Iterator[RunningServer]:
    """A server of the browser tests' own: the keys, sessions and bursts of parallel requests
    a browser makes stay apart from the other suites' shared server."""
    with server_factory() as running:
        yield running


@pytest.fixture(scope="session")
def artifacts() -> Path:
    """Where the tests save screenshots (ignored by git)."""
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    return ARTIFACTS


@dataclass
class Site:
    """A web server on its own port, so its pages are of another origin than the edge."""

    origin: str
    pages: dict[str, str] = field(default_factory=dict)

    def embed(self, path: str, script_tag: str, title: str = "Acme Outdoor Supply") -> str:
        """Serves at `path` a shop page embedding `script_tag`; returns the page's URL."""
        self.pages[path] = SHOP_PAGE.format(title=html.escape(title), script=script_tag)
        return self.origin + path


SHOP_PAGE = """<!doctype html>
<html lang="en"><head><meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>{title}</title>
<style>
  /* Hostile page styles: the widget's shadow root must not inherit them. */
  * {{ font-family: Georgia, serif !important; }}
  button {{ background: hotpink; border: 5px dashed lime; font-size: 30px; }}
  body {{ margin: 0; background: #f4f1ea; color: #3b3024; }}
  header {{ background: #3b5d3a; color: #fff; padding: 18px 32px; }}
  main {{ padding: 32px; max-width: 760px; }}
</style></head>
<body>
<header><h1>{title}</h1></header>
<main>
  <a href="#tents">Tents</a>
  <h2>Gear for every trail</h2>
  <p>Free shipping on orders over $50. Questions? Ask our support bot in the corner.</p>
</main>
{script}
</body></html>
"""


def _serve(site: Site) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            page = site.pages.get(self.path.split("?", 1)[0])
            body = (page or "not found").encode()
            self.send_response(200 if page is not None else 404)
            self.send_header("content-type", "text/html; charset=utf-8")
            self.send_header("content-length", str(len(body)))
            self.send_header("cache-control", "no-store")
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, format: str, *args: object) -> None:
            """Quiet: the test output is for failures."""

    return Handler


@pytest.fixture(scope="session")
def site_factory() -> Iterator[Callable[[], Site]]:
    """Starts sites of their own, stopped at the end of the run."""
    servers: list[ThreadingHTTPServer] = []

    def start() -> Site:
        site = Site(origin="")
        httpd = ThreadingHTTPServer(("127.0.0.1", 0), _serve(site))
        servers.append(httpd)
        threading.Thread(target=httpd.serve_forever, daemon=True).start()
        site.origin = f"http://127.0.0.1:{httpd.server_address[1]}"
        return site

    yield start
    for httpd in servers:
        httpd.shutdown()
        httpd.server_close()


@pytest.fixture(scope="session")
def shop(site_factory: Callable[[], Site]) -> Site:
    """The site the widget is embedded on, with an origin its publishable key lists."""
    return site_factory()


@pytest.fixture(scope="session")
def stranger(site_factory: Callable[[], Site]) -> Site:
    """Another site, whose origin no key lists."""
    return site_factory()


def create_publishable_key(server: RunningServer, origins: list[str]) -> str:
    created = httpx.post(
        f"{server.http_url}/v1/keys",
        headers={"authorization": f"Bearer {server.api_key}"},
        json={
            "display_name": "widget",
            "kind": "KEY_KIND_PUBLISHABLE",
            "allowed_agents": ["support-bot"],
            "allowed_origins": origins,
        },
        timeout=30,
    )
    assert created.status_code == 200, created.text
    # The core rereads the listed origins every second, and the edge keeps a refusal for two.
    deadline = time.monotonic() + 5
    for origin in origins:
        while not _preflight_granted(server, origin):
            assert time.monotonic() < deadline, f"{origin} never opened"
            time.sleep(0.1)
    return str(created.json()["secret"])


def _preflight_granted(server: RunningServer, origin: str) -> bool:
    answer = httpx.options(
        f"{server.http_url}/v1/models",
        headers={"origin": origin, "access-control-request-method": "GET"},
    )
    return answer.status_code == 204


@pytest.fixture(scope="session")
def publishable_key(server: RunningServer, shop: Site) -> str:
    return create_publishable_key(server, [shop.origin])


def widget_tag(server: RunningServer, key: str, **attributes: str) -> str:
    extra = "".join(
        f' data-{name.replace("_", "-")}="{html.escape(value)}"'
        for name, value in attributes.items()
    )
    return (
        f'<script src="{server.http_url}/widget.js" data-key="{key}" '
        f'data-agent="support-bot"{extra} defer></script>'
    )
