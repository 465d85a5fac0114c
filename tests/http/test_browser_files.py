"""The files the edge serves to browsers, as they ship: the chat widget and the playground."""

from __future__ import annotations

import gzip

import httpx

WIDGET_GZIP_BUDGET = 15 * 1024


def test_widget_is_one_small_script_any_site_may_load(anonymous: httpx.Client) -> None:
    plain = anonymous.get("/widget.js", headers={"accept-encoding": "identity"})
    assert plain.status_code == 200
    assert plain.headers["content-type"] == "text/javascript; charset=utf-8"
    assert plain.headers["x-content-type-options"] == "nosniff"
    assert plain.headers["access-control-allow-origin"] == "*"
    assert "content-encoding" not in plain.headers
    script = plain.content
    assert b"attachShadow" in script and b"/messages:stream" in script
    # No third-party code: the only URLs it names are the widget's own documentation.
    assert b"https://" not in script.replace(b"https://HOST/widget.js", b"")
    assert b"import " not in script

    zipped = httpx.get(f"{anonymous.base_url}/widget.js", headers={"accept-encoding": "gzip"})
    assert zipped.headers["content-encoding"] == "gzip"
    size = int(zipped.headers["content-length"])
    assert size < WIDGET_GZIP_BUDGET, f"widget.js is {size} bytes gzipped"
    assert len(gzip.compress(script, 9)) < WIDGET_GZIP_BUDGET

    etag = plain.headers["etag"]
    again = anonymous.get("/widget.js", headers={"if-none-match": etag})
    assert again.status_code == 304
    assert again.content == b""


def test_playground_is_served_with_a_strict_policy(anonymous: httpx.Client) -> None:
    page = anonymous.get("/playground")
    assert page.status_code == 200
    assert page.headers["content-type"] == "text/html; charset=utf-8"
    policy = page.headers["content-security-policy"]
    assert "script-src 'self'" in policy and "connect-src 'self'" in policy
    assert "frame-ancestors 'none'" in policy
    assert page.headers["x-frame-options"] == "DENY"
    assert page.headers["referrer-policy"] == "no-referrer"
    assert b'src="/playground/playground.js"' in page.content
    for path, kind in (
        ("/playground/playground.js", "text/javascript"),
        ("/playground/playground.css", "text/css"),
    ):
        asset = anonymous.get(path)
        assert asset.status_code == 200
        assert asset.headers["content-type"].startswith(kind)


def test_browser_files_answer_only_get_and_head(anonymous: httpx.Client) -> None:
    head = anonymous.head("/widget.js")
    assert head.status_code == 200 and head.content == b""
    refused = anonymous.post("/playground", content=b"{}")
    assert refused.status_code == 405
    assert refused.headers["allow"] == "GET, HEAD"
