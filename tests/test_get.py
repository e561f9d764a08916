"""``dvx get REPO PATH`` (issue #12 item 5, protocols/read.md §4): one version of
tracked data from any DVX repository into a plain directory, never escaping it."""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from pathlib import Path

import pytest

import dvx
from dvx.access.source import forget_sources
from dvx.errors import WorkspaceConflictError
from tests.conftest import git, pseudo_random, run_dvx, write


@pytest.fixture(autouse=True)
def _fresh(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    monkeypatch.setenv("DVX_CACHE_DIR", str(tmp_path / "user-cache"))
    forget_sources()
    yield
    forget_sources()


@pytest.fixture
def source(repo_dir: Path, tmp_path: Path) -> Path:
    write(repo_dir / "data" / "train.csv", "a\n1\n")
    write(repo_dir / "data" / "deep" / "er" / "x.bin", pseudo_random(400_000, 5))
    run = repo_dir / "data" / "run.sh"
    write(run, "#!/bin/sh\necho hi\n")
    run.chmod(0o755)
    os.symlink("train.csv", repo_dir / "data" / "inside")
    os.symlink("../../../../etc/passwd", repo_dir / "data" / "outside")
    write(repo_dir / "model.pt", b"m1" * 1000)
    dvx.add(["data", "model.pt"])
    dvx.commit("v1")
    git("tag", "v1", cwd=repo_dir)
    write(repo_dir / "model.pt", b"m2" * 1000)
    dvx.add(["model.pt"])
    dvx.commit("v2")
    out = tmp_path / "elsewhere"
    out.mkdir()
    os.chdir(out)
    return repo_dir


def test_get_a_file_and_a_directory_from_a_local_repository(source: Path, tmp_path: Path) -> None:
    here = Path.cwd()
    proc = run_dvx("get", str(source), "model.pt", "--rev", "v1", cwd=here)
    assert "got model.pt" in proc.stdout
    assert (here / "model.pt").read_bytes() == b"m1" * 1000
    assert not (here / ".dvx").exists() and not (here / "model.pt.dvx").exists()
    res = json.loads(run_dvx("get", str(source), "data", "-o", "d1", "--json", cwd=here).stdout)
    assert res["files"] == 4 and res["skipped"] == ["data/outside"] and res["out"] == str(here / "d1")
    assert (here / "d1" / "deep" / "er" / "x.bin").read_bytes() == pseudo_random(400_000, 5)
    assert os.readlink(here / "d1" / "inside") == "train.csv"
    assert not os.path.lexists(here / "d1" / "outside")  # would point outside OUT
    assert os.access(here / "d1" / "run.sh", os.X_OK)
    assert not os.access(here / "d1" / "train.csv", os.X_OK)
    # one file inside a tracked directory, into an existing directory
    (here / "into").mkdir()
    run_dvx("get", str(source), "data/deep/er/x.bin", "-o", "into", cwd=here)
    assert (here / "into" / "x.bin").stat().st_size == 400_000
    # the source is untouched
    assert git("status", "--porcelain", cwd=source) == ""


def test_existing_files_are_refused_unless_force(source: Path) -> None:
    here = Path.cwd()
    write(here / "data" / "deep" / "er" / "x.bin", b"mine")
    proc = run_dvx("get", str(source), "data", check=False, cwd=here)
    assert proc.returncode == 1
    assert "already exist; nothing was written" in proc.stderr and "hint: pass --force" in proc.stderr
    assert (here / "data" / "deep" / "er" / "x.bin").read_bytes() == b"mine"
    assert not (here / "data" / "train.csv").exists()  # checked before writing anything
    res = dvx.get(str(source), "data", force=True)
    assert res.overwritten == [str(here / "data" / "deep" / "er" / "x.bin")]
    assert (here / "data" / "deep" / "er" / "x.bin").read_bytes() == pseudo_random(400_000, 5)


def test_a_symbolic_link_on_the_way_is_refused(source: Path, tmp_path: Path) -> None:
    here = Path.cwd()
    victim = tmp_path / "victim"
    victim.mkdir()
    (here / "out").mkdir()
    os.symlink(victim, here / "out" / "deep")
    with pytest.raises(WorkspaceConflictError, match="is a symbolic link"):
        dvx.get(str(source), "data", out="out")
    assert list(victim.iterdir()) == []
    os.symlink(victim, here / "linked-out")
    with pytest.raises(WorkspaceConflictError, match="symbolic link"):
        dvx.get(str(source), "data", out="linked-out")


def test_bad_input(source: Path) -> None:
    here = Path.cwd()
    proc = run_dvx("get", str(source), "nope", check=False, cwd=here)
    assert proc.returncode == 1 and "error: nope is not tracked at HEAD" in proc.stderr
    proc = run_dvx("get", str(source), "model.pt", "--rev", "nosuch", check=False, cwd=here)
    assert proc.returncode == 1 and "unknown revision 'nosuch'" in proc.stderr
    proc = run_dvx("get", str(source), "", check=False, cwd=here)
    assert proc.returncode == 2 and "name the tracked path" in proc.stderr
    proc = run_dvx("get", str(here / "not-a-repo"), "x", check=False, cwd=here)
    assert proc.returncode == 1 and "error:" in proc.stderr


def test_get_from_a_git_url(source: Path, tmp_path: Path) -> None:
    here = Path.cwd()
    dvx.remote_add("origin", str(tmp_path / "remote"), default=True, repo=str(source))
    git("add", ".dvx/config", cwd=source)
    git("commit", "-q", "-m", "remote", cwd=source)
    dvx.push(all_commits=True, repo=str(source))
    bare = tmp_path / "up.git"
    git("init", "-q", "--bare", str(bare), cwd=tmp_path)
    git("push", "-q", str(bare), "main", "v1", cwd=source)
    res = dvx.get("file://" + str(bare), "data", rev="v1", out="from-url")
    assert res.files == 4
    assert (here / "from-url" / "train.csv").read_text() == "a\n1\n"
    proc = run_dvx("get", str(bare), "model.pt", cwd=here,
                   env={"DVX_CACHE_DIR": os.environ["DVX_CACHE_DIR"]})
    assert "got model.pt" in proc.stdout and (here / "model.pt").read_bytes() == b"m2" * 1000


def test_a_link_through_another_stored_link_is_not_created_outside(repo_dir: Path, tmp_path: Path) -> None:
    """Regression: ``l -> a/s/../..`` with ``a/s -> .`` looks inside OUT to a lexical
    check (it normalizes to OUT), but the file system follows ``a/s`` first and lands
    in OUT's parent: the link was recreated, pointing outside the output."""
    write(repo_dir / "d" / "a" / "f", "f")
    os.symlink(".", repo_dir / "d" / "a" / "s")
    os.symlink("a/s/../..", repo_dir / "d" / "l")
    os.symlink("a/s/f", repo_dir / "d" / "through")  # passes through a link: skipped too
    os.symlink("a/f", repo_dir / "d" / "ok")
    os.symlink("ok", repo_dir / "d" / "ok2")  # ends on a stored link that stays inside
    dvx.add(["d"])
    dvx.commit("links")
    here = tmp_path / "here"
    here.mkdir()
    res = dvx.get(str(repo_dir), "d", out=str(here / "out"))
    out = os.path.realpath(here / "out")
    for name in os.listdir(here / "out"):
        real = os.path.realpath(here / "out" / name)
        assert real == out or real.startswith(out + os.sep), (name, os.readlink(here / "out" / name))
    assert sorted(res.skipped) == ["d/l", "d/through"] and not os.path.lexists(here / "out" / "l")
    assert (here / "out" / "ok2").read_text() == "f" and os.readlink(here / "out" / "a" / "s") == "."


@pytest.mark.parametrize("damage", ["file", "empty-git", "link"])
def test_a_damaged_clone_cache_is_rebuilt(source: Path, tmp_path: Path, damage: str) -> None:
    """Regression: a clone cache entry left as a file, an empty ``.git`` or a link made
    every later ``dvx get URL`` fail (and blamed the URL) until removed by hand."""
    from dvx.access.clones import clone_key

    here = Path.cwd()
    dvx.remote_add("origin", str(tmp_path / "remote"), default=True, repo=str(source))
    git("add", ".dvx/config", cwd=source)
    git("commit", "-q", "-m", "remote", cwd=source)
    dvx.push(all_commits=True, repo=str(source))
    bare = tmp_path / "up.git"
    git("init", "-q", "--bare", str(bare), cwd=tmp_path)
    git("push", "-q", str(bare), "main", cwd=source)
    clone = Path(os.environ["DVX_CACHE_DIR"]) / "repos" / clone_key(str(bare)) / "repo"
    clone.parent.mkdir(parents=True)
    other = tmp_path / "other"
    other.mkdir()
    if damage == "file":
        clone.write_text("junk")
    elif damage == "empty-git":
        (clone / ".git").mkdir(parents=True)
    else:
        os.symlink(other, clone)
    proc = run_dvx("get", str(bare), "model.pt", cwd=here, env={"DVX_CACHE_DIR": os.environ["DVX_CACHE_DIR"]})
    assert (here / "model.pt").read_bytes() == b"m2" * 1000, proc.stderr
    assert clone.is_dir() and not clone.is_symlink() and list(other.iterdir()) == []


def test_every_error_of_a_careless_user_has_a_hint(source: Path, tmp_path: Path) -> None:
    """Regression: a few errors came without a `hint:` line (a write under a path that
    cannot hold it, `latest` removed by hand, a malformed content id for lineage)."""
    here = Path.cwd()
    (here / "plain").write_text("a file, not a directory")
    write(source / "m.bin", "m")
    run_dvx("artifacts", "add", "m.bin", "--name", "model", "--type", "model", cwd=source)
    for args, cwd in ((("get", str(source), "data", "-o", str(here / "plain" / "sub")), here),
                      (("artifacts", "alias", "--remove", "model", "latest"), source),
                      (("lineage", "id:4"), source)):
        proc = run_dvx(*args, cwd=cwd, check=False)
        lines = proc.stderr.strip().splitlines()
        assert proc.returncode == 1 and lines[0].startswith("error: ") and lines[-1].startswith("hint: "), (
            args, proc.stderr)
        assert "Traceback" not in proc.stderr


def test_a_clone_lock_held_by_another_process_is_reported_not_waited_on_in_silence(
        source: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Regression: while another process held a URL's clone lock (a stuck fetch),
    `dvx get URL` waited forever without a word."""
    import subprocess
    import sys
    import time

    from dvx.access import clones
    from dvx.errors import GitError

    bare = tmp_path / "up.git"
    git("init", "-q", "--bare", str(bare), cwd=tmp_path)
    git("push", "-q", str(bare), "main", cwd=source)
    lock = Path(os.environ["DVX_CACHE_DIR"]) / "repos" / clones.clone_key(str(bare)) / "lock"
    lock.parent.mkdir(parents=True)
    lock.touch()
    holder = subprocess.Popen([sys.executable, "-c", "import fcntl, os, sys, time\n"
                               f"fd = os.open({str(lock)!r}, os.O_RDWR); fcntl.flock(fd, fcntl.LOCK_EX)\n"
                               "print('held', flush=True); time.sleep(60)"], stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout is not None and holder.stdout.readline().strip() == "held"
        monkeypatch.setattr(clones, "LOCK_WAIT_S", 1.0)
        started = time.monotonic()
        with pytest.warns(RuntimeWarning, match="waiting for another process"), \
                pytest.raises(GitError, match="held the clone") as caught:
            clones.cached_clone(str(bare))
        assert "fuser" in (caught.value.hint or "") and time.monotonic() - started < 30
    finally:
        holder.kill()
        holder.wait()
    assert os.path.isdir(clones.cached_clone(str(bare)))  # free again: it clones
