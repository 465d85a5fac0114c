"""The route table: every `google.api.http` binding of the generated services, matched by path.

Routes are read once from the descriptors at start-up; a request is matched against literal
paths by dictionary lookup first and against the compiled templates after, as grpc-gateway's
`ServeMux` does, and a path bound only under other methods answers 405.
"""

from __future__ import annotations

import importlib
import pkgutil
from collections.abc import Iterator
from dataclasses import dataclass, field
from types import ModuleType

from google.api import annotations_pb2, http_pb2
from google.protobuf import descriptor, message, message_factory

from http_edge.pattern import PathTemplate, parse_template

_HTTP_METHODS = ("get", "put", "post", "delete", "patch")


@dataclass(frozen=True, slots=True)
class Route:
    """One HTTP binding of one RPC."""

    http_method: str
    template: PathTemplate
    method: descriptor.MethodDescriptor
    request_class: type[message.Message]
    response_class: type[message.Message]
    body: str
    response_body: str
    rpc_path: str = field(init=False)

    def __post_init__(self) -> None:
        service = self.method.containing_service.full_name
        object.__setattr__(self, "rpc_path", f"/{service}/{self.method.name}")

    @property
    def server_streaming(self) -> bool:
        """Whether the RPC streams its responses."""
        return self.method.server_streaming

    @property
    def client_streaming(self) -> bool:
        """Whether the RPC takes a stream of requests."""
        return self.method.client_streaming


class RouteTable:
    """Matches (method, path) to a route and its path bindings."""

    def __init__(self, routes: list[Route]) -> None:
        self.routes = routes
        self._literal: dict[str, dict[str, Route]] = {}
        self._templated: list[Route] = []
        for route in routes:
            if route.template.is_literal:
                path = "/" + "/".join(str(s) for s in route.template.segments)
                if route.template.verb:
                    path += ":" + route.template.verb
                self._literal.setdefault(path, {})[route.http_method] = route
            else:
                self._templated.append(route)

    def match(self, http_method: str, path: str) -> tuple[Route, dict[str, str]] | list[str]:
        """The route and its bindings, or the methods allowed on `path` (empty: unknown path)."""
        candidates: list[tuple[Route, dict[str, str]]] = []
        by_method = self._literal.get(path)
        if by_method is not None:
            route = by_method.get(http_method)
            if route is not None:
                return route, {}
            candidates.extend((route, {}) for route in by_method.values())
        for route in self._templated:
            bindings = route.template.match(path)
            if bindings is not None:
                candidates.append((route, bindings))
        # A template with a verb is the more specific: `agents/a:publish` is not an agent's name.
        if any(route.template.verb for route, _ in candidates):
            candidates = [(route, b) for route, b in candidates if route.template.verb]
        allowed: list[str] = []
        for route, bindings in candidates:
            if route.http_method == http_method:
                return route, bindings
            if route.http_method not in allowed:
                allowed.append(route.http_method)
        return allowed


def load_routes(package: str = "switchboard.v1") -> list[Route]:
    """Every HTTP binding (additional bindings included) of every service in `package`."""
    routes: list[Route] = []
    for module in _service_modules(package):
        for service in module.DESCRIPTOR.services_by_name.values():
            for method in service.methods:
                routes.extend(_method_routes(method))
    return routes


def _service_modules(package: str) -> Iterator[ModuleType]:
    root = importlib.import_module(package)
    for info in pkgutil.iter_modules(root.__path__):
        if info.name.endswith("_pb2") and not info.name.endswith("_grpc"):
            module = importlib.import_module(f"{package}.{info.name}")
            if module.DESCRIPTOR.services_by_name:
                yield module


def _method_routes(method: descriptor.MethodDescriptor) -> Iterator[Route]:
    options = method.GetOptions()
    if not options.HasExtension(annotations_pb2.http):
        return
    rule = options.Extensions[annotations_pb2.http]
    request_class = message_factory.GetMessageClass(method.input_type)
    response_class = message_factory.GetMessageClass(method.output_type)
    for binding in (rule, *rule.additional_bindings):
        http_method, template = _rule_pattern(binding)
        yield Route(
            http_method=http_method,
            template=parse_template(template),
            method=method,
            request_class=request_class,
            response_class=response_class,
            body=binding.body,
            response_body=binding.response_body,
        )


def _rule_pattern(rule: http_pb2.HttpRule) -> tuple[str, str]:
    kind = rule.WhichOneof("pattern")
    if kind == "custom":
        return rule.custom.kind.upper(), rule.custom.path
    if kind in _HTTP_METHODS:
        return kind.upper(), getattr(rule, kind)
    raise ValueError(f"HttpRule without a pattern: {rule}")
