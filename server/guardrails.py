"""An agent's guardrails: input rails that answer before any backend runs, and output rails
that redact every reply, streamed ones included.

`Redactor` holds back only the shortest tail of a stream that could still become a match (with
`regex`'s partial matching), so tokens keep flowing and a match split across chunks is caught.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

import regex
from switchboard.v1 import agent_pb2

# Custom patterns are the agent author's, run on every reply: bound their time per search.
MATCH_TIMEOUT_SECONDS = 0.05
_MAX_PATTERN_TIMEOUTS = 3

_EMAIL = regex.compile(r"[A-Za-z0-9._%+-]+@[A-Za-z0-9-]+(?:\.[A-Za-z0-9-]+)*\.[A-Za-z]{2,}")
_CARD = regex.compile(r"(?<![\d-])(?:\d[ -]?){12,18}\d(?![\d])")
# Not a piece of a longer digit run (an order number, a card failing the Luhn check).
_PHONE = regex.compile(r"(?<![\w+]|\d[ .()-]*)\+?\d(?:[ .()-]*\d){6,14}(?![ .()-]*\d)")


def _luhn(digits: str) -> bool:
    total = 0
    for index, char in enumerate(reversed(digits)):
        value = int(char)
        if index % 2:
            value = value * 2 - 9 if value > 4 else value * 2
        total += value
    return total % 10 == 0


def _card_marker(text: str) -> str | None:
    digits = "".join(c for c in text if c.isdigit())
    return "[redacted card]" if 13 <= len(digits) <= 19 and _luhn(digits) else None


@dataclass(frozen=True)
class _Rule:
    pattern: regex.Pattern[str]
    # The replacement of a match, or None to keep it (a digit run that fails the Luhn check).
    marker: Callable[[str], str | None]


# Cards before phones: a card number would otherwise read as a long phone number.
_BUILTIN: dict[str, _Rule] = {
    "card": _Rule(_CARD, _card_marker),
    "email": _Rule(_EMAIL, lambda _: "[redacted email]"),
    "phone": _Rule(_PHONE, lambda _: "[redacted phone]"),
}


class Redactor:
    """Redacts a stream of text chunks: `feed` returns what can be sent now, `finish` the rest."""

    def __init__(self, rules: Sequence[_Rule]) -> None:
        self._rules = rules
        self._pending = ""

    @property
    def active(self) -> bool:
        return bool(self._rules)

    def feed(self, chunk: str) -> str:
        if not self._rules:
            return chunk
        self._pending += chunk
        hold = self._hold_point(self._pending)
        ready, self._pending = self._pending[:hold], self._pending[hold:]
        return self._redact(ready)

    def finish(self) -> str:
        rest, self._pending = self._pending, ""
        return self._redact(rest)

    def redact(self, text: str) -> str:
        """A whole text at once."""
        return self._redact(text)

    def _hold_point(self, text: str) -> int:
        """Where the tail that could still become (or extend) a match begins."""
        hold = len(text)
        spans: list[tuple[int, int]] = []
        for rule in self._rules:
            for match in _finditer(rule.pattern, text, partial=True):
                if match.partial or match.end() == len(text):
                    hold = min(hold, match.start())
                else:
                    spans.append(match.span())
        # A whole match must not be cut by the hold point either.
        moved = True
        while moved:
            moved = False
            for start, end in spans:
                if start < hold < end:
                    hold, moved = start, True
        return hold

    def _redact(self, text: str) -> str:
        for rule in self._rules:
            if not text:
                break
            text = _sub(rule, text)
        return text


def _finditer(pattern: regex.Pattern[str], text: str, *, partial: bool) -> list[regex.Match[str]]:
    try:
        return list(pattern.finditer(text, partial=partial, timeout=MATCH_TIMEOUT_SECONDS))
    except TimeoutError:
        return []


def _sub(rule: _Rule, text: str) -> str:
    def replace(match: regex.Match[str]) -> str:
        marker = rule.marker(match.group())
        return match.group() if marker is None else marker

    try:
        return str(rule.pattern.sub(replace, text, timeout=MATCH_TIMEOUT_SECONDS))
    except TimeoutError:
        # A pattern too slow for this text redacts the whole of it rather than leak it.
        return "[redacted]"


def redactor_for(guardrails: agent_pb2.Guardrails) -> Redactor:
    """The output rails of an agent: its built-in redactions, then its own patterns."""
    rules = [rule for name, rule in _BUILTIN.items() if name in guardrails.redact]
    rules += [
        _Rule(regex.compile(pattern), lambda _: "[redacted]")
        for pattern in guardrails.redact_patterns
    ]
    return Redactor(rules)


def blocked_term(guardrails: agent_pb2.Guardrails, text: str) -> str | None:
    """The first of the agent's blocked terms found in `text` as whole words, ignoring case."""
    for term in guardrails.blocked_terms:
        words = r"\s+".join(regex.escape(word) for word in term.split())
        if words and regex.search(rf"(?<!\w){words}(?!\w)", text, regex.IGNORECASE):
            return term
    return None
