"""However a reply is cut into stream chunks, redaction sends exactly what redacting the whole
reply at once gives, and never lets a value it redacts out in a chunk."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st
from switchboard.v1 import agent_pb2

from server.guardrails import redactor_for

GUARDRAILS = agent_pb2.Guardrails(redact=["email", "phone", "card"], redact_patterns=[r"ORD-\d+"])
PIECES = [
    "Write to ",
    "jane.doe@example.com",
    " or call ",
    "+1 (555) 123-4567",
    ". Card ",
    "4111 1111 1111 1111",
    ", not 1234 5678 9012 3456",
    ". Order ",
    "ORD-12345",
    " shipped; ring +44 20 7946 0958",
    " now.",
]
SECRETS = ("jane.doe", "example.com", "123-4567", "4111 1111", "ORD-1", "7946 0958")


@settings(max_examples=300, deadline=None)
@given(
    pieces=st.lists(st.sampled_from(PIECES), min_size=1, max_size=12),
    cuts=st.lists(st.integers(min_value=1, max_value=400), max_size=25),
)
def test_any_chunking_redacts_like_the_whole_text(pieces: list[str], cuts: list[int]) -> None:
    text = " ".join(pieces)
    points = sorted({c for c in cuts if c < len(text)})
    chunks = [text[a:b] for a, b in zip([0, *points], [*points, len(text)], strict=True)]
    redactor = redactor_for(GUARDRAILS)
    sent = [redactor.feed(chunk) for chunk in chunks] + [redactor.finish()]
    assert "".join(sent) == redactor_for(GUARDRAILS).redact(text)
    for piece in sent:
        assert not any(secret in piece for secret in SECRETS)
