"""DVX inside git: commit, revisions, diff, log, hooks and gc, checked with the git CLI."""

from __future__ import annotations

import json
import os
import subprocess
import time
from pathlib import Path

import pytest

from tests.conftest import Cli, git, pseudo_random, run_dvx, write


def commit_v1_v2(repo: Path, cli: Cli) -> None:
    write(repo / "data" / "a.txt", "a1")
    write(repo / "data" / "b.txt", "b")
    write(repo / "train.py", "print('v1')\n")
    git("add", "train.py", cwd=repo)
    cli("add", "data")
    cli("commit", "-m", "v1")
    git("tag", "v1", cwd=repo)
    write(repo / "data" / "a.txt", "a2")
    write(repo / "data" / "c.txt", "c")
    (repo / "data" / "b.txt").rename(repo / "data" / "b_renamed.txt")
    cli("commit", "-m", "v2")


def test_commit_is_valid_git(repo_dir: Path, cli: Cli) -> None:
    commit_v1_v2(repo_dir, cli)
    git("fsck", "--strict", cwd=repo_dir)
    assert git("status", "--porcelain", cwd=repo_dir) == ""
    log = git("log", "--format=%an <%ae>|%s", cwd=repo_dir).splitlines()
    assert log == ["DVX Test <test@example.com>|v2", "DVX Test <test@example.com>|v1"]
    files = git("ls-files", cwd=repo_dir).split()
    assert {"data.dvx", ".gitignore", ".dvx/config", ".dvx/.gitignore", "train.py"} <= set(files)
    assert "data/a.txt" not in files
    assert git("rev-parse", "--abbrev-ref", "HEAD", cwd=repo_dir).strip() == "main"


def test_commit_a_stages_modified_code(repo_dir: Path, cli: Cli) -> None:
    commit_v1_v2(repo_dir, cli)
    write(repo_dir / "train.py", "print('v3')\n")
    cli("commit", "-a", "-m", "code change")
    assert git("show", "HEAD:train.py", cwd=repo_dir) == "print('v3')\n"
    assert git("status", "--porcelain", cwd=repo_dir) == ""


def test_commit_refusals(repo_dir: Path, cli: Cli) -> None:
    write(repo_dir / "x.txt", "x")
    cli("add", "x.txt")
    cli("commit", "-m", "first")
    res = cli("commit", "-m", "again", ok=False)
    assert "nothing to commit" in res.output
    assert "empty commit message" in cli("commit", "-m", " ", ok=False).output


def test_commit_on_detached_head(repo_dir: Path, cli: Cli) -> None:
    commit_v1_v2(repo_dir, cli)
    git("checkout", "-q", "--detach", "HEAD", cwd=repo_dir)
    write(repo_dir / "data" / "d.txt", "d")
    cli("commit", "-m", "detached")
    assert git("log", "-1", "--format=%s", "HEAD", cwd=repo_dir).strip() == "detached"
    assert git("log", "-1", "--format=%s", "main", cwd=repo_dir).strip() == "v2"
    git("fsck", "--strict", cwd=repo_dir)


def test_plain_git_commit_works_too(repo_dir: Path, cli: Cli) -> None:
    write(repo_dir / "m.bin", pseudo_random(5000, 1))
    cli("add", "m.bin")
    git("add", "m.bin.dvx", ".gitignore", ".dvx", cwd=repo_dir)
    git("commit", "-q", "-m", "plain", cwd=repo_dir)
    entries = json.loads(cli("ls", "--rev", "HEAD", "--json").output)
    assert [e["path"] for e in entries] == ["m.bin"]


@pytest.mark.parametrize("spelling", ["HEAD~1", "v1", "main~1", "HEAD^"])
def test_revision_spellings(repo_dir: Path, cli: Cli, spelling: str) -> None:
    commit_v1_v2(repo_dir, cli)
    entries = json.loads(cli("ls", "data", "--rev", spelling, "--json").output)
    assert [e["path"] for e in entries] == ["data/a.txt", "data/b.txt"]


