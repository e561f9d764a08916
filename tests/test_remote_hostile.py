"""A teammate's (or an attacker's) writes to a shared remote are untrusted input."""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

from tests.conftest import Cli, git, run_dvx, write


def _pushed(tmp_path: Path, repo_dir: Path, cli: Cli) -> tuple[Path, Path]:
    write(repo_dir / "data" / "a.bin", os.urandom(50_000))
    cli("add", "data")
    remote = tmp_path / "remote"
    cli("remote", "add", "origin", str(remote), "--default")
    git("add", "-A", cwd=repo_dir)
    git("commit", "-qm", "data", cwd=repo_dir)
    cli("push")
    clone = tmp_path / "clone"
    git("clone", "-q", str(repo_dir), str(clone), cwd=tmp_path)
    return remote, clone


def test_pack_names_in_a_root_record_never_become_paths(tmp_path: Path, repo_dir: Path, cli: Cli) -> None:
    remote, clone = _pushed(tmp_path, repo_dir, cli)
    victim = write(tmp_path / "victim" / "movie.idx", "my subtitles")
    (record_path,) = (remote / "roots").iterdir()
    record = json.loads(record_path.read_text())
    real_pack = record["packs"][0]
    record["packs"] = [str(tmp_path / "victim" / "movie"), str(tmp_path / "newdir" / "a" / "c"),
                       "../../../x", real_pack]
    record_path.write_text(json.dumps(record))
    write(remote / "index" / str(tmp_path / "newdir" / "a" / "c.idx").lstrip("/"),
          (remote / "index" / f"{real_pack}.idx").read_bytes())
    res = run_dvx("pull", cwd=clone, check=False)
    assert res.returncode == 1
    assert "invalid pack name" in res.stderr and "Traceback" not in res.stderr
    assert victim.read_text() == "my subtitles"
    assert not (tmp_path / "newdir").exists()
    assert "invalid pack name" in run_dvx("fsck", "--remote", "origin", cwd=clone, check=False).stdout + \
        run_dvx("fsck", "--remote", "origin", cwd=clone, check=False).stderr


def test_a_pack_missing_on_the_remote_is_one_clear_error(tmp_path: Path, repo_dir: Path, cli: Cli) -> None:
    remote, clone = _pushed(tmp_path, repo_dir, cli)
    for p in (remote / "packs").rglob("*.pack"):
        p.unlink()
    res = run_dvx("pull", cwd=clone, check=False)
    assert res.returncode == 1 and "Traceback" not in res.stderr
    errors = [x for x in res.stderr.splitlines() if x.startswith("error:")]
    assert len(errors) == 1 and "is damaged: pack" in errors[0] and "missing" in errors[0]
    shutil.rmtree(remote)


def test_push_to_a_wiped_remote_pushes_again(tmp_path: Path, repo_dir: Path, cli: Cli) -> None:
    remote, _clone = _pushed(tmp_path, repo_dir, cli)
    shutil.rmtree(remote)
    remote.mkdir()  # wiped (or another drive mounted at the same path)
    again = json.loads(cli("push", "--json").output)
    assert again["roots_already_there"] == 0 and again["packs_uploaded"] >= 1
    assert json.loads(cli("fsck", "--remote", "origin", "--json").output)["ok"]
    # replaced by another DVX remote at the same URL: its id differs
    shutil.rmtree(remote)
    other = tmp_path / "other"
    write(other / "x.bin", "other project")
    git("init", "-q", "-b", "main", cwd=other)
    run_dvx("init", cwd=other)
    run_dvx("add", "x.bin", cwd=other)
    run_dvx("remote", "add", "o", str(remote), "--default", cwd=other)
    run_dvx("push", cwd=other)
    again = json.loads(cli("push", "--json").output)
    assert again["packs_uploaded"] >= 1
