"""DVX and git operations that must not lose or revert data (safety issue #8).

Real git repositories driven by the git CLI; what DVX writes is checked with git.
"""

from __future__ import annotations

import json
import os
import subprocess
import time
from pathlib import Path

import pytest

from tests.conftest import Cli, git, pseudo_random, run_dvx, write

# -- a bare repository or .git/ has no work tree -------------------------------------------


def test_init_refuses_a_bare_repository(tmp_path: Path) -> None:
    bare = tmp_path / "team.git"
    subprocess.run(["git", "init", "-q", "--bare", "-b", "main", str(bare)], check=True)
    before = sorted(os.listdir(bare))
    for cwd, args in ((tmp_path, ("init", str(bare))), (bare, ("init",)), (bare / "refs", ("init",))):
        proc = run_dvx(*args, cwd=cwd, check=False)
        assert proc.returncode != 0
        lines = proc.stderr.strip().splitlines()
        assert len(lines) == 2 and "a bare repository has no work tree" in lines[0], proc.stderr
        assert lines[0].startswith("error: ") and lines[1].startswith("hint: clone it (`git clone ")
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
        error, hint = proc.stderr.strip().splitlines()
        assert error.startswith("error: ") and "not in a work tree" in error, proc.stderr
        assert hint == f"hint: run dvx in the work tree {repo_dir}"
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


# -- commit identity: git's rules, never an invented one -----------------------------------

IDENTITY_ENV = ("GIT_AUTHOR_NAME", "GIT_AUTHOR_EMAIL", "GIT_COMMITTER_NAME", "GIT_COMMITTER_EMAIL", "EMAIL")


