"""The store on SQLite and PostgreSQL: agents and versions, knowledge ranking, turns,
keys and workspace isolation."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest
from sqlalchemy import create_engine, text

from server import ids
from server.errors import AgentNotFound, AgentNotPublished, AlreadyExists, SessionNotFound
from server.knowledge import search_terms, split_passages
from server.store import Store
from server.store.database import _MIGRATIONS, _script_heads, migrate, sync_url
from server.store.sessions import MessageRecord
from server.store.tables import utcnow

DOC = """# Shipping

We ship to all 50 US states and to Canada. Orders to Canada arrive in 5 to 8 business days.

Express shipping within the US takes 1 to 2 business days.

# Returns

You can return unused items within 30 days of delivery for a full refund.
"""


async def add_agent_with_knowledge(store: Store, workspace: str) -> str:
    agent = await store.agents.create(workspace, slug="helper", config={"fallback_reply": "?"})
    await store.knowledge.add_document(
        workspace,
        agent.id,
        title="Policies",
        content=DOC,
        mime_type="text/markdown",
        passages=split_passages(DOC),
    )
    return agent.id


async def record(
    store: Store, workspace: str, agent_id: str, session_id: str | None, question: str
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
    return await store.sessions.record_turn(
        workspace,
        agent_id=agent_id,
        session_id=sid,
        new_session=session_id is None,
        labels={},
        messages=[("user", question)],
        reply=reply,
        usage=usage,
    )


async def test_schema_is_migrated(store: Store):
    async with store.database.engine.connect() as connection:
        version = (
            await connection.execute(text("SELECT version_num FROM alembic_version"))
        ).scalar()
    assert version == _head_revision()
    # The migrations make the page-token key once per database, shared by every replica.
    assert len(await store.database.server_secret("page_tokens")) == 32


def _head_revision() -> str:
    from alembic.script import ScriptDirectory

    return str(ScriptDirectory(str(_MIGRATIONS)).get_current_head())


def test_migrate_upgrades_a_database_at_an_older_revision(tmp_path: Path):
    from alembic import command
    from alembic.config import Config

    url = f"sqlite+aiosqlite:///{tmp_path / 'old.db'}"
    config = Config()
    config.set_main_option("script_location", str(_MIGRATIONS))
    config.set_main_option("sqlalchemy.url", sync_url(url))
    command.upgrade(config, "0004")
    migrate(url)
    engine = create_engine(sync_url(url))
    with engine.connect() as connection:
        version = connection.execute(text("SELECT version_num FROM alembic_version")).scalar()
    engine.dispose()
    assert version == _head_revision()


def test_a_current_schema_is_recognised_by_the_heads_alembic_reads():
    from alembic.script import ScriptDirectory

    assert _script_heads() == set(ScriptDirectory(str(_MIGRATIONS)).get_heads())


async def test_publish_snapshots_the_draft(store: Store, workspace: str):
    agent = await store.agents.create(workspace, slug="snap", config={"instructions": "v1"})
    with pytest.raises(AgentNotPublished):
        await store.agents.get_published(workspace, "snap")
    first = await store.agents.publish(workspace, "snap")
    await store.agents.update(workspace, agent.id, slug="snap", config={"instructions": "v2"})
    published = await store.agents.get_published(workspace, "snap")
    assert (first.version, published.version, published.config) == (1, 1, {"instructions": "v1"})
    second = await store.agents.publish(workspace, agent.id)
    published = await store.agents.get_published(workspace, agent.id)
    assert (second.version, published.config) == (2, {"instructions": "v2"})


async def test_concurrent_publishes_get_distinct_versions(store: Store, workspace: str):
    await store.agents.create(workspace, slug="busy", config={})
    versions = await asyncio.gather(*(store.agents.publish(workspace, "busy") for _ in range(5)))
    assert sorted(v.version for v in versions) == [1, 2, 3, 4, 5]


async def test_slugs_are_unique_per_workspace(store: Store, workspace: str):
    await store.agents.create(workspace, slug="twin", config={})
    with pytest.raises(AlreadyExists):
        await store.agents.create(workspace, slug="twin", config={})
    other = f"ws_{ids.new_id('x')}"
    await store.workspaces.ensure(other, "other")
    await store.agents.create(other, slug="twin", config={})


async def test_other_workspaces_see_nothing(store: Store, workspace: str):
    agent_id = await add_agent_with_knowledge(store, workspace)
    stranger = f"ws_{ids.new_id('x')}"
    await store.workspaces.ensure(stranger, "stranger")
    with pytest.raises(AgentNotFound):
        await store.agents.get(stranger, agent_id)
    session = await store.sessions.create(workspace, agent_id, labels={})
    with pytest.raises(SessionNotFound):
        await store.sessions.get(stranger, session.id)
    with pytest.raises(SessionNotFound):
        await store.sessions.agent_of(stranger, session.id)
    with pytest.raises(SessionNotFound):
        await record(store, stranger, agent_id, session.id, "x")
    assert await store.sessions.list_messages(session.id) == []


async def test_search_ranks_the_matching_passage_first(store: Store, workspace: str):
    agent_id = await add_agent_with_knowledge(store, workspace)
    ranked = await store.knowledge.search_passages(
        agent_id, search_terms("Do you ship to Canada?"), limit=3
    )
    assert ranked[0].text.startswith("We ship to all 50 US states and to Canada.")
    assert ranked[0].title == "Policies"
    assert all(0 < p.score < 1 for p in ranked)
    assert [p.score for p in ranked] == sorted((p.score for p in ranked), reverse=True)
    returns = await store.knowledge.search_passages(
        agent_id, search_terms("Can I return it?"), limit=3
    )
    assert returns[0].text.startswith("You can return unused items")


async def test_search_finds_nothing_for_unrelated_questions(store: Store, workspace: str):
    agent_id = await add_agent_with_knowledge(store, workspace)
    assert (
        await store.knowledge.search_passages(
            agent_id, search_terms("What is the meaning of life?"), limit=3
        )
        == []
    )


async def test_deleted_documents_leave_the_index(store: Store, workspace: str):
    agent_id = await add_agent_with_knowledge(store, workspace)
    [document] = await store.knowledge.list_documents(workspace, agent_id, limit=10, after=None)
    assert document.passage_count == 3
    await store.knowledge.delete_document(workspace, agent_id, document.id)
    assert await store.knowledge.search_passages(agent_id, ["canada"], limit=3) == []


async def test_knowledge_of_one_agent_is_not_searched_for_another(store: Store, workspace: str):
    await add_agent_with_knowledge(store, workspace)
    other = await store.agents.create(workspace, slug="empty", config={})
    assert await store.knowledge.search_passages(other.id, ["canada"], limit=3) == []


async def test_concurrent_turns_reserve_adjacent_positions(store: Store, workspace: str):
    agent_id = await add_agent_with_knowledge(store, workspace)
    session = await store.sessions.create(workspace, agent_id, labels={})

    async def turn(i: int) -> None:
        user, reply = await record(store, workspace, agent_id, session.id, f"question {i}")
        assert reply.position == user.position + 1

    await asyncio.gather(*(turn(i) for i in range(15)))
    stored = await store.sessions.list_messages(session.id)
    assert [m.position for m in stored] == list(range(1, 31))
    for user, reply in zip(stored[0::2], stored[1::2], strict=True):
        assert user.content.replace("question", "answer") == reply.content
    _, count = await store.sessions.get(workspace, session.id)
    assert count == 30
    assert await store.usage.total_tokens(workspace) == 60


async def test_keys_are_stored_hashed_and_revocable(store: Store, workspace: str):
    key, secret = await store.keys.create(
        workspace, display_name="ci", kind="secret", scopes=["chat:write"]
    )
    assert secret.startswith("sk_") and key.secret_hash != secret and secret not in key.secret_hash
    found = await store.keys.find(secret)
    assert found is not None and found.id == key.id and found.scopes == ["chat:write"]
    await store.keys.revoke(workspace, key.id)
    assert await store.keys.find(secret) is None
    assert await store.keys.find("sk_unknown") is None


async def test_deleting_an_agent_removes_its_sessions(store: Store, workspace: str):
    agent_id = await add_agent_with_knowledge(store, workspace)
    user, _ = await record(store, workspace, agent_id, None, "hi")
    await store.agents.delete(workspace, agent_id)
    with pytest.raises(SessionNotFound):
        await store.sessions.get(workspace, user.session_id)
    assert await store.knowledge.search_passages(agent_id, ["canada"], limit=3) == []


async def test_other_agents_knowledge_never_shifts_a_score(store: Store, workspace: str):
    agent_id = await add_agent_with_knowledge(store, workspace)
    question = search_terms("Do you ship to Canada?")
    before = await store.knowledge.search_passages(agent_id, question, limit=3)
    other = await store.agents.create(workspace, slug="noisy", config={})
    noise = "\n\n".join("We ship to Canada. Canada shipping, ship, ship." for _ in range(40))
    await store.knowledge.add_document(
        workspace,
        other.id,
        title="Noise",
        content=noise,
        mime_type="text/plain",
        passages=split_passages(noise),
    )
    after = await store.knowledge.search_passages(agent_id, question, limit=3)
    assert after == before
