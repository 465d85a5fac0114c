"""Path templates of `google.api.http` rules, parsed and compiled to matchers.

The grammar and matching follow grpc-gateway's `runtime.Pattern`:

    Template = "/" Segments [ Verb ] ;
    Segments = Segment { "/" Segment } ;
    Segment  = "*" | "**" | LITERAL | Variable ;
    Variable = "{" FieldPath [ "=" Segments ] "}" ;
    Verb     = ":" LITERAL ;
"""

from __future__ import annotations

import re
from dataclasses import dataclass

_IDENT = re.compile(r"[A-Za-z_][A-Za-z0-9_]*(?:\.[A-Za-z_][A-Za-z0-9_]*)*\Z")
_LITERAL = re.compile(r"[^/{}*=:]+\Z")


class TemplateError(ValueError):
    """A path template that does not follow the `google.api.http` grammar."""


@dataclass(frozen=True, slots=True)
class Variable:
    """A `{field.path=segments}` part of a template."""

    field_path: str
    segments: tuple[str, ...]


@dataclass(frozen=True, slots=True)
class PathTemplate:
    """A parsed template: its segments (literals, wildcards, variables) and its verb."""

    source: str
    segments: tuple[str | Variable, ...]
    verb: str
    variables: tuple[Variable, ...]
    regex: re.Pattern[str]

    @property
    def is_literal(self) -> bool:
        """Whether the template has no wildcards or variables."""
        return all(isinstance(s, str) and s not in ("*", "**") for s in self.segments)

    def match(self, path: str) -> dict[str, str] | None:
        """The variables bound by `path` (field path → value), or None when it does not match."""
        found = self.regex.match(path)
        if found is None:
            return None
        return {
            v.field_path: value for v, value in zip(self.variables, found.groups(), strict=True)
        }


def parse_template(source: str) -> PathTemplate:
    """Parse and compile `source`; raises TemplateError on a malformed template."""
    if not source.startswith("/"):
        raise TemplateError(f"template {source!r} must start with '/'")
    body, verb = _split_verb(source[1:])
    segments = tuple(_parse_segments(body, source, allow_variables=True))
    if any(s == "**" for s in segments[:-1]) or any(
        isinstance(s, Variable) and "**" in s.segments[:-1] for s in segments
    ):
        raise TemplateError(f"template {source!r}: '**' may only be the last segment")
    regex = "/" + "/".join(_segment_regex(s) for s in segments)
    if verb:
        regex += re.escape(":" + verb)
    variables = tuple(s for s in segments if isinstance(s, Variable))
    # DOTALL: a `**` value may hold any character, line feeds included.
    return PathTemplate(source, segments, verb, variables, re.compile(regex + r"\Z", re.DOTALL))


def _split_verb(body: str) -> tuple[str, str]:
    # A verb follows the last '/' and any closing brace, so `{name=a/*}:publish` splits correctly.
    tail_start = max(body.rfind("/"), body.rfind("}"))
    colon = body.find(":", tail_start + 1)
    if colon < 0:
        return body, ""
    verb = body[colon + 1 :]
    if not _LITERAL.match(verb):
        raise TemplateError(f"invalid verb {verb!r}")
    return body[:colon], verb


def _parse_segments(body: str, source: str, *, allow_variables: bool) -> list[str | Variable]:
    segments: list[str | Variable] = []
    position = 0
    while position <= len(body):
        if body.startswith("{", position):
            if not allow_variables:
                raise TemplateError(f"template {source!r}: nested variable")
            end = body.find("}", position)
            if end < 0:
                raise TemplateError(f"template {source!r}: unclosed '{{'")
            segments.append(_parse_variable(body[position + 1 : end], source))
            position = end + 1
        else:
            end = body.find("/", position)
            end = len(body) if end < 0 else end
            segment = body[position:end]
            if segment not in ("*", "**") and not _LITERAL.match(segment):
                raise TemplateError(f"template {source!r}: invalid segment {segment!r}")
            segments.append(segment)
            position = end
        if position == len(body):
            break
        if body[position] != "/":
            raise TemplateError(f"template {source!r}: expected '/' at {position + 1}")
        position += 1
    return segments


def _parse_variable(text: str, source: str) -> Variable:
    field_path, _, sub = text.partition("=")
    if not _IDENT.match(field_path):
        raise TemplateError(f"template {source!r}: invalid field path {field_path!r}")
    inner = _parse_segments(sub, source, allow_variables=False) if sub else ["*"]
    return Variable(field_path, tuple(str(s) for s in inner))


def _segment_regex(segment: str | Variable) -> str:
    if isinstance(segment, Variable):
        return "(" + "/".join(_segment_regex(s) for s in segment.segments) + ")"
    if segment == "*":
        return "[^/]+"
    if segment == "**":
        return ".*"
    return re.escape(segment)
