"""Retrieval through the real doors, on SQLite and PostgreSQL: the planted passage among
thousands of decoys sharing its common words, isolation between agents, very long questions,
and knowledge that is live for every published version."""

from __future__ import annotations

from bench.corpus import generate
from tests.knowledge.conftest import FALLBACK, Door


def test_the_planted_passage_wins_among_thousands_of_decoys(door: Door) -> None:
    corpus = generate(3000, questions=25, seed=11)
    agent = door.create_agent(knowledge={"top_k": 3})
    door.add_documents(agent, [(d.title, d.content) for d in corpus.documents])
    for planted in corpus.questions:
        reply = door.ask(agent, planted.question)
        assert reply["choices"][0]["message"]["content"] == planted.answer, planted.question
    planted = corpus.questions[0]
    text, sources = door.sources(agent, planted.question)
    assert text == planted.answer
    best = sources[0]
    assert best["title"] == planted.title and best["text"] == planted.answer
    assert best["document"].startswith(f"agents/{agent.id}/documents/doc_")
    assert isinstance(best.get("passage", 0), int)
    assert 0 < sources[-1]["score"] <= best["score"] < 1


def test_titles_weigh_more_than_body_text(door: Door) -> None:
    agent = door.create_agent()
    door.add_documents(
        agent,
        [
            ("Kettles", "Descale it every month with a spoon of citric acid."),
            ("Toasters", "Unlike kettles, toasters need no descaling; empty the crumb tray."),
        ],
    )
    assert door.ask(agent, "kettles")["choices"][0]["message"]["content"].startswith("Descale")


def test_another_agents_knowledge_never_changes_a_score_or_appears(door: Door) -> None:
    mine = door.create_agent()
    door.add_documents(
        mine,
        [
            ("Parcels", "Parcels to Norway travel by ferry and arrive within nine days."),
            ("Gift cards", "Gift cards never expire and can be spent on anything."),
        ],
    )
    question = "How long do parcels to Norway take by ferry?"
    before = door.sources(mine, question)
    noisy = door.create_agent()
    door.add_documents(
        noisy,
        [
            (f"Norway parcels {n}", "Parcels to Norway, ferry parcels, Norway ferry.")
            for n in range(300)
        ],
    )
    after = door.sources(mine, question)
    assert after == before
    assert before[0].startswith("Parcels to Norway travel by ferry")
    assert all(s["document"].startswith(f"agents/{mine.id}/") for s in after[1])
    # And the other way round: the noisy agent never answers from mine.
    reply = door.ask(noisy, "Do gift cards expire?")
    assert reply["choices"][0]["message"]["content"] == FALLBACK


def test_a_question_of_5000_words_is_answered(door: Door) -> None:
    corpus = generate(500, questions=1, seed=5)
    agent = door.create_agent()
    door.add_documents(agent, [(d.title, d.content) for d in corpus.documents])
    [planted] = corpus.questions
    chatter = (
        "I ordered several things last month and my account shows the order twice, the "
        "delivery took long and support asked me to check my email for a confirmation. "
    )
    # Common words of the corpus, and order numbers no passage holds, longer than any word
    # of the question: none of them may crowd its words out.
    words = chatter.split()
    padding = " ".join(words[i % len(words)] if i % 3 else f"reference{i:06d}" for i in range(2500))
    question = f"{padding} {planted.question} {padding}"
    assert len(question.split()) > 5000
    reply = door.ask(agent, question)
    assert reply["choices"][0]["message"]["content"] == planted.answer


def test_knowledge_is_live_for_every_published_version(door: Door) -> None:
    agent = door.create_agent(publish=True)
    question = "Which ferry goes to Svalbard?"
    assert door.ask(agent, question)["choices"][0]["message"]["content"] == FALLBACK
    [document] = door.add_documents(
        agent, [("Ferries", "The polar ferry Nordstjernen sails to Svalbard every Tuesday.")]
    )
    # No new version was published: version 1 answers from the document at once.
    reply = door.ask(agent, question)
    assert reply["choices"][0]["message"]["content"].startswith("The polar ferry")
    door.http.delete(f"/v1/{document.name}").raise_for_status()
    assert door.ask(agent, question)["choices"][0]["message"]["content"] == FALLBACK
