"""Properties of the edge's parsers under arbitrary input (hypothesis): path templates parse,
print and match back; every route builds its request or answers a 4xx `ApiError`, whatever
the body, query string and path bindings; JSON survives encoding and decoding."""

from __future__ import annotations

import json
import math
from typing import Any

import pytest
from google.protobuf import descriptor
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from http_edge.errors import ApiError
from http_edge.marshal import build_request, decode_json, encode_json
from http_edge.mux import Route, RouteTable, load_routes
from http_edge.openai import parse_chat_request
from http_edge.pattern import PathTemplate, TemplateError, Variable, parse_template

ROUTES = load_routes()
TABLE = RouteTable(ROUTES)
PROPERTY = settings(
    max_examples=150,
    deadline=None,
    derandomize=True,
    database=None,
    suppress_health_check=[HealthCheck.too_slow],
)
_FD = descriptor.FieldDescriptor

# Text as a client can send it: lone surrogates, NULs, controls and astral characters included.
any_text = st.text(st.characters(codec=None), max_size=30) | st.sampled_from(
    ["", "\ud800", "a\udfffb", "\x00", "\U0001f600", "9" * 30, "KEY_KIND_SECRET\ud800"]
)
literal = st.text(st.characters(exclude_characters="/{}*=:", codec="utf-8"), min_size=1, max_size=8)
identifier = st.from_regex(
    r"[A-Za-z_][A-Za-z0-9_]{0,6}(\.[A-Za-z_][A-Za-z0-9_]{0,6}){0,2}", fullmatch=True
)
json_scalars = st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | any_text
json_values = st.recursive(
    json_scalars,
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(any_text, inner, max_size=4),
    max_leaves=12,
)


# Path templates


@st.composite
def templates(draw: st.DrawFn) -> tuple[str, list[tuple[str, str]], str]:
    """A template in the grammar, a path that matches it, and the bindings that path makes."""
    count = draw(st.integers(1, 4))
    source_parts: list[str] = []
    path_parts: list[str] = []
    bindings: list[tuple[str, str]] = []
    names: set[str] = set()
    for index in range(count):
        last = index == count - 1
        kind = draw(st.sampled_from(["literal", "star", "variable"] + (["rest"] if last else [])))
        if kind == "literal":
            text = draw(literal)
            source_parts.append(text)
            path_parts.append(text)
        elif kind == "star":
            source_parts.append("*")
            path_parts.append(draw(_segment_value))
        elif kind == "rest":
            source_parts.append("**")
            path_parts.append(draw(_rest_value))
        else:
            name = draw(identifier.filter(lambda n: n not in names))
            names.add(name)
            inner = draw(st.lists(literal | st.just("*"), min_size=0, max_size=3))
            if last and draw(st.booleans()):
                inner.append("**")
            values = [
                draw(_segment_value) if s == "*" else draw(_rest_value) if s == "**" else s
                for s in (inner or ["*"])
            ]
            spec = "=" + "/".join(inner) if inner not in ([], ["*"]) else ""
            source_parts.append("{" + name + spec + "}")
            path_parts.append("/".join(values))
            bindings.append((name, "/".join(values)))
    verb = draw(st.none() | literal)
    suffix = f":{verb}" if verb else ""
    return "/" + "/".join(source_parts) + suffix, bindings, "/" + "/".join(path_parts) + suffix


_segment_value = st.text(
    st.characters(exclude_characters="/", codec="utf-8"), min_size=1, max_size=8
)
_rest_value = st.text(st.characters(codec="utf-8"), max_size=12)


def _print(template: PathTemplate) -> str:
    parts = []
    for segment in template.segments:
        if isinstance(segment, Variable):
            inner = "" if segment.segments == ("*",) else "=" + "/".join(segment.segments)
            parts.append("{" + segment.field_path + inner + "}")
        else:
            parts.append(segment)
    return "/" + "/".join(parts) + (":" + template.verb if template.verb else "")


@PROPERTY
@given(templates())
def test_templates_parse_print_and_match_back(case: tuple[str, list[tuple[str, str]], str]) -> None:
    source, bindings, path = case

    template = parse_template(source)

    assert _print(template) == source
    assert template.match(path) == dict(bindings)


@PROPERTY
@given(st.text(max_size=40) | st.text(st.sampled_from("/{}*=:ab."), max_size=40))
def test_any_text_parses_or_raises_template_error(source: str) -> None:
    try:
        template = parse_template(source)
    except TemplateError:
        return
    assert template.source == source
    assert template.match(source) is None or isinstance(template.match(source), dict)


@PROPERTY
@given(
    st.sampled_from(["GET", "POST", "PATCH", "DELETE", "PUT", "OPTIONS", "HEAD", "QUERY"]),
    st.text(max_size=60).map(lambda p: "/" + p)
    | st.lists(st.sampled_from(["v1", "agents", "sessions", "keys", "x", ":publish", "**"])).map(
        lambda parts: "/" + "/".join(parts)
    ),
)
def test_matching_any_path_never_raises(method: str, path: str) -> None:
    for route in ROUTES:
        bound = route.template.match(path)
        assert bound is None or set(bound) == {v.field_path for v in route.template.variables}
    matched = TABLE.match(method, path)
    if isinstance(matched, tuple):
        route, _ = matched
        assert route.http_method == method
    else:
        assert method not in matched


