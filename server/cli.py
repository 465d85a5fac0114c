"""The `switchboard` command: serve the core and the edge, and manage keys and agents."""

from __future__ import annotations

import asyncio
import logging
import multiprocessing
import multiprocessing.connection
import signal
from collections.abc import Awaitable, Callable
from typing import Annotated, TypeVar

import typer

from server import settings as defaults
from server.auth import ALL_SCOPES
from server.chat import TurnSettings
from server.demo import DEFAULT_WORKSPACE_ID, ensure_demo
from server.knowledge_cli import knowledge_app
from server.ports import PortInUse, claimed
from server.store.database import create_engine, migrate
from server.store.repository import Repository
from server.worker import WorkerConfig, run_worker

app = typer.Typer(
    help="Switchboard, a self-hostable agent server.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
)
keys_app = typer.Typer(help="Manage API keys.", no_args_is_help=True)
agents_app = typer.Typer(help="Inspect agents.", no_args_is_help=True)
app.add_typer(keys_app, name="keys")
app.add_typer(agents_app, name="agents")
app.add_typer(knowledge_app, name="knowledge")

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
MaxHeader = Annotated[
    int,
    typer.Option(
        "--max-header-bytes",
        envvar="SWITCHBOARD_MAX_HEADER_BYTES",
        min=1024,
        help="Largest HTTP request line and headers together (431 above).",
    ),
]
ContextTokens = Annotated[
    int,
    typer.Option(
        "--context-tokens",
        envvar="SWITCHBOARD_CONTEXT_TOKENS",
        min=256,
        help="Estimated tokens of session history sent to a language model per turn.",
    ),
]
MaxToolSteps = Annotated[
    int,
    typer.Option(
        "--max-tool-steps",
        envvar="SWITCHBOARD_MAX_TOOL_STEPS",
        min=1,
        max=50,
        help="Model steps per turn when the agent has tools; the last is offered none.",
    ),
]
ShutdownGrace = Annotated[
    float,
    typer.Option(
        "--shutdown-grace-seconds",
        envvar="SWITCHBOARD_SHUTDOWN_GRACE_SECONDS",
        min=0,
        help="After SIGTERM, how long calls and streams may finish before they are ended.",
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


def _supervise(config: WorkerConfig, workers: int) -> int:
    """Runs the workers until SIGTERM or SIGINT; stops them all if one dies. Returns the exit
    status. The caller holds the claim on the ports of several workers."""
    if workers == 1:
        run_worker(config)
        return 0
    context = multiprocessing.get_context("spawn")
    generation = context.Value("Q", 0)
    processes = [
        context.Process(target=run_worker, args=(config, generation), daemon=True)
        for _ in range(workers)
    ]
    for process in processes:
        process.start()
    stopping = False

    def stop(signum: int, _frame: object) -> None:
        nonlocal stopping
        stopping = True
        for process in processes:
            if process.is_alive():
                process.terminate()

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    multiprocessing.connection.wait([p.sentinel for p in processes])
    failed = not stopping
    stop(signal.SIGTERM, None)
    for process in processes:
        # Workers drain for the grace period, then store the turns they cancelled.
        process.join(timeout=config.shutdown_grace_seconds + 15)
    return 1 if failed else 0


@app.command()
def serve(
    grpc_addr: GrpcAddr = defaults.DEFAULT_GRPC_ADDR,
    http_addr: HttpAddr = defaults.DEFAULT_HTTP_ADDR,
    database_url: DatabaseUrl = defaults.DEFAULT_DATABASE_URL,
    max_body_bytes: MaxBody = defaults.DEFAULT_MAX_BODY_BYTES,
    max_header_bytes: MaxHeader = defaults.DEFAULT_MAX_HEADER_BYTES,
    shutdown_grace_seconds: ShutdownGrace = defaults.DEFAULT_SHUTDOWN_GRACE_SECONDS,
    context_tokens: ContextTokens = defaults.DEFAULT_CONTEXT_TOKENS,
    max_tool_steps: MaxToolSteps = defaults.DEFAULT_MAX_TOOL_STEPS,
    workers: Annotated[
        int,
        typer.Option(
            envvar="SWITCHBOARD_WORKERS",
            min=1,
            help="Serving processes sharing the ports and the database.",
        ),
    ] = defaults.DEFAULT_WORKERS,
    demo: Annotated[
        bool, typer.Option(help="Seed the demo agent and print a fresh all-scopes key.")
    ] = False,
    grpc_only: Annotated[
        bool, typer.Option(help="Serve gRPC only, without the HTTP edge.")
    ] = False,
) -> None:
    """Serve the gRPC core and the HTTP edge; the edge calls the core in-process."""
    config = WorkerConfig(
        database_url=database_url,
        grpc_addr=grpc_addr,
        http_addr=None if grpc_only else http_addr,
        max_body_bytes=max_body_bytes,
        max_header_bytes=max_header_bytes,
        shutdown_grace_seconds=shutdown_grace_seconds,
        reuse_port=workers > 1,
        turns=TurnSettings(context_tokens=context_tokens, max_tool_steps=max_tool_steps),
    )
    # One worker binds its ports alone; several share them, and so must claim them first.
    addresses = [a for a in (config.http_addr, grpc_addr) if a] if workers > 1 else []
    try:
        with claimed(addresses):
            status = _run_server(config, workers, demo)
    except PortInUse as error:
        typer.echo(f"switchboard: {error}", err=True)
        raise typer.Exit(1) from None
    if status:
        typer.echo("a worker stopped unexpectedly; see the log above", err=True)
        raise typer.Exit(status)


def _run_server(config: WorkerConfig, workers: int, demo: bool) -> int:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s %(message)s")
    database_url, grpc_addr = config.database_url, config.grpc_addr
    http_addr, grpc_only = config.http_addr or "", config.http_addr is None
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

    where = f"gRPC on {grpc_addr}" + ("" if grpc_only else f", HTTP on http://{http_addr}")
    _say(f"Switchboard is serving {where} with {workers} worker(s)")
    return _supervise(config, workers)


@app.command()
def edge(
    core: Annotated[
        str, typer.Option("--core", envvar="SWITCHBOARD_CORE_ADDR", help="Core HOST:PORT.")
    ] = defaults.DEFAULT_GRPC_ADDR,
    http_addr: HttpAddr = defaults.DEFAULT_HTTP_ADDR,
    max_body_bytes: MaxBody = defaults.DEFAULT_MAX_BODY_BYTES,
    max_header_bytes: MaxHeader = defaults.DEFAULT_MAX_HEADER_BYTES,
    shutdown_grace_seconds: ShutdownGrace = defaults.DEFAULT_SHUTDOWN_GRACE_SECONDS,
) -> None:
    """Serve the HTTP edge alone, forwarding to a running core."""
    from http_edge.app import run

    run(
        core,
        http_addr,
        max_body_bytes=max_body_bytes,
        max_header_bytes=max_header_bytes,
        shutdown_grace_seconds=shutdown_grace_seconds,
    )


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
