"""Knowledge: an agent's documents, their passages in the full-text index, and the ranked
passages a question finds, cached."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from sqlalchemy import delete, insert
from sqlalchemy.exc import IntegrityError
from sqlmodel import col, select

from server import ids
from server.errors import Conflict, NotFound, clip
from server.knowledge import content_hash
from server.store.agents import Agents
from server.store.caching import TimedCache
from server.store.database import Database
from server.store.search import PassageIndex, ScoredPassage
from server.store.tables import KnowledgeDocument


@dataclass(frozen=True, slots=True)
class NewDocument:
    """A document to add: its `(heading, text)` passages, and where it came from."""

    title: str
    content: str
    mime_type: str
    passages: list[tuple[str, str]]
    source: str = ""


class Knowledge:
    """The documents of every agent, found through the agent in its workspace."""

    def __init__(self, database: Database, agents: Agents, index: PassageIndex) -> None:
        self._database = database
        self._agents = agents
        self._index = index
        self._searches = TimedCache(database.generation)

    async def add_document(
        self,
        workspace_id: str,
        agent: str,
        *,
        title: str,
        content: str,
        mime_type: str,
        passages: Sequence[tuple[str, str]],
        source: str = "",
    ) -> KnowledgeDocument:
        """Stores a document and indexes its `(heading, text)` passages in one transaction."""
        document = NewDocument(title, content, mime_type, list(passages), source)
        [(stored, _)] = await self.add_documents(workspace_id, agent, [document])
        return stored

    async def add_documents(
        self, workspace_id: str, agent: str, documents: Sequence[NewDocument]
    ) -> list[tuple[KnowledgeDocument, str]]:
        """Stores and indexes documents in one transaction, each with what became of it:
        `added`; `replaced`, when the agent had a document of the same source, whose
        passages it replaces; or `unchanged`, when that document has the same content (it is
        returned as it was)."""
        row = await self._agents.get(workspace_id, agent)
        sources = [d.source for d in documents if d.source]
        async with self._database.writing() as db:
            connection = await db.connection()
            existing: dict[str, KnowledgeDocument] = {}
            if sources:
                found = await db.exec(
                    select(KnowledgeDocument).where(
                        col(KnowledgeDocument.agent_id) == row.id,
                        col(KnowledgeDocument.source).in_(sources),
                    )
                )
                existing = {d.source: d for d in found}
            results: list[tuple[KnowledgeDocument, str]] = []
            stored: list[KnowledgeDocument] = []
            replaced: list[str] = []
            passages: list[dict[str, Any]] = []
            for new in documents:
                hashed = content_hash(new.content)
                old = existing.get(new.source) if new.source else None
                if old is not None and old.content_hash == hashed:
                    results.append((old, "unchanged"))
                    continue
                if old is not None:
                    replaced.append(old.id)
                document = KnowledgeDocument(
                    id=ids.new_id("doc"),
                    agent_id=row.id,
                    title=new.title,
                    content=new.content,
                    mime_type=new.mime_type,
                    passage_count=len(new.passages),
                    source=new.source,
                    content_hash=hashed,
                )
                stored.append(document)
                results.append((document, "added" if old is None else "replaced"))
                passages.extend(
                    {
                        "document_id": document.id,
                        "title": new.title,
                        "position": position,
                        "heading": heading,
                        "text": body,
                    }
                    for position, (heading, body) in enumerate(new.passages)
                )
            if stored:
                if replaced:
                    await self._index.remove(connection, row.id, replaced)
                    await connection.execute(
                        delete(KnowledgeDocument).where(col(KnowledgeDocument.id).in_(replaced))
                    )
                await connection.execute(
                    insert(KnowledgeDocument), [d.model_dump() for d in stored]
                )
                await self._index.add(connection, row.id, passages)
                try:
                    await db.commit()
                except IntegrityError as exc:
                    raise Conflict(
                        "another request added a document of the same source; try again",
                        reason="DOCUMENT_SOURCE_CONFLICT",
                    ) from exc
                self._database.generation.bump()
        return results

    async def list_documents(
        self, workspace_id: str, agent: str, *, limit: int, after: str | None
    ) -> list[KnowledgeDocument]:
        """The agent's documents by id, after `after`."""
        row = await self._agents.get(workspace_id, agent)
        query = select(KnowledgeDocument).where(col(KnowledgeDocument.agent_id) == row.id)
        if after:
            query = query.where(col(KnowledgeDocument.id) > after)
        async with self._database.session() as db:
            result = await db.exec(query.order_by(KnowledgeDocument.id).limit(limit))
            return list(result)

    async def delete_document(self, workspace_id: str, agent: str, document_id: str) -> None:
        """Deletes a document of the agent and its passages."""
        row = await self._agents.get(workspace_id, agent)
        async with self._database.writing() as db:
            document = await db.get(KnowledgeDocument, document_id)
            if document is None or document.agent_id != row.id:
                raise NotFound(
                    f"document {clip(document_id)!r} does not exist", reason="DOCUMENT_NOT_FOUND"
                )
            await self._index.remove(await db.connection(), row.id, [document_id])
            await db.delete(document)
            await db.commit()
            self._database.generation.bump()

    async def search_passages(
        self, agent_id: str, terms: Sequence[str], *, limit: int
    ) -> list[ScoredPassage]:
        """The agent's best `limit` passages for a question's analysed terms (see
        `server.knowledge.search_terms`), best first; `server.store.search` says how they
        are ranked inside the index. Scores are BM25 over the agent's own knowledge,
        normalised as s / (s + 1)."""
        if not terms:
            return []

        async def load() -> list[ScoredPassage]:
            async with self._database.engine.connect() as connection:
                return await self._index.search(connection, agent_id, terms, limit)

        return await self._searches.fetch((agent_id, tuple(terms), limit), load)
