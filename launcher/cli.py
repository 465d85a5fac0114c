"""The `switchboard` command: serve the core and the edge, and manage keys and agents."""

from __future__ import annotations

import asyncio
import dataclasses
import multiprocessing
import multiprocessing.connection
import os
import re
import shutil
import signal
import tempfile
from collections.abc import Awaitable, Callable
from typing import Annotated, TypeVar

import typer

from launcher import settings as defaults
from launcher.database import fail, open_database, url_or_exit
from launcher.demo import DEFAULT_WORKSPACE_ID, demo_key_name, ensure_demo
from launcher.knowledge import knowledge_app
from launcher.ports import PortInUse, claimed
from launcher.tenancy import usage as tenancy_usage
from launcher.tenancy import workspaces_app
from launcher.worker import WorkerConfig, run_worker
from observability import logs, tracing
from observability import metrics as prometheus
from server.auth import ALL_SCOPES
from server.chat import TurnSettings
from server.errors import AgentNotFound
from server.store import Store
from server.store.database import create_engine

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
app.add_typer(workspaces_app, name="workspaces")
app.command("usage")(tenancy_usage)

T = TypeVar("T")


def _choice(flag: str, value: str, choices: tuple[str, ...]) -> str:
    if value.lower() not in choices:
        raise typer.BadParameter(f"{value!r} is not one of {', '.join(choices)}", param_hint=flag)
    return value.lower()


