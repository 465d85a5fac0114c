"""The `--database-url` of the `switchboard` commands: the URL as people type it, the database
checked and migrated, and any problem with it told in one line with exit status 2."""

from __future__ import annotations

import subprocess
import sys
from typing import NoReturn

import typer

from server.store.database import (
    DatabaseUrlError,
    async_url,
    migrate,
    safe_url,
    schema_current,
    sqlite_file,
)


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
        if not schema_current(url):
            _migrate_apart(url)
    except Exception as error:
        fail(f"cannot open the database {safe_url(url)}: {_reason(error)}")
    return url


class _MigrationFailed(Exception):
    """The migrations failed in their own process; the message is their first line."""


def _reason(error: BaseException) -> str:
    lines = str(getattr(error, "orig", None) or error).strip().splitlines()
    return lines[0] if lines else str(error)


def _migrate_apart(database_url: str) -> None:
    """Runs the migrations in a process of their own: Alembic and Mako (and what the
    migrations allocate) never stay in the memory of the process that goes on to serve."""
    # The URL goes through stdin, since other users can read a process's command line.
    done = subprocess.run(
        [sys.executable, "-P", "-m", "launcher.database"],
        input=database_url,
        capture_output=True,
        text=True,
        check=False,
    )
    if done.returncode != 0:
        # The reason it printed, else the last line of what it raised.
        said = done.stdout.strip().splitlines() or done.stderr.strip().splitlines()[-1:]
        raise _MigrationFailed(
            said[0] if said else f"the migrations stopped with exit status {done.returncode}"
        )


def _migrate_from_stdin() -> None:
    """In the migrations' process: migrates the database whose URL stdin holds, or prints
    why it could not and exits with status 1."""
    try:
        migrate(sys.stdin.read())
    except Exception as error:
        print(_reason(error))
        raise SystemExit(1) from None


if __name__ == "__main__":
    _migrate_from_stdin()
