"""`switchboard knowledge`: load files and folders into an agent's knowledge, list and remove
its documents. It talks to a running core over gRPC with a key, so it works against any
replica.

Each file becomes one document whose `source` is its path (relative to the folder given, or
its name when given alone): a file whose converted content hashes as the stored document's is
skipped, a changed one replaces that document. Documents go in batches through
`BatchCreateKnowledgeDocuments`."""

from __future__ import annotations

import functools
import html
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from html.parser import HTMLParser
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, ClassVar

import grpc
import typer
from switchboard.v1 import agent_pb2, agent_service_pb2, agent_service_pb2_grpc

from launcher import settings as defaults
from server.knowledge import content_hash

if TYPE_CHECKING:
    from rich.console import Console

knowledge_app = typer.Typer(
    help="Load files into an agent's knowledge; list and remove its documents.",
    no_args_is_help=True,
)

Server = Annotated[
    str,
    typer.Option("--server", envvar="SWITCHBOARD_SERVER", help="The core's gRPC HOST:PORT."),
]
ApiKey = Annotated[
    str,
    typer.Option(
        "--api-key",
        envvar="SWITCHBOARD_API_KEY",
        help="A secret key: agents:write to add and remove, agents:read to list.",
    ),
]

SUFFIXES = {".md": "markdown", ".markdown": "markdown", ".txt": "text", ".text": "text"}
SUFFIXES |= {".html": "html", ".htm": "html", ".pdf": "pdf"}
# One batch stays well under the core's 8 MiB message limit.
_BATCH_DOCUMENTS = 250
_BATCH_BYTES = 4 * 1024 * 1024
_OUTCOMES = {
    agent_service_pb2.KNOWLEDGE_DOCUMENT_OUTCOME_ADDED: "added",
    agent_service_pb2.KNOWLEDGE_DOCUMENT_OUTCOME_REPLACED: "replaced",
    agent_service_pb2.KNOWLEDGE_DOCUMENT_OUTCOME_UNCHANGED: "unchanged",
}


# rich is imported by the commands that print with it, so that `serve` never loads it.
@functools.cache
def _stderr() -> Console:
    """The console of progress, removals and errors: stderr."""
    from rich.console import Console

    return Console(stderr=True)


class UnreadableFile(Exception):
    """A file that cannot be turned into text."""


@dataclass(frozen=True)
class SourceFile:
    """A file to load, and the `source` its document is stored under."""

    path: Path
    source: str


@dataclass(frozen=True)
class Converted:
    """A file's title and text, with the MIME type the text is sent as."""

    title: str
    content: str
    mime_type: str


@dataclass
class Summary:
    """What a load did: the documents added, replaced and unchanged, and what failed."""

    added: int = 0
    replaced: int = 0
    unchanged: int = 0
    failed: list[tuple[str, str]] = field(default_factory=list)


def find_files(paths: list[Path]) -> Iterator[SourceFile]:
    """The files to load: those given, and the supported files under the folders given."""
    for path in paths:
        if path.is_dir():
            for found in sorted(path.rglob("*")):
                relative = found.relative_to(path)
                hidden = any(part.startswith(".") for part in relative.parts)
                if found.is_file() and found.suffix.lower() in SUFFIXES and not hidden:
                    yield SourceFile(found, relative.as_posix())
        else:
            yield SourceFile(path, path.name)


def convert(path: Path) -> Converted:
    """A file's text and title: markdown and plain text as they are, the text of HTML
    (headings kept as markdown headings), the text layer of a PDF."""
    kind = SUFFIXES.get(path.suffix.lower())
    if kind is None:
        raise UnreadableFile(f"unsupported file type {path.suffix or '(none)'!r}")
    try:
        if kind == "pdf":
            title, content = _pdf_text(path)
        else:
            raw = path.read_bytes().decode("utf-8-sig")
            title, content = _html_text(raw) if kind == "html" else ("", raw)
    except (OSError, UnicodeDecodeError) as error:
        raise UnreadableFile(str(error)) from error
    content = content.replace("\x00", "").strip()
    if not content:
        raise UnreadableFile("no text found")
    if not title and kind == "markdown":
        title = next(
            (ln.lstrip("# ").strip() for ln in content.splitlines() if ln.startswith("#")), ""
        )
    mime_type = "text/plain" if kind in ("text", "pdf") else "text/markdown"
    return Converted(title.strip() or path.stem, content, mime_type)


def _pdf_text(path: Path) -> tuple[str, str]:
    from pypdf import PdfReader

    try:
        reader = PdfReader(path)
        pages = [page.extract_text() or "" for page in reader.pages]
        title = str(reader.metadata.title or "") if reader.metadata else ""
    except OSError:
        raise
    except Exception as error:  # a broken PDF makes pypdf raise errors of many kinds
        raise UnreadableFile(f"not a readable PDF: {error}") from error
    return title, "\n\n".join(page.strip() for page in pages if page.strip())


