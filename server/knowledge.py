"""Knowledge text handling: splitting documents into passages and turning a question into
full-text search terms that SQLite FTS5 and PostgreSQL rank the same way."""

from __future__ import annotations

import re

_MAX_PASSAGE_CHARS = 1200
_WORD = re.compile(r"[^\W_]+", re.UNICODE)
_SENTENCE_END = re.compile(r"(?<=[.!?])\s+")

# Words that carry no meaning for ranking; dropped so that "what is the ..." does not match
# every passage.
_STOP_WORDS = frozenset(
    """a about above after again against all am an and any are as at be because been before
    being below between both but by can could did do does doing down during each few for from
    further had has have having he her here hers herself him himself his how i if in into is
    it its itself just let me more most my myself no nor not now of off on once only or other
    our ours ourselves out over own same she should so some such than that the their theirs
    them themselves then there these they this those through to too under until up very was
    we were what when where which while who whom why will with would you your yours yourself
    yourselves s t d ll m re ve hi hello hey please thanks thank ok okay""".split()
)


def split_passages(content: str) -> list[tuple[str, str]]:
    """`(heading, text)` pairs: paragraphs (blank-line separated) become passages, each with
    the markdown heading above it (indexed, not replied); long paragraphs are cut at sentence
    ends."""
    passages: list[tuple[str, str]] = []
    heading = ""
    for block in re.split(r"\n\s*\n", content.replace("\r\n", "\n")):
        block = block.strip()
        if not block:
            continue
        lines = block.split("\n")
        if lines[0].lstrip().startswith("#"):
            heading = lines[0].lstrip("# ").strip()
            block = "\n".join(lines[1:]).strip()
            if not block:
                continue
        for piece in _cut(block):
            passages.append((heading, piece))
    return passages


def _cut(block: str) -> list[str]:
    if len(block) <= _MAX_PASSAGE_CHARS:
        return [block]
    pieces: list[str] = []
    current = ""
    for sentence in _SENTENCE_END.split(block):
        if current and len(current) + len(sentence) + 1 > _MAX_PASSAGE_CHARS:
            pieces.append(current)
            current = sentence
        else:
            current = f"{current} {sentence}".strip()
    if current:
        pieces.append(current)
    return pieces


# A question of any length becomes at most this many terms, so one query stays cheap and
# within what the full-text engines accept.
MAX_SEARCH_TERMS = 32
_MAX_TERM_CHARS = 64


def search_terms(text: str) -> list[str]:
    """The distinct meaningful words of a question, lowercased, in order; of a long question,
    its `MAX_SEARCH_TERMS` longest words (long words are the rarer ones)."""
    seen: dict[str, None] = {}
    for word in _WORD.findall(text.lower()):
        if word not in _STOP_WORDS and 1 < len(word) <= _MAX_TERM_CHARS:
            seen.setdefault(word, None)
    terms = list(seen)
    if len(terms) <= MAX_SEARCH_TERMS:
        return terms
    kept = set(sorted(terms, key=len, reverse=True)[:MAX_SEARCH_TERMS])
    return [term for term in terms if term in kept]


def count_tokens(text: str) -> int:
    """Tokens as the builtin backend counts them: each word and each punctuation mark."""
    return len(_TOKEN.findall(text))


_TOKEN = re.compile(r"\w+|[^\w\s]", re.UNICODE)
