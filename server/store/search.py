"""Knowledge search: each engine's passage index, and how a question is ranked against it.

Passages are indexed by their analysed terms (`server.knowledge.passage_terms`): on SQLite in
one FTS5 table per agent, on PostgreSQL in `passages.search`, a tsvector under a GIN index on
(agent_id, search). `knowledge_terms` counts, per agent, the passages holding each term.

A search looks those counts up for the question's terms and plans the query: candidates are
the passages holding one of the question's rarest terms (as many of them as keep the
candidates under `CANDIDATE_BUDGET`), ranked by the index with the other terms too, except
those found in more than half of the agent's passages (and none when there are too few
candidates to need ranking). The index returns its best
`RESCORED` candidates, ranked inside it (FTS5 `bm25()` with column weights; `ts_rank`
weighted by each term's IDF), and those are scored with BM25 over the agent's own statistics,
so that a score means the same on both engines and no other agent's knowledge moves it."""

from __future__ import annotations

import hashlib
import math
from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

from sqlalchemy import bindparam, text
from sqlalchemy.engine import Connection
from sqlalchemy.ext.asyncio import AsyncConnection

from server.knowledge import passage_terms

# Column weights: a term in the document title or the passage's heading counts four times.
TITLE_WEIGHT, HEADING_WEIGHT, TEXT_WEIGHT = 4.0, 4.0, 1.0
_K1, _B = 1.2, 0.75
# A search uses at most this many of a question's terms: the rarest the agent knows.
MAX_TERMS = 32
# Candidates are held under this many passages, whatever the question (unless its rarest
# term alone occurs more often).
CANDIDATE_BUDGET = 400
# How many of the index's best passages are scored; the best `limit` of them are returned.
RESCORED = 10
# The row of `knowledge_terms` that counts all of an agent's passages and terms.
ALL_TERMS = ""


@dataclass(frozen=True, slots=True)
class ScoredPassage:
    """A knowledge passage ranked against a question; `score` is normalised to 0..1."""

    document_id: str
    title: str
    position: int
    text: str
    score: float


@dataclass(frozen=True, slots=True)
class QueryPlan:
    """`match`: a candidate holds one of these; `rank`: the index ranks candidates by these
    as well; `idf`: every known term of the question, for the final score."""

    match: list[str]
    rank: list[str]
    idf: dict[str, float]
    average_length: float


def plan_query(terms: Sequence[str], counts: dict[str, tuple[int, int]]) -> QueryPlan | None:
    """The plan for a question's analysed `terms`, given the agent's `(passages,
    occurrences)` per term (and for `ALL_TERMS`); None when no passage can match."""
    total, length = counts.get(ALL_TERMS, (0, 0))
    known = sorted((counts[t][0], t) for t in dict.fromkeys(terms) if t and t in counts)
    known = [(n, t) for n, t in known if n > 0][:MAX_TERMS]
    if not total or not known:
        return None
    match: list[str] = []
    candidates = 0
    for n, term in known:
        if match and candidates + n > CANDIDATE_BUDGET:
            break
        match.append(term)
        candidates += n
    # Terms in most passages rank almost nothing and cost the most to count; and when every
    # candidate is rescored anyway, the index need not rank them at all.
    rank = [t for n, t in known[len(match) :] if n <= total / 2 and candidates > RESCORED]
    idf = {t: math.log(1 + (total - n + 0.5) / (n + 0.5)) for n, t in known}
    return QueryPlan(match, rank, idf, max(length / total, 1.0))


def bm25(title: list[str], heading: list[str], body: list[str], plan: QueryPlan) -> float:
    """BM25 over the three weighted columns of a passage (as FTS5's `bm25()` computes it),
    with the IDF of the agent's own statistics."""
    norm = _K1 * (1 - _B + _B * (len(title) + len(heading) + len(body)) / plan.average_length)
    columns = (
        (Counter(title), TITLE_WEIGHT),
        (Counter(heading), HEADING_WEIGHT),
        (Counter(body), TEXT_WEIGHT),
    )
    score = 0.0
    for term, idf in plan.idf.items():
        weighted = sum(found[term] * weight for found, weight in columns)
        if weighted:
            score += idf * weighted * (_K1 + 1) / (weighted + norm)
    return score