_ORIGIN = re.compile(r"https?://[^/\s?#]+")

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
        help="sqlite:///FILE.db or postgresql://USER@HOST/DB (the async driver is chosen).",
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
RedisUrl = Annotated[
    str | None,
    typer.Option(
        "--redis-url",
        envvar="SWITCHBOARD_REDIS_URL",
        help="Redis for rate-limit counters shared by replicas, e.g. redis://127.0.0.1:6379/0.",
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
LogLevel = Annotated[
    str,
    typer.Option(
        "--log-level",
        envvar="SWITCHBOARD_LOG_LEVEL",
        callback=lambda value: _choice("--log-level", value, logs.LEVELS),
        help=f"The least important log lines written: {', '.join(logs.LEVELS)}.",
    ),
]
LogFormat = Annotated[
    str,
    typer.Option(
        "--log-format",
        envvar="SWITCHBOARD_LOG_FORMAT",
        callback=lambda value: _choice("--log-format", value, logs.FORMATS),
        help="json (one object per line), text, or auto: text on a terminal, else JSON.",
    ),
]
MetricsToken = Annotated[
    str | None,
    typer.Option(
        "--metrics-token",
        envvar="SWITCHBOARD_METRICS_TOKEN",
        help="Serve /metrics only to `Authorization: Bearer <token>`.",
    ),
]
Otel = Annotated[
    bool,
    typer.Option(
        "--otel",
        help="Send OpenTelemetry traces (OTLP/HTTP to OTEL_EXPORTER_OTLP_ENDPOINT, default "
        "http://localhost:4318); on by itself when that variable is set.",
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


def _with_store(database_url: str, work: Callable[[Store], Awaitable[T]]) -> T:
    return _run_store(open_database(database_url, create=False), work)


def _run_store(database_url: str, work: Callable[[Store], Awaitable[T]]) -> T:
    async def run() -> T:
        store = Store(create_engine(database_url))
        try:
            return await work(store)
        finally:
            await store.close()

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


def _supervise(config: WorkerConfig, workers: int, on_ready: Callable[[], None]) -> int:
    """Runs the workers until SIGTERM or SIGINT; stops them all if one dies. Returns the exit
    status. Calls `on_ready` once every worker listens on both ports. The caller holds the
    claim on the ports of several workers."""
    if workers == 1:
        run_worker(config, ready=on_ready)
        return 0
    context = multiprocessing.get_context("spawn")
    generation = context.Value("Q", 0)
    pipes = [context.Pipe(duplex=False) for _ in range(workers)]
    processes = [
        context.Process(target=run_worker, args=(config, generation, sender), daemon=True)
        for _, sender in pipes
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
    sentinels = [p.sentinel for p in processes]
    waiting = [receiver for receiver, _ in pipes]
    while waiting and not stopping:
        ready = multiprocessing.connection.wait([*waiting, *sentinels])
        if any(sentinel in ready for sentinel in sentinels):
            break
        for receiver in ready:
            assert isinstance(receiver, multiprocessing.connection.Connection)
            receiver.recv()
            waiting.remove(receiver)
        if not waiting:
            on_ready()
    multiprocessing.connection.wait(sentinels)
    failed = not stopping
    stop(signal.SIGTERM, None)
    for process in processes:
        # Workers drain for the grace period, then store the turns they cancelled.
        process.join(timeout=config.shutdown_grace_seconds + 15)
        if process.pid is not None:
            prometheus.process_ended(process.pid)
    return 1 if failed else 0


@app.command()
def serve(
    grpc_addr: GrpcAddr = defaults.DEFAULT_GRPC_ADDR,
    http_addr: HttpAddr = defaults.DEFAULT_HTTP_ADDR,
    database_url: DatabaseUrl = defaults.DEFAULT_DATABASE_URL,
    max_body_bytes: MaxBody = defaults.DEFAULT_MAX_BODY_BYTES,
    max_header_bytes: MaxHeader = defaults.DEFAULT_MAX_HEADER_BYTES,
    shutdown_grace_seconds: ShutdownGrace = defaults.DEFAULT_SHUTDOWN_GRACE_SECONDS,
    redis_url: RedisUrl = defaults.DEFAULT_REDIS_URL,
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
    log_level: LogLevel = defaults.DEFAULT_LOG_LEVEL,
    log_format: LogFormat = defaults.DEFAULT_LOG_FORMAT,
    metrics_token: MetricsToken = None,
    otel: Otel = False,
) -> None:
    """Serve the gRPC core and the HTTP edge; the edge calls the core in-process."""
    config = WorkerConfig(
        database_url=url_or_exit(database_url),
        grpc_addr=grpc_addr,
        http_addr=None if grpc_only else http_addr,
        max_body_bytes=max_body_bytes,
        max_header_bytes=max_header_bytes,
        shutdown_grace_seconds=shutdown_grace_seconds,
        reuse_port=workers > 1,
        turns=TurnSettings(context_tokens=context_tokens, max_tool_steps=max_tool_steps),
        redis_url=redis_url,
        log_level=log_level.lower(),
        log_format=logs.resolve_format(log_format.lower()),
        metrics_token=metrics_token or None,
        otel=tracing.wanted(otel),
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
    logs.configure(config.log_level, config.log_format)
    database_url, grpc_addr = config.database_url, config.grpc_addr
    http_addr, grpc_only = config.http_addr or "", config.http_addr is None
    open_database(database_url, create=True)
    if demo:
        key_name = demo_key_name(grpc_addr)

        async def seed(store: Store) -> tuple[str, list[str]]:
            await ensure_demo(store)
            # The key an earlier `serve --demo` on this address printed: keys do not pile up.
            revoked = []
            for key in await store.keys.list_page(DEFAULT_WORKSPACE_ID, limit=10_000, after=None):
                if key.display_name == key_name and key.revoked_at is None:
                    await store.keys.revoke(DEFAULT_WORKSPACE_ID, key.id)
                    revoked.append(f"{key.prefix}… ({key.id})")
            _, secret = await store.keys.create(
                DEFAULT_WORKSPACE_ID, display_name=key_name, kind="secret", scopes=ALL_SCOPES
            )
            return secret, revoked

        key, revoked = _run_store(database_url, seed)
        for old in revoked:
            _say(f"Revoked the previous demo key {old}.")
        _print_demo(key, grpc_addr, http_addr, grpc_only)

    where = f"gRPC on {grpc_addr}" + ("" if grpc_only else f", HTTP on http://{http_addr}")

    def serving() -> None:
        _say(f"Switchboard is serving {where} with {workers} worker(s)")

    if workers == 1:
        return _supervise(config, workers, serving)
    # The supervisor owns the directory where the workers' metrics meet.
    given = os.environ.get(prometheus.MULTIPROCESS_ENV)
    directory = prometheus.prepare_directory(given or tempfile.mkdtemp(prefix="switchboard-"))
    try:
        return _supervise(dataclasses.replace(config, metrics_dir=directory), workers, serving)
    finally:
        if not given:
            shutil.rmtree(directory, ignore_errors=True)


@app.command()
def edge(
    core: Annotated[
        str, typer.Option("--core", envvar="SWITCHBOARD_CORE_ADDR", help="Core HOST:PORT.")
    ] = defaults.DEFAULT_GRPC_ADDR,
    http_addr: HttpAddr = defaults.DEFAULT_HTTP_ADDR,
    max_body_bytes: MaxBody = defaults.DEFAULT_MAX_BODY_BYTES,
    max_header_bytes: MaxHeader = defaults.DEFAULT_MAX_HEADER_BYTES,
    shutdown_grace_seconds: ShutdownGrace = defaults.DEFAULT_SHUTDOWN_GRACE_SECONDS,
    log_level: LogLevel = defaults.DEFAULT_LOG_LEVEL,
    log_format: LogFormat = defaults.DEFAULT_LOG_FORMAT,
    metrics_token: MetricsToken = None,
    otel: Otel = False,
) -> None:
    """Serve the HTTP edge alone, forwarding to a running core."""
    from http_edge.app import run

    logs.configure(log_level.lower(), log_format.lower())
    if tracing.wanted(otel):
        tracing.configure(service_name="switchboard-edge")
    try:
        run(
            core,
            http_addr,
            max_body_bytes=max_body_bytes,
            max_header_bytes=max_header_bytes,
            shutdown_grace_seconds=shutdown_grace_seconds,
            metrics_token=metrics_token or None,
        )
    finally:
        tracing.shutdown()


def _listed(value: str) -> list[str]:
    return list(dict.fromkeys(item.strip() for item in value.split(",") if item.strip()))


@keys_app.command("create")
def keys_create(
    scopes: Annotated[
        str, typer.Option(help=f"Comma-separated: {', '.join(ALL_SCOPES)}. Secret keys only.")
    ] = "",
    name: Annotated[str, typer.Option(help="A label for people.")] = "",
    publishable: Annotated[
        bool,
        typer.Option(
            "--publishable",
            help="A pk_ key for browsers: it may only chat, with --agents, from --origins.",
        ),
    ] = False,
    agents: Annotated[
        str, typer.Option(help="Publishable keys: comma-separated agent ids or slugs.")
    ] = "",
    origins: Annotated[
        str,
        typer.Option(help="Publishable keys: comma-separated origins, e.g. https://shop.example."),
    ] = "",
    database_url: DatabaseUrl = defaults.DEFAULT_DATABASE_URL,
) -> None:
    """Create a key and print it (it is shown only this once)."""
    wanted, agent_names, origin_list = _listed(scopes), _listed(agents), _listed(origins)
    if publishable:
        if wanted and wanted != ["chat:write"]:
            fail("a publishable key has exactly the scope chat:write; leave out --scopes")
        if not agent_names:
            fail("a publishable key needs --agents: the agents it may chat with")
        bad = [o for o in origin_list if not _ORIGIN.fullmatch(o)]
        if bad:
            fail(f"{bad[0]!r} is not an origin; write it as scheme://host[:port]")
        wanted = ["chat:write"]
    else:
        if agent_names or origin_list:
            fail("only publishable keys are limited to agents and origins; add --publishable")
        unknown = [s for s in wanted if s not in ALL_SCOPES]
        if unknown or not wanted:
            fail(
                f"unknown scope(s): {', '.join(unknown) or '(none given)'}; "
                f"choose from {', '.join(ALL_SCOPES)}"
            )

    async def create(store: Store) -> str:
        await store.workspaces.ensure(DEFAULT_WORKSPACE_ID, "default")
        agent_ids = []
        for agent in agent_names:
            try:
                agent_ids.append((await store.agents.get(DEFAULT_WORKSPACE_ID, agent)).id)
            except AgentNotFound:
                fail(f"agent {agent!r} does not exist")
        _, secret = await store.keys.create(
            DEFAULT_WORKSPACE_ID,
            display_name=name,
            kind="publishable" if publishable else "secret",
            scopes=wanted,
            allowed_agents=list(dict.fromkeys(agent_ids)),
            allowed_origins=origin_list,
        )
        return secret

    _say(_with_store(database_url, create))


@agents_app.command("list")
def agents_list(database_url: DatabaseUrl = defaults.DEFAULT_DATABASE_URL) -> None:
    """List the agents with their published version."""

    async def rows(store: Store) -> list[tuple[str, str, int]]:
        agents = await store.agents.list_page(DEFAULT_WORKSPACE_ID, limit=10_000, after=None)
        return [(a.id, a.slug or "", a.latest_version) for a in agents]

    listed = _with_store(database_url, rows)
    _say(f"{'ID':<30} {'SLUG':<24} PUBLISHED")
    for agent_id, slug, version in listed:
        _say(f"{agent_id:<30} {slug:<24} {('v' + str(version)) if version else '-'}")