def test_short_sha_and_unknown_revision(repo_dir: Path, cli: Cli) -> None:
    commit_v1_v2(repo_dir, cli)
    short = git("rev-parse", "--short", "v1", cwd=repo_dir).strip()
    assert len(json.loads(cli("ls", "data", "--rev", short, "--json").output)) == 2
    res = cli("ls", "--rev", "nope", ok=False)
    assert "unknown revision 'nope'" in res.output
    assert "unknown revision" in cli("ls", "--rev", "HEAD~9", ok=False).output


def test_no_commits_yet(repo_dir: Path, cli: Cli) -> None:
    for args in (["log"], ["diff"], ["ls", "--rev", "HEAD"]):
        res = cli(*args, ok=False)
        assert "no commits yet" in res.output, args


def test_checkout_rev_and_after_git_checkout(repo_dir: Path, cli: Cli) -> None:
    commit_v1_v2(repo_dir, cli)
    cli("checkout", "--rev", "v1")
    assert (repo_dir / "data" / "a.txt").read_text() == "a1"
    assert not (repo_dir / "data" / "c.txt").exists()
    cli("checkout", "--force")  # back to the pointers (v2)
    git("checkout", "-q", "v1", cwd=repo_dir)
    cli("checkout")
    assert (repo_dir / "data" / "a.txt").read_text() == "a1"
    assert sorted(os.listdir(repo_dir / "data")) == ["a.txt", "b.txt"]
    git("switch", "-q", "main", cwd=repo_dir)
    cli("checkout")
    assert sorted(os.listdir(repo_dir / "data")) == ["a.txt", "b_renamed.txt", "c.txt"]


def test_checkout_rev_respects_unsaved_data(repo_dir: Path, cli: Cli) -> None:
    commit_v1_v2(repo_dir, cli)
    write(repo_dir / "data" / "a.txt", "precious unsaved")
    assert "unsaved" in cli("checkout", "--rev", "v1", ok=False).output
    assert (repo_dir / "data" / "a.txt").read_text() == "precious unsaved"


def test_diff_between_revisions(repo_dir: Path, cli: Cli) -> None:
    commit_v1_v2(repo_dir, cli)
    entries = json.loads(cli("diff", "v1", "HEAD", "--json").output)
    got = {(e["status"], e["path"], e.get("old_path")) for e in entries}
    assert got == {("modified", "data/a.txt", None), ("added", "data/c.txt", None),
                   ("renamed", "data/b_renamed.txt", "data/b.txt")}
    mod = next(e for e in entries if e["status"] == "modified")
    assert (mod["old_size"], mod["new_size"]) == (2, 2)
    # HEAD against the work tree's pointers
    assert json.loads(cli("diff", "--json").output) == []
    write(repo_dir / "data" / "z.txt", "zz")
    cli("add", "data")
    assert [e["path"] for e in json.loads(cli("diff", "--json").output)] == ["data/z.txt"]
    text = cli("diff", "v1").output
    assert "renamed:  data/b.txt -> data/b_renamed.txt" in text


def test_diff_needs_objects_names_remote(repo_dir: Path, cli: Cli) -> None:
    commit_v1_v2(repo_dir, cli)
    import shutil
    shutil.rmtree(repo_dir / ".dvx" / "store" / "packs")
    res = cli("diff", "v1", "HEAD", ok=False)
    assert "not in the local store" in res.output and "dvx pull" in res.output


def test_log_of_a_path(repo_dir: Path, cli: Cli) -> None:
    commit_v1_v2(repo_dir, cli)
    write(repo_dir / "train.py", "print(3)\n")
    git("commit", "-q", "-am", "code only", cwd=repo_dir)  # no data change: no version
    entries = json.loads(cli("log", "data", "--json").output)
    assert [e["message"] for e in entries] == ["v2", "v1"]
    assert entries[0]["change"] == "modified" and entries[1]["change"] == "added"
    assert entries[0]["files"] == 3 and entries[1]["files"] == 2
    assert (entries[0]["added"], entries[0]["modified"], entries[0]["deleted"]) == (1, 2, 0)
    head = git("rev-parse", "HEAD~1", cwd=repo_dir).strip()
    assert entries[0]["commit"] == head
    assert "has no versions" in cli("log", "nothing", ok=False).output


