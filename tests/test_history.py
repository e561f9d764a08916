"""The history layer (``dvx/history.py``) over real git repositories, checked against
what the git CLI itself says (``git ls-tree``, ``git rev-list``, ``git diff-tree``)."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import time
from pathlib import Path

import pytest

from dvx.errors import NotTrackedError, PointerError
from dvx.history import History, history_of
from dvx.repo import Repository
from tests.conftest import Cli, git, write

# -- helpers: git with fixed dates, and git's own answers ---------------------------------

_CLOCK = [1_700_000_000]


def commit(repo: Path, message: str, *paths: str) -> str:
    """``git add -A`` (or PATHS) and commit, each commit one minute after the last, so
    date order (what ``git rev-list`` and the history walk use) is unambiguous."""
    _CLOCK[0] += 60
    env = dict(os.environ, GIT_AUTHOR_DATE=f"@{_CLOCK[0]} +0000", GIT_COMMITTER_DATE=f"@{_CLOCK[0]} +0000")
    subprocess.run(["git", "add", "-A", *paths], cwd=repo, check=True)
    subprocess.run(["git", "commit", "-q", "--allow-empty", "-m", message], cwd=repo, check=True, env=env)
    return git("rev-parse", "HEAD", cwd=repo).strip()


def merge(repo: Path, branch: str, message: str) -> str:
    _CLOCK[0] += 60
    env = dict(os.environ, GIT_AUTHOR_DATE=f"@{_CLOCK[0]} +0000", GIT_COMMITTER_DATE=f"@{_CLOCK[0]} +0000")
    subprocess.run(["git", "merge", "-q", "--no-ff", "-m", message, branch], cwd=repo, check=True, env=env)
    return git("rev-parse", "HEAD", cwd=repo).strip()


def _is_pointer_path(path: str) -> bool:
    parts = path.split("/")
    return (path.endswith(".dvx") and len(parts[-1]) > 4
            and not any(p in (".git", ".dvx") for p in parts[:-1]))


def git_pointers(repo: Path, rev: str, prefix: str = "") -> dict[str, str]:
    """target -> pointer blob id, from ``git ls-tree -r`` (regular files only)."""
    spec = f"{rev}:{prefix}" if prefix else rev
    out = {}
    for line in git("ls-tree", "-r", "-z", spec, cwd=repo).split("\0"):
        if not line:
            continue
        meta, path = line.split("\t", 1)
        mode, kind, blob = meta.split()
        if kind == "blob" and mode in ("100644", "100755") and _is_pointer_path(path):
            out[path[:-4]] = blob
    return out


def git_pointer_id(repo: Path, blob: str) -> str:
    text = git("cat-file", "-p", blob, cwd=repo)
    return next(line.split(":", 1)[1].strip() for line in text.splitlines() if line.startswith("id:"))


def git_changes(repo: Path, sha: str) -> dict[str, str]:
    """target -> A/D/M for the pointer files ``sha`` changed against its first parent."""
    parents = git("rev-list", "--parents", "-n1", sha, cwd=repo).split()[1:]
    args = ["diff-tree", "-r", "-z", "--no-renames", "--name-status", "--no-commit-id"]
    args += [parents[0], sha] if parents else ["--root", sha]
    fields = [f for f in git(*args, cwd=repo).split("\0") if f]
    out = {}
    for status, path in zip(fields[::2], fields[1::2], strict=True):
        if _is_pointer_path(path):
            out[path[:-4]] = status[0]
    return out


_CHANGE = {"A": "added", "D": "deleted", "M": "modified", "T": "modified"}


def assert_versions_match_git(repo: Path, history: History, rev: str = "HEAD") -> None:
    """Every version (all paths, and each path alone) is what git reports, in order."""
    expected = []
    for sha in git("rev-list", rev, cwd=repo).split():
        expected += [(sha, t, _CHANGE[s]) for t, s in sorted(git_changes(repo, sha).items())]
    got = [(v.commit, v.target, v.change) for v in history.versions(rev=rev)]
    assert got == expected
    for target in {t for _, t, _ in expected}:
        mine = [(v.commit, v.change) for v in history.versions(target, rev=rev)]
        assert mine == [(s, c) for s, t, c in expected if t == target], target


def open_repo(root: Path) -> Repository:
    return Repository(str(root))


# -- a history with branches, a merge, a deletion and re-addition, a rename -------------


@pytest.fixture
def branchy(repo_dir: Path, cli: Cli) -> dict[str, str]:
    """main: c1 (data, model) - c2 (data changed) - c3 (model deleted) - c4 (code only)
    - m (merge of feature) - c5 (model re-added) - c6 (data.dvx renamed to renamed.dvx);
    feature (from c2): f1 (new sub/x)."""
    shas: dict[str, str] = {}
    write(repo_dir / "data" / "a.txt", "a1")
    write(repo_dir / "model.bin", "m1")
    cli("add", "data", "model.bin")
    shas["c1"] = commit(repo_dir, "c1")
    write(repo_dir / "data" / "a.txt", "a2")
    cli("add", "data")
    shas["c2"] = commit(repo_dir, "c2")
    git("switch", "-q", "-c", "feature", cwd=repo_dir)
    write(repo_dir / "sub" / "x.txt", "x")
    cli("add", "sub/x.txt")
    shas["f1"] = commit(repo_dir, "f1")
    git("switch", "-q", "main", cwd=repo_dir)
    cli("checkout")
    git("rm", "-q", "model.bin.dvx", cwd=repo_dir)
    os.unlink(repo_dir / "model.bin")
    shas["c3"] = commit(repo_dir, "c3")
    write(repo_dir / "code.py", "print(1)\n")
    shas["c4"] = commit(repo_dir, "c4")
    shas["m"] = merge(repo_dir, "feature", "merge feature")
    cli("checkout")
    write(repo_dir / "model.bin", "m2")
    cli("add", "model.bin")
    shas["c5"] = commit(repo_dir, "c5")
    git("mv", "data.dvx", "renamed.dvx", cwd=repo_dir)
    shas["c6"] = commit(repo_dir, "c6")
    return shas


def test_pointers_at_each_commit_match_git_ls_tree(repo_dir: Path, branchy: dict[str, str]) -> None:
    history = History(open_repo(repo_dir))
    for name, sha in branchy.items():
        expected = git_pointers(repo_dir, sha)
        got = history.at(sha)
        assert set(got) == set(expected), name
        for target, blob in expected.items():
            assert got[target].id == git_pointer_id(repo_dir, blob)
            assert history.pointer_at(sha, target) == got[target]
    assert set(history.at("HEAD~1")) == {"data", "model.bin", "sub/x.txt"}
    assert set(history.at("feature")) == {"data", "model.bin", "sub/x.txt"}
    assert history.at("HEAD", ["sub"]) == {"sub/x.txt": history.at("feature")["sub/x.txt"]}
    with pytest.raises(NotTrackedError, match="is not tracked by DVX at HEAD"):
        history.at("HEAD", ["nothing"])


def test_versions_match_git_through_branches_merges_and_renames(repo_dir: Path,
                                                                branchy: dict[str, str]) -> None:
    history = History(open_repo(repo_dir))
    assert_versions_match_git(repo_dir, history)
    assert_versions_match_git(repo_dir, history, "feature")
    # deleted and re-added: three versions of model.bin, newest first
    assert [(v.commit, v.change) for v in history.versions("model.bin")] == [
        (branchy["c5"], "added"), (branchy["c3"], "deleted"), (branchy["c1"], "added")]
    deleted = next(v for v in history.versions("model.bin") if v.change == "deleted")
    assert deleted.pointer is None and deleted.previous is not None
    # a rename is a deletion and an addition in the same commit
    c6 = [(v.target, v.change) for v in history.versions() if v.commit == branchy["c6"]]
    assert c6 == [("data", "deleted"), ("renamed", "added")]
    renamed = next(history.versions("renamed"))
    assert renamed.pointer == history.at(branchy["c2"])["data"] and renamed.summary == "c6"
    # the merge brings sub/x.txt into main: a version of main's first-parent line
    assert [v.commit for v in history.versions("sub/x.txt")] == [branchy["m"], branchy["f1"]]
    info = git("log", "-1", "--format=%an|%at|%s", branchy["c5"], cwd=repo_dir).strip().split("|")
    v5 = next(history.versions("model.bin"))
    assert (v5.author.split(" <")[0], v5.time, v5.message.strip()) == (info[0], int(info[1]), info[2])


def test_all_commits_is_every_version_of_every_ref(repo_dir: Path, branchy: dict[str, str],
                                                    cli: Cli) -> None:
    repo = open_repo(repo_dir)
    history = History(repo)
    shas = git("rev-list", "--all", cwd=repo_dir).split()
    assert history.commits() == shas
    expected = set()
    for sha in shas:
        for target, blob in git_pointers(repo_dir, sha).items():
            expected.add(f"{target}@{git_pointer_id(repo_dir, blob)[:12]}")
    assert set(history.all_commits()) == expected
    # paths select across history, even where some commits lack them
    assert {k.split("@")[0] for k in history.all_commits(["model.bin"])} == {"model.bin"}
    assert len(history.all_commits(["model.bin"])) == 2
    with pytest.raises(NotTrackedError, match="in any commit"):
        history.all_commits(["nothing"])
    # the work tree's pointers join with workspace=True
    write(repo_dir / "new.txt", "n")
    cli("add", "new.txt")
    assert set(history.all_commits(workspace=True)) - expected == {
        f"new.txt@{history.workspace()['new.txt'].id[:12]}"}


def test_push_all_commits_of_a_path_missing_from_old_commits(repo_dir: Path, branchy: dict[str, str],
                                                            cli: Cli, tmp_path: Path) -> None:
    cli("remote", "add", "origin", str(tmp_path / "remote"), "--default")
    out = cli("push", "--all-commits", "model.bin").output  # c4 and others lack it
    assert "error" not in out
    shutil.rmtree(repo_dir / ".dvx" / "store")
    cli("fetch", "--all-commits", "model.bin")
    repo = open_repo(repo_dir)
    for p in history_of(repo).all_commits(["model.bin"]).values():
        assert repo.store.contains(p.oid)


# -- refused and malformed pointers in history ------------------------------------------


@pytest.fixture
def hostile(repo_dir: Path, cli: Cli) -> dict[str, str]:
    """c1: data; c2: adds ``..dvx``, ``sub/...dvx`` (copies of a good pointer) and a
    malformed ``broken.dvx``; c3: removes them again."""
    write(repo_dir / "data" / "a.txt", "a1")
    cli("add", "data")
    shas = {"c1": commit(repo_dir, "c1")}
    write(repo_dir / "model.bin", "m")
    cli("add", "model.bin")
    (repo_dir / "sub").mkdir()
    shutil.copy(repo_dir / "data.dvx", repo_dir / "..dvx")
    shutil.copy(repo_dir / "data.dvx", repo_dir / "sub" / "...dvx")
    write(repo_dir / "broken.dvx", "dvx: 1\nkind: nonsense\n")
    shas["c2"] = commit(repo_dir, "c2")
    for name in ("..dvx", "sub/...dvx", "broken.dvx"):
        os.unlink(repo_dir / name)
    shas["c3"] = commit(repo_dir, "c3")
    return shas


def test_refused_names_in_an_old_commit(repo_dir: Path, hostile: dict[str, str], cli: Cli) -> None:
    repo = open_repo(repo_dir)
    history = History(repo)
    c2 = hostile["c2"]
    assert set(git_pointers(repo_dir, c2)) == {".", "sub/..", "broken", "data", "model.bin"}
    with pytest.raises(PointerError, match="is refused|not a valid"):
        history.at(c2)
    bad: dict = {}
    assert set(history.at(c2, bad=bad)) == {"data", "model.bin"}
    assert set(bad) == {".", "sub/..", "broken"}
    assert f"{c2}:..dvx is refused" in str(bad["."])
    with pytest.raises(PointerError, match="is refused"):
        history.pointer_at(c2, ".")
    # all commits: the rest is returned, each bad one named once with its commit
    bad = {}
    found = history.all_commits(bad=bad)
    assert {k.split("@")[0] for k in found} == {"data", "model.bin"}
    assert set(bad) == {f"{c2[:12]}:.", f"{c2[:12]}:sub/..", f"{c2[:12]}:broken"}
    with pytest.raises(PointerError):
        history.all_commits()
    # gc's view: names are not checked (their data stays protected), broken ones skipped
    assert {k.split("@")[0] for k in history.all_commits(bad={}, check_names=False)} == {
        "data", "model.bin", ".", "sub/.."}
    # versions: refused names skipped (and recorded), the malformed one shown without data
    bad = {}
    versions = list(history.versions(bad=bad))
    assert {(v.commit, v.target) for v in versions} == {
        (hostile["c1"], "data"), (c2, "model.bin"), (c2, "broken"), (hostile["c3"], "broken")}
    assert set(bad) == {f"{c2[:12]}:.", f"{c2[:12]}:sub/..", f"{hostile['c3'][:12]}:.",
                        f"{hostile['c3'][:12]}:sub/.."}
    broken = next(v for v in versions if v.target == "broken" and v.change == "added")
    assert broken.pointer is None and isinstance(broken.error, PointerError)
    with pytest.raises(PointerError):
        list(history.versions())
    # the CLI: log and push --all-commits do the rest
    assert {e["path"] for e in json.loads(cli("log", "--json").output)} == {"data", "model.bin", "broken"}
    cli("remote", "add", "origin", str(repo_dir.parent / "remote"), "--default")
    res = cli("push", "--all-commits", ok=False)
    assert f"{c2[:12]}:..dvx is refused" in res.output and "uploaded" in res.output


def test_gc_and_hooks_leave_refused_names_alone(repo_dir: Path, hostile: dict[str, str], cli: Cli) -> None:
    # switching from c2 (where ..dvx exists) to c3 must not treat "." as vanished data
    sentinel = write(repo_dir / "keep.txt", "keep")
    cli("hooks", "install")
    git("checkout", "-q", hostile["c2"], cwd=repo_dir)
    git("checkout", "-q", "main", cwd=repo_dir)
    assert sentinel.read_text() == "keep" and (repo_dir / "data" / "a.txt").read_text() == "a1"
    cli("gc", "--yes", "--grace", "0")
    cli("checkout", "--rev", hostile["c1"], "--force")


# -- reflog, subdirectory roots ----------------------------------------------------------


def test_reflog_only_commits(repo_dir: Path, cli: Cli) -> None:
    write(repo_dir / "d.txt", "1")
    cli("add", "d.txt")
    commit(repo_dir, "one")
    write(repo_dir / "d.txt", "2")
    cli("add", "d.txt")
    lost = commit(repo_dir, "two")
    git("reset", "-q", "--hard", "HEAD~1", cwd=repo_dir)
    history = History(open_repo(repo_dir))
    assert lost not in history.commits()
    with_reflog = history.commits(reflog_days=90)
    assert set(with_reflog) == set(git("rev-list", "--all", "--reflog", cwd=repo_dir).split())
    assert lost in with_reflog
    lost_id = history.at(lost)["d.txt"].id
    assert f"d.txt@{lost_id[:12]}" in history.all_commits(commits=with_reflog)
    assert f"d.txt@{lost_id[:12]}" not in history.all_commits()


def test_dvx_root_in_a_subdirectory_of_the_git_repository(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                          cli: Cli) -> None:
    from dvx.ops.init import init as dvx_init

    top = tmp_path / "top"
    top.mkdir()
    git("init", "-q", "-b", "main", str(top), cwd=tmp_path)
    root = top / "proj"
    root.mkdir()
    dvx_init(str(root))
    write(top / "outside.dvx", "not ours")  # outside the DVX root: never a pointer of it
    monkeypatch.chdir(root)
    write(root / "d" / "f.txt", "1")
    cli("add", "d")
    c1 = commit(top, "one")
    write(root / "d" / "f.txt", "2")
    write(root / "e.txt", "e")
    cli("add", "d", "e.txt")
    commit(top, "two")
    history = History(open_repo(root))
    assert history.git.prefix == "proj"
    assert set(history.at("HEAD")) == set(git_pointers(top, "HEAD", "proj")) == {"d", "e.txt"}
    assert set(history.at(c1)) == {"d"}
    assert [v.change for v in history.versions("d")] == ["modified", "added"]
    assert [(v.target, v.change) for v in history.versions()] == [
        ("d", "modified"), ("e.txt", "added"), ("d", "added")]
    assert {k.split("@")[0] for k in history.all_commits()} == {"d", "e.txt"}
    assert history.pointer_at("HEAD", "e.txt") == history.workspace()["e.txt"]


# -- one pointer, quickly; caches; fork ----------------------------------------------------


def test_pointer_at_and_locate(repo_dir: Path, cli: Cli) -> None:
    write(repo_dir / "data" / "deep" / "a.txt", "a1")
    write(repo_dir / "m.bin", "m")
    cli("add", "data", "m.bin")
    commit(repo_dir, "one")
    write(repo_dir / "data" / "deep" / "a.txt", "a2")
    cli("add", "data")
    repo = open_repo(repo_dir)
    history = history_of(repo)
    assert history_of(repo) is history
    head = history.at("HEAD")
    assert history.pointer_at("HEAD", "data") == head["data"]
    assert history.pointer_at(None, "data") == history.workspace()["data"] != head["data"]
    assert history.pointer_at("HEAD", "nothing") is None and history.pointer_at(None, "nothing") is None
    assert history.locate("HEAD", "data/deep/a.txt") == ("data", head["data"])
    assert history.locate("HEAD", "m.bin") == ("m.bin", head["m.bin"])
    assert history.locate("HEAD", "m.bin/x") is None and history.locate("HEAD", "nope/x") is None
    with pytest.raises(PointerError, match="is refused"):
        history.pointer_at("HEAD", "../x")
    history.pointer_at("HEAD", "data")  # warm
    best = float("inf")
    for _ in range(200):
        t = time.perf_counter()
        history.pointer_at("HEAD", "data")
        best = min(best, time.perf_counter() - t)
    assert best < 0.002, f"warm pointer_at took {best * 1000:.2f} ms"


def test_walking_all_history_reads_each_tree_and_pointer_once(repo_dir: Path, cli: Cli,
                                                               monkeypatch: pytest.MonkeyPatch) -> None:
    from dvx.gitio import GitRepo

    for d in range(5):
        write(repo_dir / "sets" / f"d{d}" / "f.txt", str(d))  # sets/: a tree shared by all commits
        cli("add", f"sets/d{d}")
    commit(repo_dir, "data")
    for i in range(40):  # code-only commits: no new pointer blob, few new trees
        write(repo_dir / "code" / "x.py", str(i))
        commit(repo_dir, f"code {i}")
    reads: list[bytes] = []
    real = GitRepo.read_blob
    monkeypatch.setattr(GitRepo, "read_blob", lambda self, blob: reads.append(blob) or real(self, blob))
    listed: list[bytes] = []
    real_entries = GitRepo.tree_entries
    monkeypatch.setattr(GitRepo, "tree_entries",
                        lambda self, tree: listed.append(tree) or real_entries(self, tree))
    history = History(open_repo(repo_dir))
    assert len(history.all_commits()) == 5
    assert sorted(reads) == sorted(set(reads)) and len(reads) == 5
    kinds = git("cat-file", "--batch-all-objects", "--batch-check=%(objecttype)", cwd=repo_dir).split()
    assert len(listed) == len(set(listed)) <= kinds.count("tree")  # each distinct tree once
    reads.clear()
    assert len(list(history.versions())) == 5 and reads == []  # parsed once, kept by blob id


def test_history_works_in_a_forked_child(repo_dir: Path, cli: Cli) -> None:
    """Even when another thread held the history's lock at the fork (DataLoader workers
    fork a process whose other threads may be reading)."""
    import threading

    write(repo_dir / "d.txt", "1")
    cli("add", "d.txt")
    commit(repo_dir, "one")
    history = history_of(open_repo(repo_dir))
    expected = history.at("HEAD")["d.txt"].id
    held, release = threading.Event(), threading.Event()

    def hold() -> None:
        with history._lock:
            held.set()
            release.wait(30)

    thread = threading.Thread(target=hold)
    thread.start()
    held.wait(10)
    r, w = os.pipe()
    pid = os.fork()
    if pid == 0:  # pragma: no cover - the child
        try:
            os.close(r)
            os.write(w, history.at("HEAD")["d.txt"].id.encode())
        finally:
            os._exit(0)
    release.set()
    thread.join()
    os.close(w)
    deadline = time.monotonic() + 20
    while os.waitpid(pid, os.WNOHANG) == (0, 0):
        if time.monotonic() > deadline:
            os.kill(pid, 9)
            os.waitpid(pid, 0)
            pytest.fail("the forked child hung")
        time.sleep(0.05)
    with os.fdopen(r, "rb") as f:
        assert f.read().decode() == expected


def test_history_of_does_not_keep_a_repository_alive(repo_dir: Path) -> None:
    import gc
    import weakref

    repo = open_repo(repo_dir)
    history_of(repo).workspace()
    ref = weakref.ref(repo)
    del repo
    gc.collect()
    assert ref() is None
