"""The repository on SQLite and PostgreSQL: agents and versions, knowledge ranking, turns,
keys and workspace isolation."""

from __future__ import annotations

import asyncio

import pytest
from sqlalchemy import text

from server import ids
from server.errors import AgentNotFound, AgentNotPublished, AlreadyExists, SessionNotFound
from server.knowledge import search_terms, split_passages
from server.store.repository import MessageRecord, Repository
from server.store.tables import utcnow

DOC = """# Shipping

We ship to all 50 US states and to Canada. Orders to Canada arrive in 5 to 8 business days.

Express shipping within the US takes 1 to 2 business days.

# Returns

You can return unused items within 30 days of delivery for a full refund.
"""


async def add_agent_with_knowledge(repository: Repository, workspace: str) -> str:
    agent = await repository.create_agent(workspace, slug="helper", config={"fallback_reply": "?"})
    await repository.add_document(
        workspace,
        agent.id,
        title="Policies",
        content=DOC,
        mime_type="text/markdown",
        passages=split_passages(DOC),
    )
    return agent.id


async def record(
    repository: Repository, workspace: str, agent_id: str, session_id: str | None, question: str
) -> list[MessageRecord]:
    """Records a turn with a canned reply; a new session when `session_id` is None."""
    sid = session_id or ids.new_id("sess")
    reply = MessageRecord(
        id=ids.new_id("msg"),
        session_id=sid,
        position=0,
        role="assistant",
        content=question.replace("question", "answer"),
        created_at=utcnow(),
    )
    usage = {
        "workspace_id": workspace,
        "key_id": None,
        "agent_id": agent_id,
        "session_id": sid,
        "message_id": reply.id,
        "prompt_tokens": 2,
        "completion_tokens": 2,
        "total_tokens": 4,
        "created_at": utcnow(),
    }
    return await repository.record_turn(
        workspace,
        agent_id=agent_id,
        session_id=sid,
        new_session=session_id is None,
        labels={},
        messages=[("user", question)],
        reply=reply,
        usage=usage,
    )


async def test_schema_is_migrated(repository: Repository):
    async with repository.engine.connect() as connection:
        version = (
            await connection.execute(text("SELECT version_num FROM alembic_version"))
        ).scalar()
    assert version == _head_revision()
    # The migrations make the page-token key once per database, shared by every replica.
    assert len(await repository.server_secret("page_tokens")) == 32


def _head_revision() -> str:
    from alembic.script import ScriptDirectory

    from server.store.database import _MIGRATIONS

    return str(ScriptDirectory(str(_MIGRATIONS)).get_current_head())


async def test_publish_snapshots_the_draft(repository: Repository, workspace: str):
    agent = await repository.create_agent(workspace, slug="snap", config={"instructions": "v1"})
    with pytest.raises(AgentNotPublished):
        await repository.get_published_agent(workspace, "snap")
    first = await repository.publish_agent(workspace, "snap")
    await repository.update_agent(workspace, agent.id, slug="snap", config={"instructions": "v2"})
    published = await repository.get_published_agent(workspace, "snap")
    assert (first.version, published.version, published.config) == (1, 1, {"instructions": "v1"})
    second = await repository.publish_agent(workspace, agent.id)
    published = await repository.get_published_agent(workspace, agent.id)
    assert (second.version, published.config) == (2, {"instructions": "v2"})


async def test_concurrent_publishes_get_distinct_versions(repository: Repository, workspace: str):
    await repository.create_agent(workspace, slug="busy", config={})
    versions = await asyncio.gather(
        *(repository.publish_agent(workspace, "busy") for _ in range(5))
    )
    assert sorted(v.version for v in versions) == [1, 2, 3, 4, 5]


async def test_slugs_are_unique_per_workspace(repository: Repository, workspace: str):
    await repository.create_agent(workspace, slug="twin", config={})
    with pytest.raises(AlreadyExists):
        await repository.create_agent(workspace, slug="twin", config={})
    other = f"ws_{ids.new_id('x')}"
    await repository.ensure_workspace(other, "other")
    await repository.create_agent(other, slug="twin", config={})


async def test_other_workspaces_see_nothing(repository: Repository, workspace: str):
    agent_id = await add_agent_with_knowledge(repository, workspace)
    stranger = f"ws_{ids.new_id('x')}"
    await repository.ensure_workspace(stranger, "stranger")
    with pytest.raises(AgentNotFound):
        await repository.get_agent(stranger, agent_id)
    session = await repository.create_session(workspace, agent_id, labels={})
    with pytest.raises(SessionNotFound):
        await repository.get_session(stranger, session.id)
    with pytest.raises(SessionNotFound):
        await repository.session_agent(stranger, session.id)
    with pytest.raises(SessionNotFound):
        await record(repository, stranger, agent_id, session.id, "x")
    assert await repository.list_messages(session.id) == []


