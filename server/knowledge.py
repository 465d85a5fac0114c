"""Knowledge text handling: splitting documents into passages, and the one analyser that
turns passages and questions into the terms both full-text engines index and search.

SQLite FTS5 and PostgreSQL index the analyser's output, not the raw text, so that both
engines see the same terms and the store can keep exact per-agent counts of them."""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass

import Stemmer

_MAX_PASSAGE_CHARS = 1200
_WORD = re.compile(r"[^\W_]+", re.UNICODE)
_SENTENCE_END = re.compile(r"(?<=[.!?])\s+")


@dataclass(frozen=True, slots=True)
class Language:
    """How one language's text becomes terms: the words that carry no meaning for ranking
    (dropped, so that "what is the ..." does not match every passage) and a Snowball stemmer
    (so that "batteries" finds "battery")."""

    name: str
    stop_words: frozenset[str]
    stemmer: str


ENGLISH = Language(
    name="english",
    stop_words=frozenset(
        """a about above after again against all am an and any are as at be because been before
        being below between both but by can could did do does doing down during each few for
        from further had has have having he her here hers herself him himself his how i if in
        into is it its itself just let me more most my myself no nor not now of off on once
        only or other our ours ourselves out over own same she should so some such than that
        the their theirs them themselves then there these they this those through to too under
        until up very was we were what when where which while who whom why will with would you
        your yours yourself yourselves s t d ll m re ve hi hello hey please thanks thank ok
        okay""".split()
    ),
    stemmer="english",
)
# Each language the analyser supports; knowledge is analysed as English.
LANGUAGES = {ENGLISH.name: ENGLISH}

_MAX_TERM_CHARS = 64


class Analyzer:
    """Words → terms: lowercased, stop words dropped, stemmed. Stems are cached, because a
    corpus repeats a small vocabulary millions of times."""

    def __init__(self, language: Language = ENGLISH) -> None:
        self.language = language
        self._stemmer = Stemmer.Stemmer(language.stemmer)
        self._stems: dict[str, str] = {}

    def terms(self, text: str) -> list[str]:
        """The terms of `text` in order, repeats kept (they are term frequencies)."""
        stems = self._stems
        found = []
        for word in _WORD.findall(text.lower()):
            stem = stems.get(word)
            if stem is None:
                stem = self._stem(word)
                if len(stems) < 500_000:
                    stems[word] = stem
            if stem:
                found.append(stem)
        return found

    def _stem(self, word: str) -> str:
        if word in self.language.stop_words or not 1 < len(word) <= _MAX_TERM_CHARS:
            return ""
        return str(self._stemmer.stemWord(word))


ANALYZER = Analyzer()
# Titles and headings are labels: only their first terms are indexed.
_MAX_LABEL_TERMS = 64


def passage_terms(title: str, heading: str, text: str) -> tuple[list[str], list[str], list[str]]:
    """The terms a passage is indexed by: its document's title, its heading, its text."""
    return (
        ANALYZER.terms(title)[:_MAX_LABEL_TERMS],
        ANALYZER.terms(heading)[:_MAX_LABEL_TERMS],
        ANALYZER.terms(text),
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
    for sentence in _sentences(block):
        if current and len(current) + len(sentence) + 1 > _MAX_PASSAGE_CHARS:
            pieces.append(current)
            current = sentence
        else:
            current = f"{current} {sentence}".strip()
    if current:
        pieces.append(current)
    return pieces


def _sentences(block: str) -> list[str]:
    """Sentences, a sentence longer than a passage cut at spaces (or anywhere, if it has
    none), so that no passage outgrows what the indexes take."""
    pieces: list[str] = []
    for sentence in _SENTENCE_END.split(block):
        while len(sentence) > _MAX_PASSAGE_CHARS:
            cut = sentence.rfind(" ", 0, _MAX_PASSAGE_CHARS)
            cut = cut if cut > 0 else _MAX_PASSAGE_CHARS
            pieces.append(sentence[:cut])
            sentence = sentence[cut:].lstrip()
        pieces.append(sentence)
    return pieces


# A question of any length is looked up by at most this many distinct terms (its longest
# ones when it has more); the store then searches with the rarest few of them.
MAX_QUESTION_TERMS = 2048


def search_terms(text: str) -> list[str]:
    """The distinct terms of a question, in order; of a very long question, its
    `MAX_QUESTION_TERMS` longest (long words are the rarer ones)."""
    terms = list(dict.fromkeys(ANALYZER.terms(text)))
    if len(terms) <= MAX_QUESTION_TERMS:
        return terms
    kept = set(sorted(terms, key=len, reverse=True)[:MAX_QUESTION_TERMS])
    return [term for term in terms if term in kept]


def content_hash(content: str) -> str:
    """SHA-256 of a document's content, hex: the same file sent again is recognised."""
    return hashlib.sha256(content.encode("utf-8", "surrogatepass")).hexdigest()


def count_tokens(text: str) -> int:
    """Tokens as the builtin backend counts them: each word and each punctuation mark."""
    return len(_TOKEN.findall(text))


_TOKEN = re.compile(r"\w+|[^\w\s]", re.UNICODE)
