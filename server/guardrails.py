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

_EMAIL = regex.compile(r"[A-Za-z0-9._%+-]+@[A-Za-z0-9-]+(?:\.[A-Za-z0-9-]+)*\.[A-Za-z]{2,}")
_CARD = regex.compile(r"(?<![\d-])(?:\d[ -]?){12,18}\d(?![\d])")
# Not a piece of a longer digit run (an order number, a card failing the Luhn check).
_PHONE = regex.compile(r"(?:\+|(?<![+\d][ .()-]*))\d(?:[ .()-]*\d){6,14}(?![.()-]*\d)")


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


@dataclass(frozen=True, slots=True)
class _Rule:
    pattern: regex.Pattern[str]
    # The replacement of a match, or None to keep it (a digit run that fails the Luhn check).
    marker: Callable[[str], str | None]
    # Matches may overlap, so that a vetoed match does not hide a real one inside it.
    overlapped: bool = False


# Cards before phones: a card number would otherwise read as a long phone number.
_BUILTIN: dict[str, _Rule] = {
    "card": _Rule(_CARD, _card_marker, overlapped=True),
    "email": _Rule(_EMAIL, lambda _: "[redacted email]"),
    "phone": _Rule(_PHONE, lambda _: "[redacted phone]"),
}


class Redactor:
    """Redacts a stream of text chunks: `feed` returns what can be sent now, `finish` the rest.

    All rules are matched on the original text in one pass (the leftmost match wins, then the
    longest, then the rule listed first), so that how a reply is cut into chunks never changes
    what is redacted."""

    __slots__ = ("_rules", "_sent", "_text")

    def __init__(self, rules: Sequence[_Rule]) -> None:
        self._rules = rules
        self._text = ""
        self._sent = 0

    @property
    def active(self) -> bool:
        """Whether any redaction rule applies."""
        return bool(self._rules)

    def feed(self, chunk: str) -> str:
        """The redacted text that can be sent now that `chunk` arrived."""
        if not self._rules:
            return chunk
        self._text += chunk
        return self._release(final=False)

    def finish(self) -> str:
        """The rest of the redacted text, once the reply has ended."""
        return self._release(final=True) if self._rules else ""

    def redact(self, text: str) -> str:
        """A whole text at once."""
        whole = Redactor(self._rules)
        whole._text = text
        return whole._release(final=True)

    def _release(self, *, final: bool) -> str:
        """The redacted text from what was sent so far up to the point where the tail that
        could still become (or extend) a match begins; everything when `final`."""
        text, start = self._text, self._sent
        hold = len(text)
        found: list[tuple[int, int, int, str]] = []
        for order, rule in enumerate(self._rules):
            for match in _finditer(rule, text, start, partial=not final):
                # Held while the text from the match on could still grow into a longer match
                # ("+44 20 7946 " may be followed by "0958").
                if not final and (
                    match.partial or _could_extend(rule.pattern, text, match.start())
                ):
                    hold = min(hold, match.start())
                    continue
                marker = rule.marker(match.group())
                if marker is not None:
                    found.append((match.start(), -match.end(), order, marker))
        chosen: list[tuple[int, int, str]] = []
        end_of_last = start
        for begin, negative_end, _, marker in sorted(found):
            if begin >= end_of_last:
                chosen.append((begin, -negative_end, marker))
                end_of_last = -negative_end
        # A whole match is never cut by the hold point.
        for begin, end, _ in reversed(chosen):
            if begin < hold < end:
                hold = begin
        released: list[str] = []
        position = start
        for begin, end, marker in chosen:
            if end > hold:
                break
            released += (text[position:begin], marker)
            position = end
        released.append(text[position:hold])
        self._sent = hold
        return "".join(released)


def _finditer(rule: _Rule, text: str, start: int, *, partial: bool) -> list[regex.Match[str]]:
    try:
        return list(
            rule.pattern.finditer(
                text,
                start,
                partial=partial,
                overlapped=rule.overlapped,
                timeout=MATCH_TIMEOUT_SECONDS,
            )
        )
    except TimeoutError:
        # A pattern too slow for this text: treat the whole rest as one match.
        return [_Everything(text, start)]  # type: ignore[list-item]


def _could_extend(pattern: regex.Pattern[str], text: str, start: int) -> bool:
    try:
        return (
            pattern.fullmatch(text, start, partial=True, timeout=MATCH_TIMEOUT_SECONDS) is not None
        )
    except TimeoutError:
        return True


class _Everything:
    """Stands for a match of the whole rest of the text, when a pattern ran out of time."""

    partial = False

    def __init__(self, text: str, start: int) -> None:
        self._text, self._start = text, start

    def start(self) -> int:
        return self._start

    def end(self) -> int:
        return len(self._text)

    def group(self) -> str:
        return self._text[self._start :]


_NO_RULES = Redactor(())


def redactor_for(guardrails: agent_pb2.Guardrails) -> Redactor:
    """The output rails of an agent: its built-in redactions, then its own patterns."""
    if not guardrails.redact and not guardrails.redact_patterns:
        # Without rules a redactor keeps nothing: one serves every such turn.
        return _NO_RULES
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
