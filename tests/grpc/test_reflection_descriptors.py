"""What reflection clients (grpcurl, buf curl, Postman) learn about the contract.

Served by a synchronous gRPC server through pytest-grpc's fixtures, which only serve
synchronous servicers: grpc_reflection's servicer is one, fed with the same service names as
the core. The core's own grpc.aio services are covered by the fixtures in tests/conftest.py."""

from __future__ import annotations

import pytest
from google.api import annotations_pb2
from google.protobuf import descriptor_pb2
from grpc_reflection.v1alpha import reflection, reflection_pb2, reflection_pb2_grpc

from server.app import SERVICE_NAMES


@pytest.fixture(scope="module")
def grpc_add_to_server():
    return reflection_pb2_grpc.add_ServerReflectionServicer_to_server


@pytest.fixture(scope="module")
def grpc_servicer():
    return reflection.ReflectionServicer(service_names=(*SERVICE_NAMES, reflection.SERVICE_NAME))


@pytest.fixture(scope="module")
def grpc_stub_cls(grpc_channel):
    return reflection_pb2_grpc.ServerReflectionStub


def _ask(stub, **request: str) -> reflection_pb2.ServerReflectionResponse:
    return next(
        iter(stub.ServerReflectionInfo(iter([reflection_pb2.ServerReflectionRequest(**request)])))
    )


def test_lists_every_service(grpc_stub):
    listed = _ask(grpc_stub, list_services="")
    assert {s.name for s in listed.list_services_response.service} == {
        *SERVICE_NAMES,
        reflection.SERVICE_NAME,
    }


@pytest.mark.parametrize("service", SERVICE_NAMES)
def test_each_service_resolves_with_its_http_rules(grpc_stub, service):
    answer = _ask(grpc_stub, file_containing_symbol=service)
    files = [
        descriptor_pb2.FileDescriptorProto.FromString(raw)
        for raw in answer.file_descriptor_response.file_descriptor_proto
    ]
    by_name = {f.name: f for f in files}
    short = service.rsplit(".", 1)[-1]
    [declaring] = [f for f in files if any(s.name == short for s in f.service)]
    # Every import is resolvable by a reflection client.
    for dependency in declaring.dependency:
        if dependency not in by_name:
            found = _ask(grpc_stub, file_by_filename=dependency)
            assert found.file_descriptor_response.file_descriptor_proto, dependency
    [proto] = [s for s in declaring.service if s.name == short]
    for method in proto.method:
        assert method.options.HasExtension(annotations_pb2.http), method.name