def _no_identity(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    for k in IDENTITY_ENV:
        monkeypatch.delenv(k, raising=False)
    home = tmp_path / "empty-home"
    home.mkdir()
    monkeypatch.setenv("HOME", str(home))
    monkeypatch.setenv("XDG_CONFIG_HOME", str(home / ".config"))
    monkeypatch.setenv("GIT_CONFIG_NOSYSTEM", "1")


def test_commit_without_identity_does_what_git_does(repo_dir: Path, cli: Cli, monkeypatch: pytest.MonkeyPatch,
                                                     tmp_path: Path) -> None:
    _no_identity(monkeypatch, tmp_path)
    write(repo_dir / "f.txt", "data")
    cli("add", "f.txt")
    git_try = subprocess.run(["git", "commit", "-q", "--allow-empty", "-m", "probe"], cwd=repo_dir,
                             capture_output=True, text=True)
    if git_try.returncode == 0:  # a host whose name has a domain: git guesses, so may DVX
        expected = git("log", "-1", "--format=%an <%ae>", cwd=repo_dir).strip()
        cli("commit", "-m", "data")
        assert git("log", "-1", "--format=%an <%ae>|%cn <%ce>", cwd=repo_dir).strip() == \
            f"{expected}|{expected}"
        return
    git_reason = git_try.stderr.strip().splitlines()[-1].removeprefix("fatal: ")
    res = cli("commit", "-m", "data", ok=False)
    lines = res.output.strip().splitlines()
    assert len(lines) == 2, res.output
    assert lines[0].startswith("error: Author identity unknown") and git_reason in lines[0]
    assert lines[1].startswith('hint: run `git config --global user.email "you@example.com"`')
    assert subprocess.run(["git", "rev-parse", "-q", "--verify", "HEAD"], cwd=repo_dir,
                          capture_output=True).returncode != 0  # no commit was made
    assert (repo_dir / "f.txt").read_text() == "data"


def test_commit_identity_from_config_and_env(repo_dir: Path, cli: Cli, monkeypatch: pytest.MonkeyPatch,
                                             tmp_path: Path) -> None:
    _no_identity(monkeypatch, tmp_path)
    git("config", "user.useConfigOnly", "true", cwd=repo_dir)  # git never guesses: same everywhere
    write(repo_dir / "f.txt", "data")
    cli("add", "f.txt")
    res = cli("commit", "-m", "data", ok=False)
    assert "no email was given and auto-detection is disabled" in res.output
    assert "git config --global user.email" in res.output
    git_try = subprocess.run(["git", "commit", "-q", "-m", "probe"], cwd=repo_dir, capture_output=True,
                             text=True)
    assert git_try.returncode != 0 and "auto-detection is disabled" in git_try.stderr
    # global config (HOME), then repository config, then the environment, as git
    git("config", "--global", "user.email", "global@example.com", cwd=repo_dir)
    git("config", "--global", "user.name", "Global Person", cwd=repo_dir)
    cli("commit", "-m", "one")
    assert git("log", "-1", "--format=%an <%ae>|%cn <%ce>", cwd=repo_dir).strip() == \
        "Global Person <global@example.com>|Global Person <global@example.com>"
    git("config", "user.email", "repo@example.com", cwd=repo_dir)
    write(repo_dir / "f.txt", "data 2")
    cli("commit", "-m", "two")
    assert git("log", "-1", "--format=%an <%ae>", cwd=repo_dir).strip() == "Global Person <repo@example.com>"
    monkeypatch.setenv("GIT_AUTHOR_NAME", "Env Author")
    monkeypatch.setenv("GIT_AUTHOR_EMAIL", "author@example.com")
    write(repo_dir / "f.txt", "data 3")
    cli("commit", "-m", "three")
    assert git("log", "-1", "--format=%an <%ae>|%cn <%ce>", cwd=repo_dir).strip() == \
        "Env Author <author@example.com>|Global Person <repo@example.com>"
    git("fsck", "--strict", cwd=repo_dir)


# -- gc keeps what the reflog still names --------------------------------------------------

def _age_packs(repo: Path, seconds: int) -> None:
    old = time.time() - seconds
    for f in (repo / ".dvx" / "store" / "packs").iterdir():
        os.utime(f, (old, old))


def _reset_away_v2(repo: Path, cli: Cli, monkeypatch: pytest.MonkeyPatch, date: str | None = None) -> str:
    """Commit v1 and v2 (different data), then `git reset --hard HEAD~1`: v2 is named
    only by the reflog. Returns v2's sha."""
    if date is not None:
        for k in ("GIT_AUTHOR_DATE", "GIT_COMMITTER_DATE"):
            monkeypatch.setenv(k, date)
    write(repo / "m.bin", pseudo_random(200_000, 1))
    cli("add", "m.bin")
    git("add", "m.bin.dvx", ".gitignore", ".dvx", cwd=repo)
    git("commit", "-q", "-m", "v1", cwd=repo)
    write(repo / "m.bin", pseudo_random(200_000, 2))
    cli("add", "m.bin")
    git("commit", "-q", "-am", "v2", cwd=repo)
    v2 = git("rev-parse", "HEAD", cwd=repo).strip()
    git("reset", "-q", "--hard", "HEAD~1", cwd=repo)
    cli("checkout", "--force")
    for k in ("GIT_AUTHOR_DATE", "GIT_COMMITTER_DATE"):
        monkeypatch.delenv(k, raising=False)
    assert (repo / "m.bin").read_bytes() == pseudo_random(200_000, 1)
    _age_packs(repo, 7200)
    return v2


def test_gc_keeps_data_of_commits_in_the_reflog(repo_dir: Path, cli: Cli,
                                                monkeypatch: pytest.MonkeyPatch) -> None:
    v2 = _reset_away_v2(repo_dir, cli, monkeypatch)
    assert v2 in git("reflog", "--format=%H", cwd=repo_dir).split()
    rep = json.loads(cli("gc", "--json").output)
    assert rep["commits"] == 2
    cli("fsck")
    # `git reset --hard HEAD@{1}` brings v2 back, and its data is still there
    git("reset", "-q", "--hard", v2, cwd=repo_dir)
    cli("checkout", "--force")
    assert (repo_dir / "m.bin").read_bytes() == pseudo_random(200_000, 2)


def test_gc_reflog_expiry_is_configurable(repo_dir: Path, cli: Cli, monkeypatch: pytest.MonkeyPatch) -> None:
    v2 = _reset_away_v2(repo_dir, cli, monkeypatch)
    cfg = repo_dir / ".dvx" / "config"
    cfg.write_text(cfg.read_text() + "\n[gc]\nreflog_expire_days = 0\n")
    rep = json.loads(cli("gc", "--json").output)
    assert rep["commits"] == 1 and rep["dead_objects"] >= 1
    res = cli("checkout", "--rev", v2, "--force", ok=False)
    assert "not in the local store" in res.output
    cfg.write_text(cfg.read_text().replace("reflog_expire_days = 0", "reflog_expire_days = -1"))
    res = cli("status", ok=False)
    error, hint = res.output.strip().splitlines()
    assert error.startswith("error: ") and "reflog_expire_days" in error and hint == "hint: fix the config file"


def test_gc_forgets_reflog_entries_older_than_the_limit(repo_dir: Path, cli: Cli,
                                                       monkeypatch: pytest.MonkeyPatch) -> None:
    long_ago = f"{int(time.time()) - 100 * 86400} +0000"  # older than the default 90 days
    v2 = _reset_away_v2(repo_dir, cli, monkeypatch, date=long_ago)
    assert v2 in git("reflog", "--format=%H", cwd=repo_dir).split()
    rep = json.loads(cli("gc", "--json").output)
    assert rep["commits"] == 1 and rep["dead_objects"] >= 1
    cfg = repo_dir / ".dvx" / "config"
    cfg.write_text(cfg.read_text() + "\n[gc]\nreflog_expire_days = 365\n")
    assert json.loads(cli("gc", "--dry-run", "--json").output)["commits"] == 2


# -- data that arrived through git is never reverted by dvx commit -------------------------

def _branch_changes_data(repo: Path, cli: Cli) -> None:
    """main: a/f = v1, m.bin = v1; branch x changes both; main gets an unrelated code
    commit; back on main with main's data checked out."""
    write(repo / "a" / "f", "v1")
    write(repo / "m.bin", pseudo_random(100_000, 1))
    cli("add", "a", "m.bin")
    cli("commit", "-m", "v1")
    git("checkout", "-q", "-b", "x", cwd=repo)
    write(repo / "a" / "f", "v2 from x")
    write(repo / "m.bin", pseudo_random(100_000, 2))
    cli("commit", "-m", "x changes the data")
    git("checkout", "-q", "main", cwd=repo)
    cli("checkout")
    write(repo / "train.py", "print(1)\n")
    git("add", "train.py", cwd=repo)
    git("commit", "-q", "-m", "code on main", cwd=repo)
    assert (repo / "a" / "f").read_text() == "v1"


def test_commit_after_merge_does_not_revert_incoming_data(repo_dir: Path, cli: Cli) -> None:
    _branch_changes_data(repo_dir, cli)
    git("merge", "-q", "--no-edit", "x", cwd=repo_dir)  # no hooks: pointers move, data does not
    states = {p["path"]: p for p in json.loads(cli("status", "--json").output)["paths"]}
    assert states["a"]["state"] == "stale" and states["m.bin"]["state"] == "stale"
    assert "dvx checkout a" in states["a"]["message"]
    assert "stale: a" in cli("status").output
    write(repo_dir / "train.py", "print(2)\n")
    git("add", "train.py", cwd=repo_dir)
    out = cli("commit", "-m", "unrelated").output
    assert "not re-added a" in out and "dvx checkout a" in out
    assert git("diff", "--name-only", "HEAD~1", "HEAD", cwd=repo_dir).split() == ["train.py"]
    for p in ("a.dvx", "m.bin.dvx"):
        assert git("show", f"HEAD:{p}", cwd=repo_dir) == git("show", f"x:{p}", cwd=repo_dir)
    assert (repo_dir / "a" / "f").read_text() == "v1"  # nothing was touched
    cli("checkout")
    assert (repo_dir / "a" / "f").read_text() == "v2 from x"
    assert (repo_dir / "m.bin").read_bytes() == pseudo_random(100_000, 2)
    assert json.loads(cli("status", "--json").output)["clean"]
    git("fsck", "--strict", cwd=repo_dir)
    assert git("status", "--porcelain", cwd=repo_dir) == ""


def test_edited_and_moved_pointer_is_refused_not_reverted(repo_dir: Path, cli: Cli) -> None:
    _branch_changes_data(repo_dir, cli)
    git("merge", "-q", "--no-edit", "x", cwd=repo_dir)
    write(repo_dir / "a" / "f", "my own edit")
    st = {p["path"]: p for p in json.loads(cli("status", "--json").output)["paths"]}
    assert st["a"]["state"] == "diverged" and st["m.bin"]["state"] == "stale"
    head = git("rev-parse", "HEAD", cwd=repo_dir)
    res = cli("commit", "-m", "whatever", ok=False)
    lines = res.output.strip().splitlines()
    assert len(lines) == 1 and "cannot commit a" in lines[0]
    assert "dvx add a" in lines[0] and "dvx checkout --force a" in lines[0]
    assert git("rev-parse", "HEAD", cwd=repo_dir) == head
    assert (repo_dir / "a" / "f").read_text() == "my own edit"
    # an explicit add is the user's choice: it may re-add, stale data included
    cli("add", "a", "m.bin")
    cli("commit", "-m", "keep mine")
    assert git("show", "HEAD:m.bin.dvx", cwd=repo_dir) == git("show", "HEAD~2:m.bin.dvx", cwd=repo_dir)
    assert json.loads(cli("status", "--json").output)["clean"]


def test_edit_after_checkout_rev_is_still_committed(repo_dir: Path, cli: Cli) -> None:
    """Reverting data on purpose (checkout --rev, then commit) keeps working."""
    _branch_changes_data(repo_dir, cli)
    git("merge", "-q", "--no-edit", "x", cwd=repo_dir)
    cli("checkout")
    cli("checkout", "--rev", "HEAD~2", "a")  # main's first version of a
    assert json.loads(cli("status", "a", "--json").output)["paths"][0]["state"] == "modified"
    cli("gc")  # clears the stat cache, keeps what was checked out where
    assert json.loads(cli("status", "a", "--json").output)["paths"][0]["state"] == "modified"
    assert "re-added a" in cli("commit", "-m", "back to v1").output
    assert git("show", "HEAD:a.dvx", cwd=repo_dir) == git("show", "HEAD~3:a.dvx", cwd=repo_dir)


def test_rebase_with_hooks_brings_the_data(repo_dir: Path, cli: Cli) -> None:
    _branch_changes_data(repo_dir, cli)
    cli("hooks", "install")
    git("checkout", "-q", "x", cwd=repo_dir)
    assert (repo_dir / "a" / "f").read_text() == "v2 from x"
    r = subprocess.run(["git", "rebase", "main"], cwd=repo_dir, capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    log = git("log", "--format=%s", "-3", cwd=repo_dir).split("\n")
    assert log[:2] == ["x changes the data", "code on main"]
    assert (repo_dir / "a" / "f").read_text() == "v2 from x"
    assert (repo_dir / "m.bin").read_bytes() == pseudo_random(100_000, 2)
    assert json.loads(cli("status", "--json").output)["clean"]
    git("fsck", "--strict", cwd=repo_dir)


def test_pre_commit_hook_lets_a_moved_pointer_be_committed(repo_dir: Path, cli: Cli) -> None:
    _branch_changes_data(repo_dir, cli)
    cli("hooks", "install")
    git("checkout", "-q", "x", "--", "a.dvx", cwd=repo_dir)  # take x's version of the pointer
    r = subprocess.run(["git", "commit", "-q", "-m", "take x's a"], cwd=repo_dir, capture_output=True,
                       text=True)
    assert r.returncode == 0, r.stderr
    assert git("show", "HEAD:a.dvx", cwd=repo_dir) == git("show", "x:a.dvx", cwd=repo_dir)
    assert json.loads(cli("status", "a", "--json").output)["paths"][0]["state"] == "stale"
    cli("checkout")
    assert (repo_dir / "a" / "f").read_text() == "v2 from x"


# -- a pointer both sides of a merge changed -----------------------------------------------

def _conflicting_merge(repo: Path, cli: Cli) -> None:
    write(repo / "a" / "f", "base")
    write(repo / "m.bin", pseudo_random(50_000, 1))
    cli("add", "a", "m.bin")
    cli("commit", "-m", "base")
    git("checkout", "-q", "-b", "x", cwd=repo)
    write(repo / "a" / "f", "theirs")
    write(repo / "m.bin", pseudo_random(50_000, 3))
    cli("commit", "-m", "x")
    git("checkout", "-q", "main", cwd=repo)
    cli("checkout")
    write(repo / "a" / "f", "ours")
    write(repo / "m.bin", pseudo_random(50_000, 2))
    cli("commit", "-m", "main")
    r = subprocess.run(["git", "merge", "x"], cwd=repo, capture_output=True, text=True)
    assert r.returncode != 0 and "CONFLICT" in r.stdout


def test_conflicted_pointer_is_reported_as_a_conflict(repo_dir: Path, cli: Cli) -> None:
    _conflicting_merge(repo_dir, cli)
    assert "<<<<<<<" in (repo_dir / "a.dvx").read_text()
    st = {p["path"]: p for p in json.loads(cli("status", "--json", ok=False).output)["paths"]}
    msg = st["a"]["message"]
    assert st["a"]["state"] == "broken-pointer"
    assert "merge conflict markers" in msg and "dvx checkout --theirs a" in msg and "--ours" in msg
    assert "git checkout --" not in msg
    res = cli("commit", "-m", "merge", ok=False)
    assert len(res.output.strip().splitlines()) == 1 and "merge conflict markers" in res.output
    assert (repo_dir / "a" / "f").read_text() == "ours"


def test_checkout_theirs_and_ours_resolve_a_conflicted_pointer(repo_dir: Path, cli: Cli) -> None:
    _conflicting_merge(repo_dir, cli)
    theirs = git("show", ":3:a.dvx", cwd=repo_dir)
    assert theirs == git("show", "x:a.dvx", cwd=repo_dir)
    # unsaved data in the way: refused before anything changes
    write(repo_dir / "a" / "f", "unsaved")
    res = cli("checkout", "--theirs", "a", ok=False)
    error, hint = res.output.strip().splitlines()
    assert error == "error: checkout would overwrite unsaved data: a/f"
    assert hint == "hint: save it with `dvx add`, or re-run with --force to discard it"
    assert "<<<<<<<" in (repo_dir / "a.dvx").read_text()
    assert (repo_dir / "a" / "f").read_text() == "unsaved"
    write(repo_dir / "a" / "f", "ours")  # back to what main committed (saved in the store)
    out = cli("checkout", "--theirs", "a").output
    assert "took theirs version of a" in out
    assert (repo_dir / "a.dvx").read_text() == theirs
    assert (repo_dir / "a" / "f").read_text() == "theirs"
    assert "a.dvx" in git("ls-files", "-u", cwd=repo_dir)  # still unmerged, as git checkout --theirs
    cli("checkout", "--ours", "m.bin.dvx")
    assert (repo_dir / "m.bin").read_bytes() == pseudo_random(50_000, 2)
    assert (repo_dir / "m.bin.dvx").read_text() == git("show", "main:m.bin.dvx", cwd=repo_dir)
    assert json.loads(cli("status", "--json").output)["clean"]
    cli("commit", "-m", "merge x")
    assert len(git("log", "-1", "--format=%P", cwd=repo_dir).split()) == 2
    assert git("show", "HEAD:a.dvx", cwd=repo_dir) == theirs
    assert git("status", "--porcelain", cwd=repo_dir) == ""
    assert not (repo_dir / ".git" / "MERGE_HEAD").exists() and not (repo_dir / ".git" / "MERGE_MSG").exists()
    git("fsck", "--strict", cwd=repo_dir)


def test_checkout_side_refusals(repo_dir: Path, cli: Cli) -> None:
    _conflicting_merge(repo_dir, cli)
    git("checkout", "--theirs", "--", "m.bin.dvx", cwd=repo_dir)
    git("add", "m.bin.dvx", cwd=repo_dir)
    res = cli("checkout", "--theirs", "m.bin", ok=False)
    assert "m.bin.dvx is not unmerged" in res.output and "git status" in res.output
    assert "exclude" in cli("checkout", "--ours", "--theirs", "a", ok=False).output
    assert "needs the paths" in cli("checkout", "--ours", ok=False).output


# -- data of paths the new branch does not track -------------------------------------------

def _data_then_hooks(repo: Path, cli: Cli) -> None:
    write(repo / "train.py", "print(1)\n")
    git("add", "train.py", ".dvx", cwd=repo)
    git("commit", "-q", "-m", "code only", cwd=repo)
    git("tag", "nodata", cwd=repo)
    write(repo / "da" / "f", "f")
    write(repo / "da" / "g" / "h", "h")
    write(repo / "one.bin", pseudo_random(40_000, 4))
    write(repo / "sub" / "deep" / "db" / "x", "x")
    cli("add", "da", "one.bin", "sub/deep/db")
    cli("commit", "-m", "data")
    cli("hooks", "install")


def test_switching_to_a_branch_without_the_data_removes_saved_data(repo_dir: Path, cli: Cli) -> None:
    _data_then_hooks(repo_dir, cli)
    r = subprocess.run(["git", "checkout", "-q", "nodata"], cwd=repo_dir, capture_output=True, text=True)
    assert r.returncode == 0 and r.stderr == "", r.stderr
    assert git("status", "--porcelain", cwd=repo_dir) == ""
    assert sorted(p for p in os.listdir(repo_dir) if p not in (".git", ".dvx")) == ["train.py"]
    git("checkout", "-q", "main", cwd=repo_dir)  # and back: the data is checked out again
    assert (repo_dir / "da" / "g" / "h").read_text() == "h"
    assert (repo_dir / "sub" / "deep" / "db" / "x").read_text() == "x"
    assert (repo_dir / "one.bin").read_bytes() == pseudo_random(40_000, 4)
    assert json.loads(cli("status", "--json").output)["clean"]
    assert git("status", "--porcelain", cwd=repo_dir) == ""


def test_switching_away_keeps_and_reports_unsaved_data(repo_dir: Path, cli: Cli) -> None:
    _data_then_hooks(repo_dir, cli)
    write(repo_dir / "da" / "f", "unsaved edit")
    write(repo_dir / "da" / "new", "new file")
    r = subprocess.run(["git", "checkout", "-q", "nodata"], cwd=repo_dir, capture_output=True, text=True)
    assert r.returncode == 0
    assert "kept da" in r.stderr and "dvx add da" in r.stderr
    assert "one.bin" not in r.stderr and "sub/deep/db" not in r.stderr
    assert (repo_dir / "da" / "f").read_text() == "unsaved edit"
    assert (repo_dir / "da" / "new").read_text() == "new file"
    assert not (repo_dir / "one.bin").exists() and not (repo_dir / "sub").exists()
    assert git("status", "--porcelain", cwd=repo_dir) == "?? da/\n"


def test_merge_that_deletes_a_pointer_removes_its_saved_data(repo_dir: Path, cli: Cli) -> None:
    _data_then_hooks(repo_dir, cli)
    git("checkout", "-q", "-b", "y", cwd=repo_dir)
    git("rm", "-q", "one.bin.dvx", cwd=repo_dir)
    gi = repo_dir / ".gitignore"
    gi.write_text("".join(ln for ln in gi.read_text().splitlines(True) if ln.strip() != "/one.bin"))
    git("commit", "-q", "-am", "drop one.bin", cwd=repo_dir)
    assert (repo_dir / "one.bin").exists()  # a commit does not touch data
    git("checkout", "-q", "main", cwd=repo_dir)
    git("merge", "-q", "y", cwd=repo_dir)
    assert not (repo_dir / "one.bin").exists()
    assert (repo_dir / "da" / "f").read_text() == "f"
    assert git("status", "--porcelain", cwd=repo_dir) == ""
