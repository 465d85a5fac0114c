"""`BatchCreateKnowledgeDocuments` through the HTTP edge, on SQLite and PostgreSQL: outcomes
per document, all or nothing, replacement by source, and its scope."""

from __future__ import annotations

from tests.knowledge.conftest import Door


def _batch(door: Door, agent_id: str, documents: list[dict[str, str]]) -> dict:
    response = door.http.post(
        f"/v1/agents/{agent_id}/documents:batchCreate",
        json={"requests": [{"parent": f"agents/{agent_id}", "document": d} for d in documents]},
    )
    return {"status": response.status_code, **response.json()}


def _listed(door: Door, agent_id: str) -> dict[str, str]:
    documents = door.http.get(f"/v1/agents/{agent_id}/documents").json().get("documents", [])
    return {d["source"]: d["id"] for d in documents}


def test_documents_are_added_kept_and_replaced_by_source(door: Door) -> None:
    agent = door.create_agent()
    first = [
        {"title": "Ferries", "content": "The ferry leaves at noon.", "source": "ferries.md"},
        {"title": "Trains", "content": "The train leaves at nine.", "source": "trains.md"},
    ]
    added = _batch(door, agent.id, first)
    assert added["status"] == 200
    assert added["outcomes"] == ["KNOWLEDGE_DOCUMENT_OUTCOME_ADDED"] * 2
    assert all(len(d["content_hash"]) == 64 for d in added["documents"])
    before = _listed(door, agent.id)

    again = _batch(door, agent.id, first)
    assert again["outcomes"] == ["KNOWLEDGE_DOCUMENT_OUTCOME_UNCHANGED"] * 2
    assert [d["id"] for d in again["documents"]] == [d["id"] for d in added["documents"]]

    changed = [{**first[0], "content": "The ferry now leaves at one."}]
    replaced = _batch(door, agent.id, changed)
    assert replaced["outcomes"] == ["KNOWLEDGE_DOCUMENT_OUTCOME_REPLACED"]
    after = _listed(door, agent.id)
    assert after["trains.md"] == before["trains.md"]
    assert after["ferries.md"] != before["ferries.md"] and len(after) == 2
    reply = door.ask(agent, "When does the ferry leave?")
    assert reply["choices"][0]["message"]["content"] == "The ferry now leaves at one."


def test_a_batch_is_all_or_nothing(door: Door) -> None:
    agent = door.create_agent()
    refused = _batch(
        door,
        agent.id,
        [{"title": "Good", "content": "Fine text.", "source": "a.md"}, {"content": "   "}],
    )
    assert refused["status"] == 400
    assert "requests[1].document.content" in str(refused)
    twice = _batch(
        door,
        agent.id,
        [{"content": "One.", "source": "same.md"}, {"content": "Two.", "source": "same.md"}],
    )
    assert twice["status"] == 400 and "requests[1].document.source" in str(twice)
    assert _listed(door, agent.id) == {}


def test_batch_create_needs_agents_write(door: Door) -> None:
    agent = door.create_agent()
    key = door.http.post("/v1/keys", json={"scopes": ["agents:read"]}).json()["secret"]
    response = door.http.post(
        f"/v1/agents/{agent.id}/documents:batchCreate",
        json={"requests": [{"parent": f"agents/{agent.id}", "document": {"content": "Text."}}]},
        headers={"authorization": f"Bearer {key}"},
    )
    assert response.status_code == 403
