"""Frozen fixture repositories (tests/fixtures/), made by the scripts beside them."""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path

import pytest

from tests.conftest import Cli

FIXTURES = Path(__file__).resolve().parent / "fixtures"


@pytest.fixture
def corrupt_repo(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    root = tmp_path / "corrupt"
    shutil.copytree(FIXTURES / "corrupt-repo", root)
    subprocess.run(["git", "init", "-q", str(root)], check=True)
    monkeypatch.chdir(root)
    return root


def test_fsck_flags_the_damaged_chunk_and_its_user(corrupt_repo: Path, cli: Cli) -> None:
    report = json.loads(cli("fsck", "--json", ok=False).output)
    assert not report["ok"] and report["pointers"] == 2
    (problem,) = report["problems"]
    assert problem["what"] == "object" and "chunk in pack" in problem["message"]
    assert "corrupted (hash mismatch)" in problem["message"]
    assert problem["used_by"] == ["data/b.txt"]
    assert "used by data/b.txt" in cli("fsck", ok=False).output


def test_damaged_chunk_never_reaches_the_work_tree(corrupt_repo: Path, cli: Cli) -> None:
    cli("checkout", "model.bin")
    assert (corrupt_repo / "model.bin").read_bytes() == bytes(range(256)) * 40
    res = cli("checkout", "data", ok=False)
    errors = [line for line in res.output.splitlines() if line.startswith("error:")]
    assert len(errors) == 1 and "data/b.txt" in errors[0] and "corrupted" in errors[0]
    assert not (corrupt_repo / "data" / "b.txt").exists()
    # one damaged file does not stop the rest of the directory from being restored
    assert sorted(p.name for p in (corrupt_repo / "data").iterdir()) == ["a.txt"]
    st = json.loads(cli("status", "--json", "data").output)
    assert st["paths"][0]["state"] == "modified" and st["paths"][0]["deleted"] == ["b.txt"]