def count_terms(passages: Iterable[tuple[list[str], list[str], list[str]]]) -> Counter[Any]:
    """`(term, "passages" | "occurrences") → count` of some passages' terms, `ALL_TERMS`
    included, as `knowledge_terms` adds them up."""
    counted: Counter[Any] = Counter()
    for columns in passages:
        every = [term for column in columns for term in column]
        counted[ALL_TERMS, "passages"] += 1
        counted[ALL_TERMS, "occurrences"] += len(every)
        for term, n in Counter(every).items():
            counted[term, "passages"] += 1
            counted[term, "occurrences"] += n
    return counted


def stats_rows(agent_id: str, counted: Counter[Any], sign: int) -> list[dict[str, Any]]:
    """The `knowledge_terms` rows that add (`sign` 1) or take away (-1) `counted`."""
    terms = sorted({term for term, _ in counted})
    return [
        {
            "agent": agent_id,
            "term": term,
            "passages": sign * counted[term, "passages"],
            "occurrences": sign * counted[term, "occurrences"],
        }
        for term in terms
    ]


# Sorted by term, so that concurrent writers lock the rows in one order.
ADD_STATS = text(
    "INSERT INTO knowledge_terms (agent_id, term, passages, occurrences) "
    "VALUES (:agent, :term, :passages, :occurrences) "
    "ON CONFLICT (agent_id, term) DO UPDATE SET "
    "passages = knowledge_terms.passages + excluded.passages, "
    "occurrences = knowledge_terms.occurrences + excluded.occurrences"
)
_FORGET_EMPTY = text("DELETE FROM knowledge_terms WHERE agent_id = :agent AND passages <= 0")
_READ_STATS = text(
    "SELECT term, passages, occurrences FROM knowledge_terms "
    "WHERE agent_id = :agent AND term IN :terms"
).bindparams(bindparam("terms", expanding=True))


def sqlite_table(agent_id: str) -> str:
    """The name of an agent's FTS5 table, quoted: its own, so that the index restricts a
    search to the agent and ranks with the agent's statistics only."""
    return f'"knowledge_index_{hashlib.sha256(agent_id.encode()).hexdigest()[:24]}"'


def sqlite_create(agent_id: str) -> list[str]:
    """The statements that create an agent's FTS5 table (SQLite)."""
    return [
        # The terms are analysed already; the tokenizer only splits them at spaces.
        f"CREATE VIRTUAL TABLE IF NOT EXISTS {sqlite_table(agent_id)} USING "
        "fts5(title, heading, text, tokenize='unicode61 remove_diacritics 0')",
    ]


def sqlite_insert(agent_id: str) -> str:
    """The statement that adds a row to an agent's FTS5 table (SQLite)."""
    return (
        f"INSERT INTO {sqlite_table(agent_id)}(rowid, title, heading, text) "
        "VALUES (:id, :title, :heading, :text)"
    )


POSTGRES_INSERT = text(
    "INSERT INTO passages (document_id, agent_id, position, heading, text, search) "
    "VALUES (:document_id, :agent_id, :position, :heading, :text, "
    "setweight(to_tsvector('simple', :title_terms), 'A') || "
    "setweight(to_tsvector('simple', :heading_terms), 'B') || "
    "to_tsvector('simple', :text_terms))"
)
POSTGRES_SEARCH_UPDATE = text(
    "UPDATE passages SET search = "
    "setweight(to_tsvector('simple', :title_terms), 'A') || "
    "setweight(to_tsvector('simple', :heading_terms), 'B') || "
    "to_tsvector('simple', :text_terms) WHERE id = :id"
)
# ts_rank's weights of D (text), C (unused), B (heading) and A (title), at most 1.
_WEIGHTS_DCBA = (TEXT_WEIGHT, TEXT_WEIGHT, HEADING_WEIGHT, TITLE_WEIGHT)
_POSTGRES_WEIGHTS = "{" + ",".join(str(w / TITLE_WEIGHT) for w in _WEIGHTS_DCBA) + "}"

_CANDIDATE_COLUMNS = "p.id, p.document_id, d.title, p.position, p.heading, p.text"


def index_row(passage_id: int, title: str, heading: str, body: str) -> dict[str, Any]:
    """The FTS5 row of a passage (SQLite)."""
    t, h, x = passage_terms(title, heading, body)
    return {"id": passage_id, "title": " ".join(t), "heading": " ".join(h), "text": " ".join(x)}