def test_log_long_history_is_fast_enough_to_run(repo_dir: Path, cli: Cli) -> None:
    """200 commits, one data change each (no timing asserted; see bench/ for that)."""
    write(repo_dir / "m.txt", "0")
    cli("add", "m.txt")
    cli("commit", "-m", "c0")
    for i in range(1, 200):
        write(repo_dir / "m.txt", str(i))
        cli("add", "m.txt")
        git("commit", "-q", "-am", f"c{i}", cwd=repo_dir)
    entries = json.loads(cli("log", "m.txt", "--json").output)
    assert len(entries) == 200 and entries[0]["message"] == "c199"


def test_hooks_install_chain_and_uninstall(repo_dir: Path, cli: Cli) -> None:
    hooks = repo_dir / ".git" / "hooks"
    hooks.mkdir(exist_ok=True)
    mine = hooks / "pre-commit"
    mine.write_text("#!/bin/sh\necho user-hook-ran >> \"$(git rev-parse --show-toplevel)/hook.log\"\n")
    mine.chmod(0o755)
    out = cli("hooks", "install").output
    assert "chained: pre-commit" in out and "installed: post-checkout" in out
    assert "dvx-managed-hook" in mine.read_text()
    assert (hooks / "pre-commit.dvx-chained").exists()
    cli("hooks", "install")  # idempotent
    write(repo_dir / "d" / "f.txt", "1")
    cli("add", "d")
    git("add", "d.dvx", ".gitignore", ".dvx", cwd=repo_dir)
    git("commit", "-q", "-m", "with hooks", cwd=repo_dir)
    assert "user-hook-ran" in (repo_dir / "hook.log").read_text()
    # data changed but pointer not re-added: the pre-commit hook stops the commit
    write(repo_dir / "d" / "f.txt", "2")
    write(repo_dir / "other.txt", "x")
    git("add", "other.txt", cwd=repo_dir)
    r = subprocess.run(["git", "commit", "-q", "-m", "stale"], cwd=repo_dir, capture_output=True,
                       text=True)
    assert r.returncode != 0 and "dvx add d" in r.stderr
    cli("hooks", "uninstall")
    assert "dvx-managed-hook" not in mine.read_text() and "user-hook-ran" in mine.read_text()
    assert not (hooks / "post-checkout").exists()


