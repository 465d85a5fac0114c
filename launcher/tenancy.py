"""`switchboard workspaces …` and `switchboard usage`: tenants, their balances and their usage,
straight from the database the operator points at."""

from __future__ import annotations

import asyncio
import csv
import sys
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from typing import Annotated, TypeVar

import typer

from launcher import settings as defaults
from launcher.database import open_database
from server.auth import ALL_SCOPES
from server.errors import SwitchboardError
from server.store import Store
from server.store.database import create_engine
from server.store.usage import GROUPINGS, UsageSum

T = TypeVar("T")

workspaces_app = typer.Typer(
    help="Manage workspaces and their token balances.", no_args_is_help=True
)

DatabaseUrl = Annotated[
    str,
    typer.Option(
        "--database-url",
        envvar="SWITCHBOARD_DATABASE_URL",
        help="sqlite:///FILE.db or postgresql://USER@HOST/DB (the async driver is chosen).",
    ),
]


def _run(database_url: str, work: Callable[[Store], Awaitable[T]]) -> T:
    database_url = open_database(database_url, create=False)

    async def run() -> T:
        store = Store(create_engine(database_url))
        try:
            return await work(store)
        except SwitchboardError as error:
            typer.echo(f"switchboard: {error.message}", err=True)
            raise typer.Exit(2) from None
        finally:
            await store.close()

    return asyncio.run(run())


@workspaces_app.command("create")
def create(
    name: Annotated[str, typer.Argument(help="A name for people.")],
    database_url: DatabaseUrl = defaults.DEFAULT_DATABASE_URL,
) -> None:
    """Create a workspace and print its first all-scopes key (shown only this once)."""

    async def work(store: Store) -> tuple[str, str]:
        workspace = await store.workspaces.create(name)
        _, secret = await store.keys.create(
            workspace.id, display_name="first key", kind="secret", scopes=ALL_SCOPES
        )
        return workspace.id, secret

    workspace_id, secret = _run(database_url, work)
    typer.echo(f"workspace {workspace_id} ({name})")
    typer.echo(f"SWITCHBOARD_API_KEY={secret}")


@workspaces_app.command("list")
def list_workspaces(database_url: DatabaseUrl = defaults.DEFAULT_DATABASE_URL) -> None:
    """List the workspaces with their token balances."""

    async def work(store: Store) -> list[tuple[str, str, str]]:
        rows = await store.workspaces.list_all()
        return [
            (w.id, w.name, "unlimited" if w.token_balance is None else str(w.token_balance))
            for w in rows
        ]

    typer.echo(f"{'ID':<46} {'NAME':<24} BALANCE")
    for workspace_id, name, balance in _run(database_url, work):
        typer.echo(f"{workspace_id:<46} {name:<24} {balance}")


@workspaces_app.command("set-balance")
def set_balance(
    workspace: Annotated[str, typer.Argument(help="The workspace's id, or its unique name.")],
    tokens: Annotated[
        str, typer.Argument(help="Tokens left to spend, or `unlimited`.", show_default=False)
    ],
    database_url: DatabaseUrl = defaults.DEFAULT_DATABASE_URL,
) -> None:
    """Set a workspace's token balance (every completion debits it; chat answers 402 at 0)."""
    if tokens == "unlimited":
        balance = None
    elif tokens.lstrip("-").isdigit():
        balance = int(tokens)
    else:
        typer.echo("switchboard: TOKENS must be a whole number or `unlimited`", err=True)
        raise typer.Exit(2)

    async def work(store: Store) -> str:
        workspaces = store.workspaces
        found = await workspaces.find(workspace)
        updated = await workspaces.set_balance(found.id, balance)
        return "unlimited" if updated.token_balance is None else str(updated.token_balance)

    typer.echo(f"{workspace}: balance {_run(database_url, work)}")


def usage(
    workspace: Annotated[str, typer.Argument(help="The workspace's id, or its unique name.")],
    group_by: Annotated[
        str, typer.Option("--group-by", help=f"One of {', '.join(GROUPINGS)}.")
    ] = "day",
    since: Annotated[str | None, typer.Option(help="From this UTC date, YYYY-MM-DD.")] = None,
    until: Annotated[str | None, typer.Option(help="Before this UTC date, YYYY-MM-DD.")] = None,
    csv_output: Annotated[
        bool, typer.Option("--csv", help="Print CSV instead of a table.")
    ] = False,
    database_url: DatabaseUrl = defaults.DEFAULT_DATABASE_URL,
) -> None:
    """Print a workspace's token usage grouped by key, agent, session or day."""
    if group_by not in GROUPINGS:
        typer.echo(f"switchboard: --group-by must be one of {', '.join(GROUPINGS)}", err=True)
        raise typer.Exit(2)
    start, end = _day(since, "--since"), _day(until, "--until")

    async def work(store: Store) -> tuple[list[UsageSum], UsageSum]:
        found = await store.workspaces.find(workspace)
        return await store.usage.summarize(
            found.id, group_by=group_by, start=start, end=end, after=None, limit=1_000_000
        )

    groups, totals = _run(database_url, work)
    header = [group_by, "requests", "prompt_tokens", "completion_tokens", "total_tokens"]
    rows = [_row(g) for g in groups]
    if csv_output:
        writer = csv.writer(sys.stdout)
        writer.writerow(header)
        writer.writerows(rows)
        return
    width = max([len(header[0]), *(len(r[0]) for r in rows), len("total")])
    typer.echo(f"{header[0]:<{width}} " + " ".join(f"{h:>17}" for h in header[1:]))
    for row in [*rows, _row(UsageSum("total", *_counts(totals)))]:
        typer.echo(f"{row[0]:<{width}} " + " ".join(f"{v:>17}" for v in row[1:]))


def _counts(total: UsageSum) -> tuple[int, int, int, int]:
    return total.requests, total.prompt_tokens, total.completion_tokens, total.total_tokens


def _row(group: UsageSum) -> list[str]:
    return [group.group, *(str(v) for v in _counts(group))]


def _day(value: str | None, flag: str) -> datetime | None:
    if value is None:
        return None
    try:
        return datetime.strptime(value, "%Y-%m-%d").replace(tzinfo=UTC)
    except ValueError:
        typer.echo(f"switchboard: {flag} must be a date, YYYY-MM-DD", err=True)
        raise typer.Exit(2) from None