def sync_rebuild_agent(connection: Connection, agent_id: str, sqlite: bool) -> None:
    """Indexes every passage of an agent anew and recounts its statistics (migrations)."""
    rows = connection.execute(
        text(
            "SELECT p.id, d.title, p.heading, p.text FROM passages p "
            "JOIN knowledge_documents d ON d.id = p.document_id WHERE p.agent_id = :agent"
        ),
        {"agent": agent_id},
    ).all()
    connection.execute(text("DELETE FROM knowledge_terms WHERE agent_id = :a"), {"a": agent_id})
    counted = count_terms(passage_terms(r[1], r[2], r[3]) for r in rows)
    if counted:
        connection.execute(ADD_STATS, stats_rows(agent_id, counted, 1))
    if sqlite:
        for statement in sqlite_create(agent_id):
            connection.exec_driver_sql(statement)
        if rows:
            connection.execute(
                text(sqlite_insert(agent_id)), [index_row(r[0], r[1], r[2], r[3]) for r in rows]
            )
        return
    for start in range(0, len(rows), 1000):
        batch = []
        for passage_id, title, heading, body in rows[start : start + 1000]:
            t, h, x = passage_terms(title, heading, body)
            batch.append(
                {
                    "id": passage_id,
                    "title_terms": " ".join(t),
                    "heading_terms": " ".join(h),
                    "text_terms": " ".join(x),
                }
            )
        connection.execute(POSTGRES_SEARCH_UPDATE, batch)