async def test_search_ranks_the_matching_passage_first(repository: Repository, workspace: str):
    agent_id = await add_agent_with_knowledge(repository, workspace)
    ranked = await repository.search_passages(
        agent_id, search_terms("Do you ship to Canada?"), limit=3
    )
    assert ranked[0].text.startswith("We ship to all 50 US states and to Canada.")
    assert ranked[0].title == "Policies"
    assert all(0 < p.score < 1 for p in ranked)
    assert [p.score for p in ranked] == sorted((p.score for p in ranked), reverse=True)
    returns = await repository.search_passages(agent_id, search_terms("Can I return it?"), limit=3)
    assert returns[0].text.startswith("You can return unused items")


async def test_search_finds_nothing_for_unrelated_questions(repository: Repository, workspace: str):
    agent_id = await add_agent_with_knowledge(repository, workspace)
    assert (
        await repository.search_passages(
            agent_id, search_terms("What is the meaning of life?"), limit=3
        )
        == []
    )


async def test_deleted_documents_leave_the_index(repository: Repository, workspace: str):
    agent_id = await add_agent_with_knowledge(repository, workspace)
    [document] = await repository.list_documents(workspace, agent_id, limit=10, after=None)
    assert document.passage_count == 3
    await repository.delete_document(workspace, agent_id, document.id)
    assert await repository.search_passages(agent_id, ["canada"], limit=3) == []


async def test_knowledge_of_one_agent_is_not_searched_for_another(
    repository: Repository, workspace: str
):
    await add_agent_with_knowledge(repository, workspace)
    other = await repository.create_agent(workspace, slug="empty", config={})
    assert await repository.search_passages(other.id, ["canada"], limit=3) == []


async def test_concurrent_turns_reserve_adjacent_positions(repository: Repository, workspace: str):
    agent_id = await add_agent_with_knowledge(repository, workspace)
    session = await repository.create_session(workspace, agent_id, labels={})

    async def turn(i: int) -> None:
        user, reply = await record(repository, workspace, agent_id, session.id, f"question {i}")
        assert reply.position == user.position + 1

    await asyncio.gather(*(turn(i) for i in range(15)))
    stored = await repository.list_messages(session.id)
    assert [m.position for m in stored] == list(range(1, 31))
    for user, reply in zip(stored[0::2], stored[1::2], strict=True):
        assert user.content.replace("question", "answer") == reply.content
    _, count = await repository.get_session(workspace, session.id)
    assert count == 30
    assert await repository.count_usage(workspace) == 60


async def test_keys_are_stored_hashed_and_revocable(repository: Repository, workspace: str):
    key, secret = await repository.create_key(
        workspace, display_name="ci", kind="secret", scopes=["chat:write"]
    )
    assert secret.startswith("sk_") and key.secret_hash != secret and secret not in key.secret_hash
    found = await repository.find_key(secret)
    assert found is not None and found.id == key.id and found.scopes == ["chat:write"]
    await repository.revoke_key(workspace, key.id)
    assert await repository.find_key(secret) is None
    assert await repository.find_key("sk_unknown") is None


async def test_deleting_an_agent_removes_its_sessions(repository: Repository, workspace: str):
    agent_id = await add_agent_with_knowledge(repository, workspace)
    user, _ = await record(repository, workspace, agent_id, None, "hi")
    await repository.delete_agent(workspace, agent_id)
    with pytest.raises(SessionNotFound):
        await repository.get_session(workspace, user.session_id)
    assert await repository.search_passages(agent_id, ["canada"], limit=3) == []


async def test_other_agents_knowledge_never_shifts_a_score(repository: Repository, workspace: str):
    agent_id = await add_agent_with_knowledge(repository, workspace)
    question = search_terms("Do you ship to Canada?")
    before = await repository.search_passages(agent_id, question, limit=3)
    other = await repository.create_agent(workspace, slug="noisy", config={})
    noise = "\n\n".join("We ship to Canada. Canada shipping, ship, ship." for _ in range(40))
    await repository.add_document(
        workspace,
        other.id,
        title="Noise",
        content=noise,
        mime_type="text/plain",
        passages=split_passages(noise),
    )
    after = await repository.search_passages(agent_id, question, limit=3)
    assert after == before
