"""Generate the Python code of the Switchboard protos into a directory (default `generated/`).

Used by `make generate` and by the test that fails when `generated/` is stale.
"""

from __future__ import annotations

import sys
from pathlib import Path

from grpc_tools import protoc

PROTO_ROOT = Path(__file__).resolve().parent


def generate(out_dir: Path) -> None:
    out_dir.mkdir(parents=True, exist_ok=True)
    sources = sorted(
        str(p.relative_to(PROTO_ROOT)) for p in PROTO_ROOT.glob("switchboard/v1/*.proto")
    )
    well_known = Path(protoc.__file__).resolve().parent / "_proto"
    args = [
        "grpc_tools.protoc",
        f"-I{PROTO_ROOT}",
        f"-I{well_known}",
        f"--python_out={out_dir}",
        f"--grpc_python_out={out_dir}",
        f"--pyi_out={out_dir}",
        *sources,
    ]
    if protoc.main(args) != 0:
        raise SystemExit("protoc failed")
    for package in (out_dir / "switchboard", out_dir / "switchboard" / "v1"):
        (package / "__init__.py").touch()


if __name__ == "__main__":
    generate(Path(sys.argv[1] if len(sys.argv) > 1 else PROTO_ROOT.parent / "generated"))
