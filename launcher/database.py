"""The `--database-url` of the `switchboard` commands: the URL as people type it, the database
checked and migrated, and any problem with it told in one line with exit status 2."""

from __future__ import annotations

from typing import NoReturn

import typer

from server.store.database import DatabaseUrlError, async_url, migrate, safe_url, sqlite_file


def fail(message: str) -> NoReturn:
    """One line on stderr and exit status 2: a problem with what the command was given."""
    typer.echo(f"switchboard: {message}", err=True)
    raise typer.Exit(2)


def url_or_exit(database_url: str) -> str:
    """The URL with its async driver, or exit naming what is wrong with it."""
    try:
        return async_url(database_url)
    except DatabaseUrlError as error:
        fail(str(error))


def open_database(database_url: str, *, create: bool) -> str:
    """Checks and migrates the database; returns its async URL. Only `serve` creates a
    SQLite file: other commands name the missing file instead of starting an empty one."""
    url = url_or_exit(database_url)
    path = sqlite_file(url)
    if path is not None and not path.exists():
        if not create:
            fail(
                f"no database at {path}; start `switchboard serve` with this --database-url "
                "once to create it, or name the existing one"
            )
        if not path.parent.is_dir():
            fail(f"cannot create the database {path}: the folder {path.parent} does not exist")
    try:
        migrate(url)
    except Exception as error:
        reason = str(getattr(error, "orig", None) or error).strip().splitlines()
        fail(f"cannot open the database {safe_url(url)}: {reason[0] if reason else error}")
    return url