class _TextExtractor(HTMLParser):
    """The visible text of an HTML page: blocks become paragraphs, headings markdown
    headings; scripts, styles and the head (except its title) are dropped."""

    _BLOCKS = frozenset(
        "p div section article main aside header footer nav li ul ol table tr blockquote pre "
        "br hr dl dt dd figure figcaption form details summary address".split()
    )
    _HEADINGS: ClassVar[dict[str, int]] = {f"h{n}": n for n in range(1, 7)}
    _HIDDEN = frozenset("script style noscript template head svg".split())

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.parts: list[str] = []
        self.title = ""
        self._hidden = 0
        self._in_title = False

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag == "title":
            self._in_title = True
        elif tag in self._HIDDEN:
            self._hidden += 1
        elif tag in self._HEADINGS:
            self.parts.append("\n\n" + "#" * self._HEADINGS[tag] + " ")
        elif tag in self._BLOCKS:
            self.parts.append("\n\n")

    def handle_endtag(self, tag: str) -> None:
        if tag == "title":
            self._in_title = False
        elif tag in self._HIDDEN:
            self._hidden = max(0, self._hidden - 1)
        elif tag in self._HEADINGS or tag in self._BLOCKS:
            self.parts.append("\n\n")

    def handle_data(self, data: str) -> None:
        if self._in_title:
            self.title += data
        elif not self._hidden:
            self.parts.append(" ".join(data.split()) + (" " if data[-1:].isspace() else ""))


def _html_text(raw: str) -> tuple[str, str]:
    parser = _TextExtractor()
    parser.feed(raw)
    parser.close()
    paragraphs = (" ".join(block.split()) for block in "".join(parser.parts).split("\n\n"))
    content = "\n\n".join(p for p in paragraphs if p and p.strip("#"))
    return html.unescape(" ".join(parser.title.split())), content


def _stub(server: str) -> tuple[grpc.Channel, agent_service_pb2_grpc.AgentServiceStub]:
    channel = grpc.insecure_channel(server)
    return channel, agent_service_pb2_grpc.AgentServiceStub(channel)


def _metadata(api_key: str) -> tuple[tuple[str, str], ...]:
    if not api_key:
        _stderr().print("[red]no API key: pass --api-key or set SWITCHBOARD_API_KEY[/red]")
        raise typer.Exit(2)
    return (("authorization", f"Bearer {api_key}"),)


# What the core answers a document it will not take; other errors end the command.
_REFUSED = (grpc.StatusCode.INVALID_ARGUMENT, grpc.StatusCode.ABORTED)


def _code(error: grpc.RpcError) -> grpc.StatusCode:
    return error.code() if isinstance(error, grpc.Call) else grpc.StatusCode.UNKNOWN


def _details(error: grpc.RpcError) -> str:
    return str(error.details()) if isinstance(error, grpc.Call) else str(error)


def _fail(error: grpc.RpcError) -> typer.Exit:
    _stderr().print(f"[red]{_code(error).name}: {_details(error)}[/red]")
    return typer.Exit(1)


def _documents(
    stub: agent_service_pb2_grpc.AgentServiceStub, agent: str, metadata: tuple[tuple[str, str], ...]
) -> Iterator[agent_pb2.KnowledgeDocument]:
    token = ""
    while True:
        page = stub.ListKnowledgeDocuments(
            agent_service_pb2.ListKnowledgeDocumentsRequest(
                parent=f"agents/{agent}", page_size=1000, page_token=token
            ),
            metadata=metadata,
        )
        yield from page.documents
        token = page.next_page_token
        if not token:
            return


class _Loader:
    """Sends converted files in batches and counts what became of them."""

    def __init__(
        self,
        stub: agent_service_pb2_grpc.AgentServiceStub,
        agent: str,
        metadata: tuple[tuple[str, str], ...],
        summary: Summary,
    ) -> None:
        self._stub, self._agent, self._metadata, self._summary = stub, agent, metadata, summary
        self._pending: list[tuple[str, agent_service_pb2.CreateKnowledgeDocumentRequest]] = []
        self._bytes = 0

    def add(self, source: str, converted: Converted) -> None:
        document = agent_pb2.KnowledgeDocument(
            title=converted.title,
            content=converted.content,
            mime_type=converted.mime_type,
            source=source,
        )
        request = agent_service_pb2.CreateKnowledgeDocumentRequest(
            parent=f"agents/{self._agent}", document=document
        )
        self._pending.append((source, request))
        self._bytes += len(converted.content.encode()) + len(source) + len(converted.title)
        if len(self._pending) >= _BATCH_DOCUMENTS or self._bytes >= _BATCH_BYTES:
            self.flush()

    def flush(self) -> None:
        pending, self._pending, self._bytes = self._pending, [], 0
        if not pending:
            return
        try:
            self._send(pending)
        except grpc.RpcError as error:
            if _code(error) not in _REFUSED:
                raise
            # A batch is all or nothing: send its files one by one to find the bad ones.
            for one in pending:
                try:
                    self._send([one])
                except grpc.RpcError as single:
                    if _code(single) not in _REFUSED:
                        raise
                    self._summary.failed.append((one[0], _details(single)))

    def _send(
        self, batch: list[tuple[str, agent_service_pb2.CreateKnowledgeDocumentRequest]]
    ) -> None:
        response = self._stub.BatchCreateKnowledgeDocuments(
            agent_service_pb2.BatchCreateKnowledgeDocumentsRequest(
                parent=f"agents/{self._agent}", requests=[request for _, request in batch]
            ),
            metadata=self._metadata,
            timeout=300,
        )
        for outcome in response.outcomes:
            name = _OUTCOMES.get(outcome, "added")
            setattr(self._summary, name, getattr(self._summary, name) + 1)