# Requests from bodies, query strings and path bindings


def _field_value(field: descriptor.FieldDescriptor, depth: int) -> st.SearchStrategy[Any]:
    """Values near what the field takes, mixed with anything at all."""
    if field.message_type is not None and field.message_type.GetOptions().map_entry:
        right: st.SearchStrategy[Any] = st.dictionaries(
            any_text, any_text | json_scalars, max_size=3
        )
    elif field.type == _FD.TYPE_MESSAGE:
        nested = field.message_type
        right = (
            st.deferred(lambda: _message_document(nested, depth + 1))
            if depth < 3 and not nested.full_name.startswith("google.protobuf.")
            else any_text
        )
    elif field.type == _FD.TYPE_ENUM:
        names = [v.name for v in field.enum_type.values]
        right = st.sampled_from(names) | st.integers(-3, 5) | any_text
    elif field.type == _FD.TYPE_BOOL:
        right = st.booleans()
    elif field.type in (_FD.TYPE_DOUBLE, _FD.TYPE_FLOAT):
        right = st.floats() | st.sampled_from(["NaN", "Infinity", "-1e400", "x"])
    elif field.type == _FD.TYPE_STRING or field.type == _FD.TYPE_BYTES:
        right = any_text
    else:
        right = st.integers() | st.integers().map(str) | st.sampled_from(["1.5", "1e3", " 7"])
    if field.is_repeated and not (field.message_type and field.message_type.GetOptions().map_entry):
        right = st.lists(right, max_size=3)
    return st.one_of(right, right, json_values)


def _message_document(message_type: descriptor.Descriptor, depth: int = 0) -> st.SearchStrategy:
    return st.fixed_dictionaries(
        {}, optional={f.name: _field_value(f, depth) for f in message_type.fields}
    )


def _body(route: Route) -> st.SearchStrategy[bytes]:
    if not route.body:
        return st.just(b"")
    if route.body == "*":
        shaped = _message_document(route.method.input_type)
    else:
        shaped = _field_value(route.method.input_type.fields_by_name[route.body], 0)
    documents = st.one_of(shaped, shaped, json_values)
    encoded = documents.map(lambda d: json.dumps(d).encode())
    return encoded | st.binary(max_size=40)


def _query(route: Route) -> st.SearchStrategy[bytes]:
    names = [f.name for f in route.method.input_type.fields] + ["a.b", "page_size.x", ""]
    pair = st.tuples(st.sampled_from(names) | any_text, any_text | st.integers().map(str))
    as_text = st.lists(pair, max_size=4).map(
        lambda pairs: "&".join(f"{k}={v}" for k, v in pairs).encode("utf-8", "surrogatepass")
    )
    return as_text | st.binary(max_size=40)


def _bindings(route: Route) -> st.SearchStrategy[dict[str, str]]:
    return st.fixed_dictionaries({v.field_path: any_text for v in route.template.variables})


@pytest.mark.parametrize("route", ROUTES, ids=lambda r: f"{r.http_method} {r.template.source}")
def test_every_route_builds_its_request_or_answers_a_4xx(route: Route) -> None:
    @PROPERTY
    @given(body=_body(route), query=_query(route), bindings=_bindings(route))
    def build(body: bytes, query: bytes, bindings: dict[str, str]) -> None:
        try:
            request = build_request(route, body, bindings, query)
        except ApiError as error:
            assert 400 <= error.http_status < 500, error.message
            assert len(error.message) < 600, error.message[:600]
            encode_json({"message": error.message, "field": error.field})
            return
        assert isinstance(request, route.request_class)
        request.SerializeToString()

    build()


@PROPERTY
@given(
    json_values
    | _message_document(
        next(r for r in ROUTES if r.rpc_path.endswith("CreateChatCompletion")).method.input_type
    )
)
def test_any_chat_body_parses_or_answers_a_400(document: Any) -> None:
    try:
        request = parse_chat_request(document)
    except ApiError as error:
        assert error.http_status == 400
        return
    request.SerializeToString()


# JSON


@PROPERTY
@given(json_values)
def test_encoded_json_decodes_to_the_same_document(document: Any) -> None:
    encoded = encode_json(document)

    encoded.decode()  # always UTF-8, lone surrogates included (as escapes)
    assert _same(decode_json(encoded), document)


@PROPERTY
@given(st.binary(max_size=60) | any_text.map(lambda t: t.encode("utf-8", "surrogatepass")))
def test_any_bytes_decode_or_answer_a_400(body: bytes) -> None:
    try:
        decode_json(body)
    except ApiError as error:
        assert error.http_status == 400


def _same(left: Any, right: Any) -> bool:
    if isinstance(left, float) and isinstance(right, float):
        return left == right or (math.isinf(left) and left == right)
    if isinstance(left, list) and isinstance(right, list):
        return len(left) == len(right) and all(map(_same, left, right))
    if isinstance(left, dict) and isinstance(right, dict):
        return left.keys() == right.keys() and all(_same(left[k], right[k]) for k in left)
    return type(left) is type(right) and left == right