class PassageIndex:
    """The full-text index of passages on one engine, and its statistics."""

    def __init__(self, sqlite: bool) -> None:
        self._sqlite = sqlite

    async def add(
        self, connection: AsyncConnection, agent_id: str, passages: Sequence[dict[str, Any]]
    ) -> None:
        """Stores and indexes passages: dicts of document_id, position, heading, text and
        the document's title."""
        if not passages:
            return
        analysed = [passage_terms(p["title"], p["heading"], p["text"]) for p in passages]
        rows = [
            {
                "document_id": p["document_id"],
                "agent_id": agent_id,
                "position": p["position"],
                "heading": p["heading"],
                "text": p["text"],
                "title_terms": " ".join(t),
                "heading_terms": " ".join(h),
                "text_terms": " ".join(x),
            }
            for p, (t, h, x) in zip(passages, analysed, strict=True)
        ]
        if self._sqlite:
            await connection.execute(
                text(
                    "INSERT INTO passages (document_id, agent_id, position, heading, text) "
                    "VALUES (:document_id, :agent_id, :position, :heading, :text)"
                ),
                rows,
            )
            documents = sorted({p["document_id"] for p in passages})
            found = await connection.execute(
                text(
                    "SELECT id, document_id, position FROM passages WHERE document_id IN :ids"
                ).bindparams(bindparam("ids", expanding=True)),
                {"ids": documents},
            )
            ids = {(document, position): pid for pid, document, position in found}
            for statement in sqlite_create(agent_id):
                await connection.exec_driver_sql(statement)
            await connection.execute(
                text(sqlite_insert(agent_id)),
                [
                    {
                        "id": ids[row["document_id"], row["position"]],
                        "title": row["title_terms"],
                        "heading": row["heading_terms"],
                        "text": row["text_terms"],
                    }
                    for row in rows
                ],
            )
        else:
            await connection.execute(POSTGRES_INSERT, rows)
        await connection.execute(ADD_STATS, stats_rows(agent_id, count_terms(analysed), 1))

    async def remove(self, connection: AsyncConnection, agent_id: str, document_ids: list[str]):
        """Removes the passages of some of an agent's documents from the store, the index and
        the statistics."""
        if not document_ids:
            return
        found = await connection.execute(
            text(
                "SELECT p.id, d.title, p.heading, p.text FROM passages p "
                "JOIN knowledge_documents d ON d.id = p.document_id "
                "WHERE p.document_id IN :ids"
            ).bindparams(bindparam("ids", expanding=True)),
            {"ids": document_ids},
        )
        rows = found.all()
        if rows:
            counted = count_terms(passage_terms(r[1], r[2], r[3]) for r in rows)
            await connection.execute(ADD_STATS, stats_rows(agent_id, counted, -1))
            await connection.execute(_FORGET_EMPTY, {"agent": agent_id})
            if self._sqlite:
                await connection.execute(
                    text(f"DELETE FROM {sqlite_table(agent_id)} WHERE rowid = :id"),
                    [{"id": r[0]} for r in rows],
                )
        await connection.execute(
            text("DELETE FROM passages WHERE document_id IN :ids").bindparams(
                bindparam("ids", expanding=True)
            ),
            {"ids": document_ids},
        )

    async def drop_agent(self, connection: AsyncConnection, agent_id: str) -> None:
        """Removes every passage and statistic of an agent."""
        await connection.execute(
            text("DELETE FROM passages WHERE agent_id = :agent"), {"agent": agent_id}
        )
        await connection.execute(
            text("DELETE FROM knowledge_terms WHERE agent_id = :agent"), {"agent": agent_id}
        )
        if self._sqlite:
            await connection.exec_driver_sql(f"DROP TABLE IF EXISTS {sqlite_table(agent_id)}")

    async def search(
        self, connection: AsyncConnection, agent_id: str, terms: Sequence[str], limit: int
    ) -> list[ScoredPassage]:
        """The agent's best `limit` passages for analysed `terms`, best first."""
        if not terms or limit <= 0:
            return []
        found = await connection.execute(
            _READ_STATS, {"agent": agent_id, "terms": [ALL_TERMS, *dict.fromkeys(terms)]}
        )
        plan = plan_query(terms, {term: (n, o) for term, n, o in found})
        if plan is None:
            return []
        if self._sqlite:
            rows = await self._sqlite_candidates(connection, agent_id, plan)
        else:
            rows = await self._postgres_candidates(connection, agent_id, plan)
        scored = []
        for passage_id, document_id, title, position, heading, body in rows:
            score = bm25(*passage_terms(title, heading, body), plan)
            passage = ScoredPassage(document_id, title, position, body, score / (score + 1))
            scored.append((-score, passage_id, passage))
        scored.sort(key=lambda entry: (entry[0], entry[1]))
        return [passage for _, _, passage in scored[:limit]]

    @staticmethod
    async def _sqlite_candidates(
        connection: AsyncConnection, agent_id: str, plan: QueryPlan
    ) -> Sequence[Any]:
        match = " OR ".join(f'"{term}"' for term in plan.match)
        if plan.rank:
            # bm25() ranks by every phrase of the expression; rows must hold a match term.
            ranked = " OR ".join(f'"{term}"' for term in plan.rank)
            match = f"({match}) AND ({match} OR {ranked})"
        table = sqlite_table(agent_id)
        rank = f"bm25({table}, {TITLE_WEIGHT}, {HEADING_WEIGHT}, {TEXT_WEIGHT})"
        query = text(
            f"SELECT {_CANDIDATE_COLUMNS} FROM (SELECT rowid AS id, {rank} AS relevance "
            f"FROM {table} WHERE {table} MATCH :match ORDER BY relevance LIMIT :limit) AS hit "
            "JOIN passages p ON p.id = hit.id "
            "JOIN knowledge_documents d ON d.id = p.document_id ORDER BY hit.relevance, p.id"
        )
        return (await connection.execute(query, {"match": match, "limit": RESCORED})).all()

    @staticmethod
    async def _postgres_candidates(
        connection: AsyncConnection, agent_id: str, plan: QueryPlan
    ) -> Sequence[Any]:
        params: dict[str, Any] = {
            "agent": agent_id,
            "match": " | ".join(f"'{term}'" for term in plan.match),
            "weights": _POSTGRES_WEIGHTS,
            "limit": RESCORED,
        }
        ranks = []
        for i, term in enumerate([*plan.match, *plan.rank]):
            params[f"w{i}"], params[f"q{i}"] = plan.idf[term], f"'{term}'"
            ranks.append(
                f"CAST(:w{i} AS float8) * "
                f"ts_rank(CAST(:weights AS real[]), p.search, CAST(:q{i} AS tsquery))"
            )
        query = text(
            f"SELECT {_CANDIDATE_COLUMNS} FROM passages p "
            "JOIN knowledge_documents d ON d.id = p.document_id "
            "WHERE p.agent_id = :agent AND p.search @@ CAST(:match AS tsquery) "
            f"ORDER BY {' + '.join(ranks)} DESC, p.id LIMIT :limit"
        )
        return (await connection.execute(query, params)).all()