@knowledge_app.command("add")
def add(
    agent: Annotated[str, typer.Argument(help="The agent's id or slug.")],
    paths: Annotated[list[Path], typer.Argument(help="Files and folders to load.", exists=True)],
    server: Server = defaults.DEFAULT_GRPC_ADDR,
    api_key: ApiKey = "",
) -> None:
    """Load markdown, text, HTML and PDF files (and folders of them) into an agent's
    knowledge: unchanged files are skipped, changed ones replace their document."""
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    metadata = _metadata(api_key)
    files = list(find_files(paths))
    summary = Summary()
    started = time.perf_counter()
    channel, stub = _stub(server)
    with channel:
        try:
            stored = {
                d.source: d.content_hash for d in _documents(stub, agent, metadata) if d.source
            }
            loader = _Loader(stub, agent, metadata, summary)
            with Progress(
                TextColumn("[bold]{task.description}"),
                BarColumn(),
                MofNCompleteColumn(),
                TimeElapsedColumn(),
                TextColumn("{task.fields[current]}"),
                console=_stderr(),
            ) as progress:
                task = progress.add_task("Loading", total=len(files), current="")
                for found in files:
                    progress.update(task, current=found.source)
                    try:
                        converted = convert(found.path)
                    except UnreadableFile as error:
                        summary.failed.append((found.source, str(error)))
                    else:
                        if stored.get(found.source) == content_hash(converted.content):
                            summary.unchanged += 1
                        else:
                            loader.add(found.source, converted)
                    progress.advance(task)
                progress.update(task, current="")
                loader.flush()
        except grpc.RpcError as error:
            raise _fail(error) from None
    elapsed = time.perf_counter() - started
    _print_summary(summary, len(files), elapsed)
    if summary.failed:
        raise typer.Exit(1)


def _print_summary(summary: Summary, files: int, elapsed: float) -> None:
    from rich.console import Console

    sent = summary.added + summary.replaced
    Console(soft_wrap=True).print(
        f"{summary.added} added, {summary.replaced} replaced, {summary.unchanged} unchanged, "
        f"{len(summary.failed)} failed: {files} files in {elapsed:.1f} s "
        f"({sent / max(elapsed, 1e-9):.0f} documents/s)",
        highlight=False,
    )
    for source, reason in summary.failed:
        _stderr().print(f"[red]failed[/red] {source}: {reason}", highlight=False, soft_wrap=True)


@knowledge_app.command("list")
def list_documents(
    agent: Annotated[str, typer.Argument(help="The agent's id or slug.")],
    server: Server = defaults.DEFAULT_GRPC_ADDR,
    api_key: ApiKey = "",
) -> None:
    """List an agent's documents with their passage counts."""
    from rich.console import Console
    from rich.table import Table

    metadata = _metadata(api_key)
    channel, stub = _stub(server)
    with channel:
        try:
            documents = list(_documents(stub, agent, metadata))
        except grpc.RpcError as error:
            raise _fail(error) from None
    table = Table(show_header=True, title=f"{len(documents)} documents")
    for column in ("id", "source", "title", "passages", "added"):
        table.add_column(column, justify="right" if column == "passages" else "left")
    for document in documents:
        added = document.create_time.ToDatetime().strftime("%Y-%m-%d %H:%M")
        table.add_row(
            document.id, document.source, document.title, str(document.passage_count), added
        )
    Console(width=200).print(table)


@knowledge_app.command("remove")
def remove(
    agent: Annotated[str, typer.Argument(help="The agent's id or slug.")],
    names: Annotated[list[str], typer.Argument(help="Documents by source or `doc_` id.")],
    server: Server = defaults.DEFAULT_GRPC_ADDR,
    api_key: ApiKey = "",
) -> None:
    """Remove documents from an agent's knowledge, named by source (a loaded file's path)
    or id."""
    metadata = _metadata(api_key)
    channel, stub = _stub(server)
    missing = []
    with channel:
        try:
            documents = list(_documents(stub, agent, metadata))
            for name in names:
                found = [d for d in documents if name in (d.source, d.id, d.name)]
                if not found:
                    missing.append(name)
                for document in found:
                    stub.DeleteKnowledgeDocument(
                        agent_service_pb2.DeleteKnowledgeDocumentRequest(name=document.name),
                        metadata=metadata,
                    )
                    _stderr().print(f"removed {document.source or document.id}")
        except grpc.RpcError as error:
            raise _fail(error) from None
    for name in missing:
        _stderr().print(f"[red]no document {name!r}[/red]")
    if missing:
        raise typer.Exit(1)
