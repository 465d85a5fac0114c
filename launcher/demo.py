"""The demo workspace: a published `support-bot` agent whose knowledge covers shipping,
returns and opening hours. Created once; later starts reuse it."""

from __future__ import annotations

from switchboard.v1 import agent_pb2

from server import resources
from server.errors import AgentNotFound
from server.knowledge import split_passages
from server.store import Store

DEFAULT_WORKSPACE_ID = "ws_default"
DEMO_SLUG = "support-bot"


def demo_key_name(grpc_addr: str) -> str:
    """The name of the key `serve --demo` mints on `grpc_addr`; the next start there revokes
    it, while replicas on other addresses keep theirs."""
    return f"demo {grpc_addr}"


_KNOWLEDGE = {
    "Shipping": """# Shipping

We ship to all 50 US states and to Canada. Standard shipping takes 3 to 5 business days; \
orders to Canada arrive in 5 to 8 business days, with duties and taxes paid at checkout. \
Shipping is free on orders over $50.

Express shipping within the US takes 1 to 2 business days and costs $15.
""",
    "Returns": """# Returns

You can return unused items within 30 days of delivery for a full refund. Start a return \
from your order page and we email you a prepaid label; the refund reaches your card within \
5 business days after the item arrives back at our warehouse.
""",
    "Opening hours": """# Opening hours

Our support team is available Monday to Friday from 9:00 to 18:00 Eastern Time, and on \
Saturday from 10:00 to 14:00. We are closed on Sundays and public holidays.
""",
}


def _demo_agent() -> agent_pb2.Agent:
    return agent_pb2.Agent(
        slug=DEMO_SLUG,
        display_name="Support bot",
        description="Answers questions about shipping, returns and opening hours.",
        instructions="You are a friendly support agent for an online shop. Answer briefly.",
        greeting="Hi! Ask me about shipping, returns or our opening hours.",
        backend=agent_pb2.ModelBackend(builtin=agent_pb2.BuiltinBackend()),
        knowledge=agent_pb2.KnowledgeSettings(top_k=3, min_score=0.05),
        quick_replies=["Do you ship to Canada?", "How do returns work?", "When are you open?"],
        fallback_reply=(
            "I can help with shipping, returns and opening hours. Could you rephrase your question?"
        ),
    )


async def ensure_demo(store: Store) -> str:
    """Creates the demo agent unless it exists; returns its id."""
    await store.workspaces.ensure(DEFAULT_WORKSPACE_ID, "default")
    try:
        existing = await store.agents.get(DEFAULT_WORKSPACE_ID, DEMO_SLUG)
        return existing.id
    except AgentNotFound:
        pass
    agent = _demo_agent()
    row = await store.agents.create(
        DEFAULT_WORKSPACE_ID, slug=agent.slug, config=resources.agent_config(agent)
    )
    for title, content in _KNOWLEDGE.items():
        await store.knowledge.add_document(
            DEFAULT_WORKSPACE_ID,
            row.id,
            title=title,
            content=content,
            mime_type="text/markdown",
            passages=split_passages(content),
        )
    await store.agents.publish(DEFAULT_WORKSPACE_ID, row.id)
    return row.id
