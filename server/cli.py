"""The `switchboard` command: serve the core and the edge, and manage keys and agents."""

from __future__ import annotations

import asyncio
import logging
import multiprocessing
import signal
from collections.abc import Awaitable, Callable
from typing import Annotated, TypeVar

import typer

from server import settings as defaults
from server.auth import ALL_SCOPES
from server.demo import DEFAULT_WORKSPACE_ID, ensure_demo
from server.store.database import create_engine, migrate
from server.store.repository import Repository

app = typer.Typer(
    help="Switchboard, a self-hostable agent server.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
)
keys_app = typer.Typer(help="Manage API keys.", no_args_is_help=True)
agents_app = typer.Typer(help="Inspect agents.", no_args_is_help=True)
app.add_typer(keys_app, name="keys")
app.add_typer(agents_app, name="agents")

T = TypeVar("T")

GrpcAddr = Annotated[
    str, typer.Option("--grpc-addr", envvar="SWITCHBOARD_GRPC_ADDR", help="gRPC listen address.")
]
HttpAddr = Annotated[
    str, typer.Option("--http-addr", envvar="SWITCHBOARD_HTTP_ADDR", help="HTTP listen address.")
]
DatabaseUrl = Annotated[
    str,
    typer.Option(
        "--database-url",
        envvar="SWITCHBOARD_DATABASE_URL",
        help="SQLAlchemy URL: sqlite+aiosqlite:///file.db or postgresql+psycopg://…",
    ),
]
MaxBody = Annotated[
    int,
    typer.Option(
        "--max-body-bytes", envvar="SWITCHBOARD_MAX_BODY_BYTES", help="Largest HTTP body."
    ),
]


def _with_repository(database_url: str, work: Callable[[Repository], Awaitable[T]]) -> T:
    migrate(database_url)

    async def run() -> T:
        repository = Repository(create_engine(database_url))
        try:
            return await work(repository)
        finally:
            await repository.close()

    return asyncio.run(run())


def _say(line: str) -> None:
    print(line, flush=True)


def _print_demo(key: str, grpc_addr: str, http_addr: str, grpc_only: bool) -> None:
    _say(f"SWITCHBOARD_API_KEY={key}")
    _say("")
    _say("Try it with grpcurl:")
    _say(
        f'  grpcurl -plaintext -H "authorization: Bearer {key}" '
        '-d \'{"model": "support-bot", "messages": [{"role": "user", '
        f'"content": "Do you ship to Canada?"}}]}}\' {grpc_addr} '
        "switchboard.v1.CompletionService/CreateChatCompletion"
    )
    if not grpc_only:
        _say("Or with curl through the OpenAI-compatible edge:")
        _say(
            f'  curl http://{http_addr}/v1/chat/completions -H "Authorization: Bearer {key}" '
            '-H \'Content-Type: application/json\' -d \'{"model": "support-bot", '
            '"messages": [{"role": "user", "content": "Do you ship to Canada?"}]}\''
        )
        _say("Or with the OpenAI SDK:")
        _say(
            f'  OpenAI(base_url="http://{http_addr}/v1", api_key="{key}")'
            '.chat.completions.create(model="support-bot", messages=[...])'
        )
    _say("")


def _run_edge(core: str, http_addr: str, max_body_bytes: int) -> None:
    from http_edge.app import run

    run(core, http_addr, max_body_bytes=max_body_bytes)


async def _serve_core(
    database_url: str,
    grpc_addr: str,
    edge: multiprocessing.Process | None,
    on_ready: Callable[[], None],
) -> None:
    from server.app import start_core

    repository = Repository(create_engine(database_url))
    server = await start_core(repository, grpc_addr)
    on_ready()
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    if edge is not None:
        # One command serves both doors: if the edge dies (say, its port is taken), stop.
        loop.add_reader(edge.sentinel, stop.set)
    await stop.wait()
    # Drain in-flight calls, streams included, before exiting.
    await server.stop(grace=10)
    await repository.close()


