"""The contract: `generated/` matches a fresh generation, and `buf lint` is clean."""

from __future__ import annotations

import filecmp
import importlib.util
import shutil
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def _load_generator():
    spec = importlib.util.spec_from_file_location("generate", ROOT / "protos" / "generate.py")
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _files(root: Path) -> dict[str, Path]:
    return {
        str(p.relative_to(root)): p
        for p in root.rglob("*")
        if p.is_file() and "__pycache__" not in p.parts
    }


def test_generated_code_is_fresh(tmp_path):
    _load_generator().generate(tmp_path)
    fresh, committed = _files(tmp_path), _files(ROOT / "generated")
    assert sorted(committed) == sorted(fresh), "run `make generate`"
    stale = [name for name in fresh if not filecmp.cmp(fresh[name], committed[name], shallow=False)]
    assert not stale, f"generated/ is stale in {stale}; run `make generate`"


def test_buf_lint_is_clean():
    buf = shutil.which("buf", path=str(Path(sys.executable).parent)) or "buf"
    done = subprocess.run([buf, "lint"], cwd=ROOT, capture_output=True, text=True, check=False)
    assert done.returncode == 0, done.stdout + done.stderr


def test_every_rpc_has_an_http_rule():
    from google.api import annotations_pb2
    from switchboard.v1 import (
        agent_service_pb2,
        completion_service_pb2,
        key_service_pb2,
        model_service_pb2,
        session_service_pb2,
    )

    for module in (
        agent_service_pb2,
        completion_service_pb2,
        key_service_pb2,
        model_service_pb2,
        session_service_pb2,
    ):
        for service in module.DESCRIPTOR.services_by_name.values():
            for method in service.methods:
                rule = method.GetOptions().Extensions[annotations_pb2.http]
                assert rule.WhichOneof("pattern"), f"{method.full_name} has no google.api.http"
