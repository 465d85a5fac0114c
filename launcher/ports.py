"""The serving ports: a worker's listening socket, and the claim `serve --workers N` holds on
the ports its workers share.

Workers share a port through SO_REUSEPORT, which the kernel grants to any process of the same
user: a second `serve` on the same ports would join them and take part of the traffic to its
own database. So before starting workers, `serve` claims each address: a name of its own (an
abstract Unix socket, gone with the process) that a second `serve` cannot take, and a bind
without SO_REUSEPORT, which fails while anything else listens on the port."""

from __future__ import annotations

import contextlib
import socket
from collections.abc import Iterator
from typing import Any


class PortInUse(OSError):
    """The address cannot be served by this process; the message names it."""


def _resolve(address: str) -> tuple[socket.AddressFamily, socket.SocketKind, int, Any]:
    host, _, port = address.rpartition(":")
    family, kind, proto, _, sockaddr = socket.getaddrinfo(
        host.strip("[]") or "127.0.0.1", int(port), type=socket.SOCK_STREAM
    )[0]
    return family, kind, proto, sockaddr


def listen(address: str, reuse_port: bool) -> socket.socket:
    """A TCP socket listening on `address` (`host:port`)."""
    family, kind, proto, sockaddr = _resolve(address)
    # With proto set to TCP, asyncio turns on TCP_NODELAY for each accepted connection.
    sock = socket.socket(family, kind, proto)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    if reuse_port:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
    try:
        sock.bind(sockaddr)
    except OSError as error:
        sock.close()
        raise PortInUse(f"cannot listen on {address}: {error.strerror}") from error
    sock.listen(2048)
    return sock


@contextlib.contextmanager
def claimed(addresses: list[str]) -> Iterator[None]:
    """Holds `addresses` for the workers of this process until the block ends; raises
    `PortInUse` when another `serve` holds one or anything listens on one."""
    with contextlib.ExitStack() as held:
        for address in addresses:
            held.enter_context(_claim(address))
        yield


@contextlib.contextmanager
def _claim(address: str) -> Iterator[None]:
    family, kind, proto, sockaddr = _resolve(address)
    name = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        # Abstract names live in the network namespace, as ports do.
        name.bind(f"\0switchboard-serve {sockaddr[0]} {sockaddr[1]}")
    except OSError as error:
        name.close()
        raise PortInUse(
            f"cannot listen on {address}: another switchboard serve holds it"
        ) from error
    try:
        with socket.socket(family, kind, proto) as probe:
            probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            try:
                probe.bind(sockaddr)
            except OSError as error:
                raise PortInUse(f"cannot listen on {address}: {error.strerror}") from error
        yield
    finally:
        name.close()
