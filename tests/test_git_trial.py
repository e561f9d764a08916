"""Regression tests from the hostile-user trial of DVX's git layer: pre-push pushes the
pushed commits' data, `dvx commit` locks like git (index lock, compare-and-swap, reflog)
and honours paths (--only), submodules are not the superproject's, and
.git/info/exclude hides the store on every branch.

Real git repositories driven by the git CLI and checked with git itself."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from tests.conftest import Cli, git, pseudo_random, run_dvx, write

LOCKED = ("another git process seems to be running in this repository (.git/index.lock exists)\n"
          "hint: wait for it or remove the lock if it crashed")


def sh(*args: str, cwd: Path, ok: bool = True) -> subprocess.CompletedProcess[str]:
    proc = subprocess.run(list(args), cwd=cwd, text=True, capture_output=True)
    if ok:
        assert proc.returncode == 0, proc.stdout + proc.stderr
    return proc


def pointer_id(path: Path) -> str:
    return path.read_text().split("id: ")[1][:64]


def remote_roots(remote: Path) -> set[str]:
    roots = remote / "roots"
    return {p.name.removesuffix(".json") for p in roots.iterdir()} if roots.is_dir() else set()


def _push_setup(repo: Path, cli: Cli, tmp_path: Path) -> tuple[Path, Path]:
    bare = tmp_path / "code.git"
    sh("git", "init", "-q", "--bare", str(bare), cwd=tmp_path)
    git("remote", "add", "origin", str(bare), cwd=repo)
    store = tmp_path / "data-remote"
    cli("remote", "add", "origin", str(store), "--default")
    cli("hooks", "install")
    return bare, store


# -- N5: pre-push pushes the data of the commits being pushed ----------------------------

def test_pre_push_pushes_the_pushed_commits_not_the_work_tree(repo_dir: Path, cli: Cli, tmp_path: Path) -> None:
    bare, store = _push_setup(repo_dir, cli, tmp_path)
    write(repo_dir / "f", "v1\n")
    cli("add", "f")
    cli("commit", "-m", "1")
    v1 = pointer_id(repo_dir / "f.dvx")
    write(repo_dir / "f", "v2\n")
    cli("add", "f")  # v2 is not committed
    v2 = pointer_id(repo_dir / "f.dvx")
    sh("git", "push", "-q", "origin", "main", cwd=repo_dir)
    assert v1 in remote_roots(store) and v2 not in remote_roots(store)
    clone = tmp_path / "clone"
    sh("git", "clone", "-q", "-b", "main", str(bare), str(clone), cwd=tmp_path)
    run_dvx("pull", cwd=clone)
    assert (clone / "f").read_text() == "v1\n"


def test_pre_push_of_a_branch_not_checked_out_and_only_new_commits(repo_dir: Path, cli: Cli,
                                                                    tmp_path: Path) -> None:
    bare, store = _push_setup(repo_dir, cli, tmp_path)
    write(repo_dir / "a", "a1\n")
    cli("add", "a")
    cli("commit", "-m", "base")
    sh("git", "push", "-q", "origin", "main", cwd=repo_dir)
    assert remote_roots(store) == {pointer_id(repo_dir / "a.dvx")}
    sh("git", "checkout", "-q", "-b", "feature", cwd=repo_dir)
    write(repo_dir / "a", "feature 1\n")
    cli("commit", "-m", "f1")
    f1 = pointer_id(repo_dir / "a.dvx")
    write(repo_dir / "a", "feature 2\n")
    cli("commit", "-m", "f2")
    f2 = pointer_id(repo_dir / "a.dvx")
    sh("git", "checkout", "-q", "main", cwd=repo_dir)
    cli("checkout", "--force")
    # push the feature branch from main: its two commits' data, not main's work tree
    sh("git", "push", "-q", "origin", "feature", cwd=repo_dir)
    assert {f1, f2} <= remote_roots(store)
    clone = tmp_path / "clone"
    sh("git", "clone", "-q", "-b", "feature", str(bare), str(clone), cwd=tmp_path)
    run_dvx("pull", "--rev", "HEAD~1", cwd=clone)
    run_dvx("pull", cwd=clone)
    assert (clone / "a").read_text() == "feature 2\n"
    # deleting a branch pushes nothing and succeeds
    sh("git", "push", "-q", "origin", ":feature", cwd=repo_dir)


def test_pre_push_chooses_the_commits_git_pushes(repo_dir: Path, cli: Cli) -> None:
    from dvx.ops.hooks import _pushed_pointers
    from dvx.repo import Repository

    ids = []
    for i in range(3):
        write(repo_dir / "a", f"{i}\n")
        cli("add", "a")
        cli("commit", "-m", str(i))
        ids.append(pointer_id(repo_dir / "a.dvx"))
    c0, c1, c2 = git("rev-list", "--reverse", "HEAD", cwd=repo_dir).split()
    git("tag", "-a", "-m", "t", "v2", c2, cwd=repo_dir)
    tag = git("rev-parse", "v2", cwd=repo_dir).strip()
    repo = Repository(str(repo_dir))
    zero, unknown = "0" * 40, "1234" * 10

    def pushed(*lines: str) -> set[str]:
        pointers, bad = _pushed_pointers(repo, list(lines))
        assert not bad
        return {p.id for p in pointers.values()}

    assert pushed(f"refs/heads/main {c2} refs/heads/main {c0}") == {ids[1], ids[2]}
    assert pushed(f"refs/heads/main {c2} refs/heads/main {zero}") == set(ids)
    assert pushed(f"refs/heads/main {c2} refs/heads/main {unknown}") == set(ids)
    assert pushed(f"refs/heads/x {c1} refs/heads/x {c0}", f"refs/tags/v2 {tag} refs/tags/v2 {c1}") \
        == {ids[1], ids[2]}
    assert pushed(f"(delete) {zero} refs/heads/main {c2}") == set()
    assert pushed() == set()


def test_pre_push_blocks_when_pushed_data_is_missing(repo_dir: Path, cli: Cli, tmp_path: Path) -> None:
    bare, _store = _push_setup(repo_dir, cli, tmp_path)
    other = tmp_path / "other"
    sh("git", "init", "-q", "-b", "main", str(other), cwd=tmp_path)
    run_dvx("init", cwd=other)
    write(other / "lost", pseudo_random(5000, 7))
    run_dvx("add", "lost", cwd=other)
    # a pointer whose data this repository never had (and the remote lacks)
    (repo_dir / "lost.dvx").write_bytes((other / "lost.dvx").read_bytes())
    write(repo_dir / "kept", "kept\n")
    cli("add", "kept")
    git("add", "lost.dvx", "kept.dvx", ".gitignore", ".dvx", cwd=repo_dir)
    git("commit", "-q", "--no-verify", "-m", "lost data", cwd=repo_dir)
    (repo_dir / "lost.dvx").unlink()  # not in the work tree either
    git("commit", "-q", "--no-verify", "-am", "drop it", cwd=repo_dir)
    r = sh("git", "push", "origin", "main", cwd=repo_dir, ok=False)
    assert r.returncode != 0
    lines = [ln for ln in r.stderr.splitlines() if ln.startswith("dvx")]
    assert len(lines) == 1 and "lost" in lines[0] and "--no-verify" in lines[0], r.stderr
    assert "Traceback" not in r.stderr
    assert git("ls-remote", str(bare), cwd=repo_dir) == ""  # git pushed nothing


# -- N7: concurrent commits, the index lock and compare-and-swap ---------------------------

def test_concurrent_commits_never_revert_each_other(repo_dir: Path, cli: Cli) -> None:
    files = [f"f{i}" for i in range(1, 5)]
    for f in files:
        write(repo_dir / f, f"{f} base\n")
    cli("add", *files)
    cli("commit", "-m", "base")
    base = git("rev-parse", "HEAD", cwd=repo_dir).strip()
    outcomes = []
    for rnd in range(3):
        for f in files:
            write(repo_dir / f, f"{f} round {rnd}\n")
        procs = [subprocess.Popen([sys.executable, "-m", "dvx", "commit", "-m", f"{f} r{rnd}", f],
                                  cwd=repo_dir, text=True, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
                 for f in files]
        for p in procs:
            out, err = p.communicate()
            outcomes.append((p.returncode, out, err))
    for rc, out, err in outcomes:
        assert "Traceback" not in err + out and "FileLocked" not in err + out, err
        if rc != 0:
            assert err.strip() == f"error: {LOCKED}", err
    assert any(rc == 0 for rc, _, _ in outcomes)
    assert not (repo_dir / ".git" / "index.lock").exists()
    git("fsck", "--strict", cwd=repo_dir)
    # every commit changes exactly the file it was made for: none reverts another
    for line in git("log", "--format=%H %s", f"{base}..HEAD", cwd=repo_dir).splitlines():
        sha, subject = line.split(" ", 1)
        changed = git("diff-tree", "--no-commit-id", "--name-only", "-r", sha, cwd=repo_dir).split()
        assert changed == [f"{subject.split()[0]}.dvx"], (subject, changed)
    # git's reflog saw every one of them
    made = git("rev-list", f"{base}..HEAD", cwd=repo_dir).split()
    assert git("rev-list", "--walk-reflogs", "-n", str(len(made)), "HEAD", cwd=repo_dir).split() == made


def test_commit_refuses_a_held_index_lock_in_one_line(repo_dir: Path, cli: Cli) -> None:
    write(repo_dir / "a", "1\n")
    cli("add", "a")
    cli("commit", "-m", "one")
    write(repo_dir / "a", "2\n")
    lock = repo_dir / ".git" / "index.lock"
    lock.write_bytes(b"")
    r = run_dvx("commit", "-m", "two", cwd=repo_dir, check=False)
    assert r.returncode != 0
    assert r.stderr.strip() == f"error: {LOCKED}" and "Traceback" not in r.stdout + r.stderr
    assert lock.exists()  # someone else's lock is never removed
    assert git("log", "--format=%s", cwd=repo_dir).split() == ["one"]
    lock.unlink()
    run_dvx("commit", "-m", "two", cwd=repo_dir)
    assert git("log", "--format=%s", cwd=repo_dir).split() == ["two", "one"]


def test_commit_moves_the_branch_by_compare_and_swap(repo_dir: Path, cli: Cli) -> None:
    write(repo_dir / "a", "1\n")
    write(repo_dir / "code.py", "x = 1\n")
    git("add", "code.py", cwd=repo_dir)
    cli("add", "a")
    cli("commit", "-m", "one")
    # someone moves main while dvx commit runs (here: from the pre-commit hook)
    write(repo_dir / "code.py", "x = 2\n")
    blob = git("hash-object", "-w", "code.py", cwd=repo_dir).strip()
    tree = subprocess.run(["git", "mktree"], cwd=repo_dir, text=True, capture_output=True, check=True,
                          input="".join(
                              line.replace(git("rev-parse", "HEAD:code.py", cwd=repo_dir).strip(), blob) + "\n"
                              for line in git("ls-tree", "HEAD", cwd=repo_dir).splitlines())).stdout.strip()
    other = git("commit-tree", tree, "-p", "HEAD", "-m", "theirs", cwd=repo_dir).strip()
    hook = repo_dir / ".git" / "hooks" / "pre-commit"
    hook.write_text(f"#!/bin/sh\ngit update-ref refs/heads/main {other}\n")
    hook.chmod(0o755)
    write(repo_dir / "a", "2\n")
    r = run_dvx("commit", "-m", "mine", cwd=repo_dir, check=False)
    assert r.returncode != 0 and "Traceback" not in r.stderr
    assert "moved during the commit" in r.stderr
    # their commit is kept, not overwritten or reverted
    assert git("rev-parse", "main", cwd=repo_dir).strip() == other
    assert not (repo_dir / ".git" / "index.lock").exists()
    hook.unlink()
    git("fsck", "--strict", cwd=repo_dir)


# -- N8: the reflog ------------------------------------------------------------------------

def test_commit_writes_gits_reflog_entries(repo_dir: Path, cli: Cli) -> None:
    shas = []
    for i, msg in enumerate(["one", "two", "three\n\nbody"]):
        write(repo_dir / "a", f"{i}\n")
        cli("add", "a")
        cli("commit", "-m", msg)
        shas.append(git("rev-parse", "HEAD", cwd=repo_dir).strip())
    want = ["commit: three", "commit: two", "commit (initial): one"]
    assert git("reflog", "--format=%gs", cwd=repo_dir).splitlines() == want
    assert git("reflog", "show", "--format=%gs", "main", cwd=repo_dir).splitlines() == want
    assert git("rev-parse", "HEAD@{1}", "HEAD@{2}", "main@{1}", cwd=repo_dir).split() == \
        [shas[1], shas[0], shas[1]]
    # the lines are git's own format: old new ident time zone<TAB>message
    head_log = (repo_dir / ".git" / "logs" / "HEAD").read_text().splitlines()
    assert head_log[1].startswith(f"{shas[0]} {shas[1]} DVX Test <test@example.com> ")
    # a merge
    git("checkout", "-q", "-b", "side", "HEAD~1", cwd=repo_dir)
    write(repo_dir / "side.txt", "side\n")
    git("add", "side.txt", cwd=repo_dir)
    git("commit", "-q", "-m", "side", cwd=repo_dir)
    git("checkout", "-q", "main", cwd=repo_dir)
    git("merge", "-q", "--no-commit", "--no-ff", "side", cwd=repo_dir)
    cli("commit", "-m", "merged")
    assert git("reflog", "-1", "--format=%gs", cwd=repo_dir).strip() == "commit (merge): merged"
    assert len(git("log", "-1", "--format=%P", cwd=repo_dir).split()) == 2
    # a detached HEAD: only HEAD's log
    git("checkout", "-q", "--detach", cwd=repo_dir)
    write(repo_dir / "a", "detached\n")
    cli("commit", "-m", "detached")
    assert git("reflog", "-1", "--format=%gs", cwd=repo_dir).strip() == "commit: detached"
    assert git("reflog", "show", "-1", "--format=%gs", "main", cwd=repo_dir).strip() == "commit (merge): merged"
    git("fsck", "--strict", cwd=repo_dir)


# -- commit with paths: git's --only ----------------------------------------------------------

def test_commit_with_paths_commits_only_those_paths(repo_dir: Path, cli: Cli) -> None:
    write(repo_dir / "a", "a1\n")
    write(repo_dir / "b", "b1\n")
    cli("add", "a", "b")
    cli("commit", "-m", "base")
    write(repo_dir / "code.py", "print(1)\n")
    git("add", "code.py", cwd=repo_dir)
    write(repo_dir / "a", "a2\n")
    write(repo_dir / "b", "b2\n")
    cli("commit", "-m", "only a", "a")
    assert git("diff-tree", "--no-commit-id", "--name-only", "-r", "HEAD", cwd=repo_dir).split() == ["a.dvx"]
    assert "code.py" not in git("ls-tree", "--name-only", "HEAD", cwd=repo_dir).split()
    # code.py stays staged, b is neither re-added nor committed
    assert git("diff", "--cached", "--name-only", cwd=repo_dir).split() == ["code.py"]
    assert json.loads(cli("status", "--json").output)["clean"] is False
    git("fsck", "--strict", cwd=repo_dir)
    # without paths: everything, as before
    cli("commit", "-m", "all")
    changed = git("diff-tree", "--no-commit-id", "--name-only", "-r", "HEAD", cwd=repo_dir).split()
    assert changed == ["b.dvx", "code.py"]


def test_first_commit_with_paths_takes_dvx_config_along(repo_dir: Path, cli: Cli) -> None:
    write(repo_dir / "a", "a\n")
    write(repo_dir / "b", "b\n")
    cli("add", "a", "b")
    cli("commit", "-m", "first", "a")
    files = set(git("ls-tree", "-r", "--name-only", "HEAD", cwd=repo_dir).split())
    assert {"a.dvx", ".gitignore", ".dvx/config", ".dvx/.gitignore"} <= files and "b.dvx" not in files


# -- N9: submodules and nested repositories ----------------------------------------------------

def test_submodule_pointers_are_not_the_superprojects(repo_dir: Path, cli: Cli, tmp_path: Path) -> None:
    sub = tmp_path / "sub"
    sh("git", "init", "-q", "-b", "main", str(sub), cwd=tmp_path)
    run_dvx("init", cwd=sub)
    write(sub / "sd", "sub data\n")
    run_dvx("add", "sd", cwd=sub)
    run_dvx("commit", "-m", "sub", cwd=sub)
    write(repo_dir / "top", "top\n")
    cli("add", "top")
    cli("commit", "-m", "top")
    sh("git", "-c", "protocol.file.allow=always", "submodule", "add", "-q", str(sub), "sm", cwd=repo_dir)
    git("commit", "-q", "-m", "submodule", cwd=repo_dir)
    sh("git", "init", "-q", "nested", cwd=repo_dir)  # a nested repository that is no submodule
    write(repo_dir / "nested" / "n.dvx", (sub / "sd.dvx").read_text())
    status = run_dvx("status", "--json", cwd=repo_dir)
    assert "sm/" not in status.stdout and "nested/" not in status.stdout
    run_dvx("fsck", cwd=repo_dir)
    run_dvx("checkout", cwd=repo_dir)
    gitignore = (repo_dir / "sm" / ".gitignore").read_text()
    write(repo_dir / "sm" / "n2", "n2\n")
    r = run_dvx("add", "sm/n2", cwd=repo_dir, check=False)
    assert r.returncode != 0 and "Traceback" not in r.stderr
    assert "submodule" in r.stderr and "run dvx inside that repository" in r.stderr
    assert not (repo_dir / "sm" / "n2.dvx").exists()
    assert (repo_dir / "sm" / ".gitignore").read_text() == gitignore
    assert run_dvx("add", "sm", cwd=repo_dir, check=False).returncode != 0
    # inside the submodule, DVX works on the submodule's own pointers
    sm_status = json.loads(run_dvx("status", "--json", cwd=repo_dir / "sm", check=False).stdout)
    assert [e["path"] for e in sm_status["paths"]] == ["sd"]


# -- .git/info/exclude keeps the store ignored on every branch ----------------------------------

def test_store_stays_ignored_on_a_branch_from_before_dvx_init(tmp_path: Path) -> None:
    repo = tmp_path / "w"
    sh("git", "init", "-q", "-b", "main", str(repo), cwd=tmp_path)
    exclude = repo / ".git" / "info" / "exclude"
    exclude.write_text(exclude.read_text() + "my-own-line\n")
    write(repo / "code.py", "1\n")
    git("add", "code.py", cwd=repo)
    git("commit", "-q", "-m", "code", cwd=repo)
    git("branch", "old", cwd=repo)
    r = run_dvx("init", cwd=repo)
    lines = exclude.read_text().splitlines()
    assert "my-own-line" in lines
    assert {"/.dvx/store/", "/.dvx/tmp/", "/.dvx/state/", "/.dvx/config.local"} <= set(lines)
    write(repo / "d", pseudo_random(3000, 1))
    run_dvx("add", "d", cwd=repo)
    run_dvx("commit", "-m", "data", cwd=repo)
    git("checkout", "-q", "old", cwd=repo)
    assert not (repo / ".dvx" / ".gitignore").exists()
    assert ".dvx" not in git("status", "--porcelain", "--untracked-files=all", cwd=repo)
    git("add", "-A", cwd=repo)
    assert not [p for p in git("diff", "--cached", "--name-only", cwd=repo).split() if p.startswith(".dvx/")]
    # any command restores missing lines (and only once)
    git("checkout", "-q", "-f", "main", cwd=repo)
    exclude.write_text("my-own-line\n")
    run_dvx("status", cwd=repo)
    run_dvx("status", cwd=repo)
    text = exclude.read_text()
    assert text.startswith("my-own-line\n") and text.count("/.dvx/store/") == 1
    # a linked work tree: the common directory's exclude file
    git("worktree", "add", "-q", str(tmp_path / "linked"), "-b", "linked", cwd=repo)
    exclude.write_text("")
    run_dvx("status", cwd=tmp_path / "linked")
    assert "/.dvx/store/" in exclude.read_text()
    assert not (repo / ".git" / "worktrees" / "linked" / "info" / "exclude").exists()
    # dvx init said what to commit
    assert "commit .dvx/config and .dvx/.gitignore" in r.stdout + r.stderr


def test_autostage_hook_stages_into_the_index_git_commit_a_locked(repo_dir: Path, cli: Cli) -> None:
    cfg = repo_dir / ".dvx" / "config"
    cfg.write_text(cfg.read_text().replace("format = 1", "format = 1\nautostage = true"))
    cli("hooks", "install")
    write(repo_dir / "d", "1\n")
    write(repo_dir / "code.py", "1\n")
    git("add", "code.py", cwd=repo_dir)
    cli("add", "d")
    cli("commit", "-m", "one")
    write(repo_dir / "d", "2\n")
    write(repo_dir / "code.py", "2\n")
    # git commit -a holds .git/index.lock and runs the hook with GIT_INDEX_FILE naming it
    r = sh("git", "commit", "-q", "-a", "-m", "auto", cwd=repo_dir, ok=False)
    assert r.returncode == 0 and "Traceback" not in r.stderr, r.stderr
    assert git("diff-tree", "--no-commit-id", "--name-only", "-r", "HEAD", cwd=repo_dir).split() == \
        ["code.py", "d.dvx"]
    assert git("status", "--porcelain", cwd=repo_dir) == ""