def test_autostage_hook(repo_dir: Path, cli: Cli) -> None:
    cfg = repo_dir / ".dvx" / "config"
    cfg.write_text(cfg.read_text().replace("format = 1", "format = 1\nautostage = true"))
    cli("hooks", "install")
    write(repo_dir / "d" / "f.txt", "1")
    cli("add", "d")
    cli("commit", "-m", "one")
    write(repo_dir / "d" / "f.txt", "2")
    r = subprocess.run(["git", "commit", "-q", "--allow-empty", "-m", "auto"], cwd=repo_dir,
                       capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    assert json.loads(cli("status", "--json").output)["clean"]


def test_post_checkout_hook_brings_data(repo_dir: Path, cli: Cli) -> None:
    commit_v1_v2(repo_dir, cli)
    cli("hooks", "install")
    git("checkout", "-q", "v1", cwd=repo_dir)
    assert (repo_dir / "data" / "a.txt").read_text() == "a1"
    git("checkout", "-q", "main", cwd=repo_dir)
    assert (repo_dir / "data" / "c.txt").read_text() == "c"


def test_hook_with_nothing_to_do_is_quiet(repo_dir: Path) -> None:
    run_dvx("hooks", "install", cwd=repo_dir)
    proc = run_dvx("hooks", "run", "pre-push", "origin", "url", cwd=repo_dir)
    assert proc.stdout == "" and proc.stderr == ""


def _age(repo: Path, seconds: int) -> None:
    old = time.time() - seconds
    for f in (repo / ".dvx" / "store" / "packs").iterdir():
        os.utime(f, (old, old))


def test_gc_keeps_history_and_removes_garbage(repo_dir: Path, cli: Cli) -> None:
    commit_v1_v2(repo_dir, cli)
    write(repo_dir / "junk.bin", pseudo_random(300_000, 5))
    cli("add", "junk.bin")
    (repo_dir / "junk.bin.dvx").unlink()  # never committed: garbage
    _age(repo_dir, 7200)
    dry = json.loads(cli("gc", "--dry-run", "--json").output)
    assert dry["dead_objects"] >= 3 and dry["bytes_reclaimed"] >= 300_000
    rep = json.loads(cli("gc", "--json").output)
    assert rep["bytes_reclaimed"] >= 300_000 and rep["dead_objects"] == dry["dead_objects"]
    cli("fsck")
    # every version in history is still there
    cli("checkout", "--rev", "v1", "--force")
    assert (repo_dir / "data" / "a.txt").read_text() == "a1"
    assert json.loads(cli("gc", "--json").output)["dead_objects"] == 0


def test_gc_grace_period_protects_recent_writes(repo_dir: Path, cli: Cli) -> None:
    write(repo_dir / "junk.bin", pseudo_random(100_000, 6))
    cli("add", "junk.bin")
    (repo_dir / "junk.bin.dvx").unlink()
    rep = json.loads(cli("gc", "--json").output)
    assert rep["bytes_reclaimed"] == 0 and rep["packs_kept_young"] == 1


def test_gc_workspace_only_needs_confirmation(repo_dir: Path, cli: Cli) -> None:
    commit_v1_v2(repo_dir, cli)
    _age(repo_dir, 7200)
    assert "--yes" in cli("gc", "--workspace-only", ok=False).output
    rep = json.loads(cli("gc", "--workspace-only", "--yes", "--json").output)
    assert rep["dead_objects"] >= 1
    assert "not in the local store" in cli("checkout", "--rev", "v1", ok=False).output
    cli("fsck")


def test_pre_push_hook_pushes_data(repo_dir: Path, cli: Cli, tmp_path: Path) -> None:
    bare = tmp_path / "code.git"
    subprocess.run(["git", "init", "-q", "--bare", str(bare)], check=True)
    git("remote", "add", "code", str(bare), cwd=repo_dir)
    cli("remote", "add", "store", str(tmp_path / "data-remote"), "--default")
    cli("hooks", "install")
    write(repo_dir / "d" / "f.bin", pseudo_random(50_000, 3))
    cli("add", "d")
    cli("commit", "-m", "data")
    assert not (tmp_path / "data-remote" / "roots").exists()
    r = subprocess.run(["git", "push", "-q", "code", "main"], cwd=repo_dir, capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    pointer_id = (repo_dir / "d.dvx").read_text().split("id: ")[1][:64]
    assert (tmp_path / "data-remote" / "roots" / f"{pointer_id}.json").exists()


def test_gc_rewrites_mostly_dead_packs(repo_dir: Path, cli: Cli) -> None:
    # one add puts a small live file and a big soon-dead file into the same pack
    write(repo_dir / "keep.txt", "keep me")
    write(repo_dir / "big.bin", pseudo_random(600_000, 9))
    cli("add", "keep.txt", "big.bin")
    packs = list((repo_dir / ".dvx" / "store" / "packs").glob("*.pack"))
    assert len(packs) == 1
    (repo_dir / "big.bin.dvx").unlink()
    _age(repo_dir, 7200)
    rep = json.loads(cli("gc", "--json").output)
    assert rep["packs_rewritten"] == [packs[0].stem] and rep["bytes_reclaimed"] >= 600_000
    assert not packs[0].exists()
    assert len(list((repo_dir / ".dvx" / "store" / "packs").glob("*.pack"))) == 1
    (repo_dir / "keep.txt").unlink()
    cli("checkout")
    assert (repo_dir / "keep.txt").read_text() == "keep me"
    cli("fsck")


def test_missing_git_object_is_a_clean_error(repo_dir: Path, cli: Cli) -> None:
    commit_v1_v2(repo_dir, cli)
    tree = git("rev-parse", "v1^{tree}", cwd=repo_dir).strip()
    obj = repo_dir / ".git" / "objects" / tree[:2] / tree[2:]
    obj.unlink()  # a damaged clone
    res = cli("ls", "--rev", "v1", ok=False)
    error, hint = res.output.strip().splitlines()
    assert error.startswith("error: git object") and error.endswith(" is missing")
    assert hint.startswith("hint: run `git fsck`")