@app.command()
def serve(
    grpc_addr: GrpcAddr = defaults.DEFAULT_GRPC_ADDR,
    http_addr: HttpAddr = defaults.DEFAULT_HTTP_ADDR,
    database_url: DatabaseUrl = defaults.DEFAULT_DATABASE_URL,
    max_body_bytes: MaxBody = defaults.DEFAULT_MAX_BODY_BYTES,
    demo: Annotated[
        bool, typer.Option(help="Seed the demo agent and print a fresh all-scopes key.")
    ] = False,
    grpc_only: Annotated[
        bool, typer.Option(help="Serve gRPC only, without the HTTP edge.")
    ] = False,
) -> None:
    """Serve the gRPC core and, in a second process, the HTTP edge."""
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s %(message)s")
    migrate(database_url)
    if demo:

        async def seed(repository: Repository) -> str:
            await ensure_demo(repository)
            _, secret = await repository.create_key(
                DEFAULT_WORKSPACE_ID, display_name="demo", kind="secret", scopes=ALL_SCOPES
            )
            return secret

        key = _with_repository(database_url, seed)
        _print_demo(key, grpc_addr, http_addr, grpc_only)

    edge: multiprocessing.Process | None = None
    if not grpc_only:
        edge = multiprocessing.get_context("spawn").Process(
            target=_run_edge, args=(grpc_addr, http_addr, max_body_bytes), daemon=True
        )
        edge.start()

    def ready() -> None:
        where = f"gRPC on {grpc_addr}" + ("" if grpc_only else f", HTTP on http://{http_addr}")
        _say(f"Switchboard is serving {where}")

    try:
        asyncio.run(_serve_core(database_url, grpc_addr, edge, ready))
    finally:
        if edge is not None and edge.is_alive():
            edge.terminate()
            edge.join(timeout=10)
    if edge is not None and edge.exitcode not in (0, -signal.SIGTERM):
        typer.echo(
            f"the HTTP edge stopped (exit code {edge.exitcode}); see the log above", err=True
        )
        raise typer.Exit(1)


@app.command()
def edge(
    core: Annotated[
        str, typer.Option("--core", envvar="SWITCHBOARD_CORE_ADDR", help="Core HOST:PORT.")
    ] = defaults.DEFAULT_GRPC_ADDR,
    http_addr: HttpAddr = defaults.DEFAULT_HTTP_ADDR,
    max_body_bytes: MaxBody = defaults.DEFAULT_MAX_BODY_BYTES,
) -> None:
    """Serve the HTTP edge alone, forwarding to a running core."""
    _run_edge(core, http_addr, max_body_bytes)


@keys_app.command("create")
def keys_create(
    scopes: Annotated[str, typer.Option(help=f"Comma-separated: {', '.join(ALL_SCOPES)}.")],
    name: Annotated[str, typer.Option(help="A label for people.")] = "",
    database_url: DatabaseUrl = defaults.DEFAULT_DATABASE_URL,
) -> None:
    """Create a secret key and print it (it is shown only this once)."""
    wanted = [s.strip() for s in scopes.split(",") if s.strip()]
    unknown = [s for s in wanted if s not in ALL_SCOPES]
    if unknown or not wanted:
        typer.echo(
            f"unknown scope(s): {', '.join(unknown) or '(none given)'}; "
            f"choose from {', '.join(ALL_SCOPES)}",
            err=True,
        )
        raise typer.Exit(2)

    async def create(repository: Repository) -> str:
        await repository.ensure_workspace(DEFAULT_WORKSPACE_ID, "default")
        _, secret = await repository.create_key(
            DEFAULT_WORKSPACE_ID, display_name=name, kind="secret", scopes=wanted
        )
        return secret

    _say(_with_repository(database_url, create))


@agents_app.command("list")
def agents_list(database_url: DatabaseUrl = defaults.DEFAULT_DATABASE_URL) -> None:
    """List the agents with their published version."""

    async def rows(repository: Repository) -> list[tuple[str, str, int]]:
        agents = await repository.list_agents(DEFAULT_WORKSPACE_ID, limit=10_000, after=None)
        return [(a.id, a.slug or "", a.latest_version) for a in agents]

    listed = _with_repository(database_url, rows)
    _say(f"{'ID':<30} {'SLUG':<24} PUBLISHED")
    for agent_id, slug, version in listed:
        _say(f"{agent_id:<30} {slug:<24} {('v' + str(version)) if version else '-'}")
