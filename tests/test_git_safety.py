"""DVX and git operations that must not lose or revert data (safety issue #8).

Real git repositories driven by the git CLI; what DVX writes is checked with git.
"""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

from tests.conftest import git, run_dvx, write

# -- a bare repository or .git/ has no work tree -------------------------------------------


def test_init_refuses_a_bare_repository(tmp_path: Path) -> None:
    bare = tmp_path / "team.git"
    subprocess.run(["git", "init", "-q", "--bare", "-b", "main", str(bare)], check=True)
    before = sorted(os.listdir(bare))
    for cwd, args in ((tmp_path, ("init", str(bare))), (bare, ("init",)), (bare / "refs", ("init",))):
        proc = run_dvx(*args, cwd=cwd, check=False)
        assert proc.returncode != 0
        lines = proc.stderr.strip().splitlines()
        assert len(lines) == 1 and "a bare repository has no work tree" in lines[0], proc.stderr
        assert "git clone" in lines[0]
    assert sorted(os.listdir(bare)) == before  # no nested .git or .dvx
    git("fsck", cwd=bare)
    # the team's bare repository still receives pushes and serves clones
    work = tmp_path / "work"
    subprocess.run(["git", "clone", "-q", str(bare), str(work)], check=True, capture_output=True)
    write(work / "x.txt", "x")
    git("add", "x.txt", cwd=work)
    git("commit", "-q", "-m", "x", cwd=work)
    git("push", "-q", "origin", "HEAD:main", cwd=work)
    assert git("log", "--format=%s", "main", cwd=bare).split() == ["x"]
    clone = tmp_path / "clone"
    subprocess.run(["git", "clone", "-q", str(bare), str(clone)], check=True, capture_output=True)
    assert (clone / "x.txt").read_text() == "x"


def test_commands_refuse_inside_dot_git(repo_dir: Path) -> None:
    write(repo_dir / "f.txt", "data")
    run_dvx("add", "f.txt", cwd=repo_dir)
    inside = repo_dir / ".git"
    for args in (("init",), ("status",), ("add", "../f.txt"), ("checkout",)):
        proc = run_dvx(*args, cwd=inside, check=False)
        assert proc.returncode != 0, args
        assert "not in a work tree" in proc.stderr and str(repo_dir) in proc.stderr, proc.stderr
        assert len(proc.stderr.strip().splitlines()) == 1
    proc = run_dvx("status", cwd=inside / "refs", check=False)
    assert proc.returncode != 0 and "not in a work tree" in proc.stderr
    assert not (inside / ".dvx").exists() and not (inside / ".git").exists()
    git("fsck", cwd=repo_dir)


def test_commands_refuse_a_bare_repository_with_a_nested_dvx(tmp_path: Path) -> None:
    """A bare repository that an older dvx init damaged: DVX must not use the nested repo."""
    bare = tmp_path / "team.git"
    subprocess.run(["git", "init", "-q", "--bare", str(bare)], check=True)
    (bare / ".dvx").mkdir()
    proc = run_dvx("status", cwd=bare, check=False)
    assert proc.returncode != 0 and "a bare repository has no work tree" in proc.stderr
