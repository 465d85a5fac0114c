"""`switchboard knowledge` against a running server, on SQLite and PostgreSQL: a folder of
markdown, text, HTML and a PDF made here is loaded, loaded again as unchanged, and an edited
file replaces its document; a file that cannot be read is reported while the rest load."""

from __future__ import annotations

import os
import re
import subprocess
from pathlib import Path

from switchboard.v1 import agent_service_pb2

from tests.conftest import SWITCHBOARD
from tests.knowledge.conftest import FALLBACK, Door


def make_pdf(text: str, title: str) -> bytes:
    """A one-page PDF whose text layer holds `text`, with an Info title."""
    stream = f"BT /F1 12 Tf 72 720 Td ({text}) Tj ET".encode()
    objects = [
        b"<< /Type /Catalog /Pages 2 0 R >>",
        b"<< /Type /Pages /Kids [3 0 R] /Count 1 >>",
        b"<< /Type /Page /Parent 2 0 R /MediaBox [0 0 612 792] /Contents 4 0 R "
        b"/Resources << /Font << /F1 5 0 R >> >> >>",
        b"<< /Length %d >>\nstream\n%s\nendstream" % (len(stream), stream),
        b"<< /Type /Font /Subtype /Type1 /BaseFont /Helvetica >>",
        b"<< /Title (%s) >>" % title.encode(),
    ]
    body = b"%PDF-1.4\n"
    offsets = []
    for number, content in enumerate(objects, start=1):
        offsets.append(len(body))
        body += b"%d 0 obj\n%s\nendobj\n" % (number, content)
    xref = len(body)
    body += b"xref\n0 %d\n0000000000 65535 f \n" % (len(objects) + 1)
    body += b"".join(b"%010d 00000 n \n" % offset for offset in offsets)
    body += b"trailer\n<< /Size %d /Root 1 0 R /Info 6 0 R >>\n" % (len(objects) + 1)
    return body + b"startxref\n%d\n%%%%EOF\n" % xref


def knowledge(door: Door, *args: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "SWITCHBOARD_API_KEY": door.server.api_key, "COLUMNS": "200"}
    return subprocess.run(
        [str(SWITCHBOARD), "knowledge", *args, "--server", door.server.grpc_target],
        capture_output=True,
        text=True,
        env=env,
        timeout=120,
    )


def summary(run: subprocess.CompletedProcess[str]) -> tuple[int, int, int, int]:
    found = re.search(r"(\d+) added, (\d+) replaced, (\d+) unchanged, (\d+) failed", run.stdout)
    assert found, run.stdout + run.stderr
    added, replaced, unchanged, failed = (int(n) for n in found.groups())
    return added, replaced, unchanged, failed


def write_folder(folder: Path) -> None:
    (folder / "guides").mkdir(parents=True)
    (folder / "guides" / "returns.md").write_text(
        "# Returns\n\nOpened blenders can be returned within fourteen days.\n"
    )
    (folder / "hours.txt").write_text("The repair desk opens at seven on weekdays.\n")
    (folder / "tours.html").write_text(
        "<html><head><title>Lighthouse tours</title><style>p {color: red}</style>"
        "<script>var lighthouse = 'hidden script text';</script></head><body>"
        "<h1>Tours</h1><p>The lighthouse tour climbs 212&nbsp;steps to the lantern room.</p>"
        "</body></html>"
    )
    (folder / "manual.pdf").write_bytes(
        make_pdf("The Vortex kettle boils a litre of water in ninety seconds.", "Vortex manual")
    )
    (folder / "broken.pdf").write_bytes(b"%PDF-1.4 this is not really a PDF")
    (folder / "photo.png").write_bytes(b"\x89PNG not knowledge")
    (folder / ".draft.md").write_text("# Hidden\n\nNot loaded.\n")


def test_a_folder_loads_then_reloads_as_unchanged_then_picks_up_an_edit(
    door: Door, tmp_path: Path
) -> None:
    agent = door.create_agent()
    folder = tmp_path / "docs"
    write_folder(folder)

    first = knowledge(door, "add", agent.slug, str(folder))
    # The broken PDF is reported and the command fails, but the other files are loaded.
    assert first.returncode == 1
    assert summary(first) == (4, 0, 0, 1)
    assert "broken.pdf" in first.stderr

    listed = door.agents.ListKnowledgeDocuments(
        agent_service_pb2.ListKnowledgeDocumentsRequest(parent=agent.name), metadata=door.metadata
    )
    titles = {d.source: d.title for d in listed.documents}
    assert titles == {
        "guides/returns.md": "Returns",
        "hours.txt": "hours",
        "tours.html": "Lighthouse tours",
        "manual.pdf": "Vortex manual",
    }
    [html] = [d for d in listed.documents if d.source == "tours.html"]
    assert "hidden script text" not in html.content and "color" not in html.content

    def answer(question: str) -> str:
        return str(door.ask(agent, question)["choices"][0]["message"]["content"])

    assert answer("How fast does the Vortex kettle boil?").startswith("The Vortex kettle")
    assert answer("How many steps does the lighthouse tour climb?").startswith("The lighthouse")
    assert answer("Can I return an opened blender?").startswith("Opened blenders")

    second = knowledge(door, "add", agent.slug, str(folder))
    assert summary(second) == (0, 0, 4, 1)

    (folder / "hours.txt").write_text("The repair desk now opens at eight on weekdays.\n")
    third = knowledge(door, "add", agent.slug, str(folder))
    assert summary(third) == (0, 1, 3, 1)
    assert answer("Which hours does the repair desk keep on weekdays?") == (
        "The repair desk now opens at eight on weekdays."
    )

    shown = knowledge(door, "list", agent.slug)
    assert shown.returncode == 0, shown.stderr
    assert "4 documents" in shown.stdout and "manual.pdf" in shown.stdout

    removed = knowledge(door, "remove", agent.slug, "hours.txt")
    assert removed.returncode == 0, removed.stderr
    assert answer("Which hours does the repair desk keep on weekdays?") == FALLBACK
    missing = knowledge(door, "remove", agent.slug, "no-such-file.md")
    assert missing.returncode == 1 and "no-such-file.md" in missing.stderr


def test_without_a_key_the_command_says_so(door: Door, tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if k != "SWITCHBOARD_API_KEY"}
    run = subprocess.run(
        [str(SWITCHBOARD), "knowledge", "list", "x", "--server", door.server.grpc_target],
        capture_output=True,
        text=True,
        env=env,
        timeout=60,
    )
    assert run.returncode == 2 and "SWITCHBOARD_API_KEY" in run.stderr
    wrong = subprocess.run(
        [str(SWITCHBOARD), "knowledge", "list", "x", "--server", door.server.grpc_target],
        capture_output=True,
        text=True,
        env={**env, "SWITCHBOARD_API_KEY": "sk_wrong"},
        timeout=60,
    )
    assert wrong.returncode == 1 and "UNAUTHENTICATED" in wrong.stderr
