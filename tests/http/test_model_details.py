"""What `/v1/models` tells a chat window about an agent: its name, greeting and quick replies,
as its published version says (a publishable key cannot read the agent itself)."""

from __future__ import annotations

import uuid

import httpx


def test_models_carry_the_published_greeting_and_quick_replies(http: httpx.Client) -> None:
    slug = f"greeter-{uuid.uuid4().hex[:8]}"
    created = http.post(
        "/v1/agents",
        json={
            "slug": slug,
            "display_name": "Greeter",
            "description": "Says hello.",
            "greeting": "Hello there!",
            "quick_replies": ["What can you do?"],
            "fallback_reply": "I only greet.",
        },
    )
    assert created.status_code == 200, created.text
    assert http.post(f"/v1/agents/{slug}:publish", json={}).status_code == 200
    # A draft change is not what chat serves until it is published.
    updated = http.patch(f"/v1/{created.json()['name']}", json={"greeting": "Draft"})
    assert updated.status_code == 200, updated.text

    model = http.get(f"/v1/models/{slug}").json()
    assert model["display_name"] == "Greeter"
    assert model["description"] == "Says hello."
    assert model["greeting"] == "Hello there!"
    assert model["quick_replies"] == ["What can you do?"]
    listed = {m["id"]: m for m in http.get("/v1/models").json()["data"]}
    assert listed[slug] == model
    assert listed["support-bot"]["greeting"].startswith("Hi! Ask me about shipping")
