"""Hostile pointer names and the deletes they could lead (issue #8, defect 1).

A pointer file's name comes from git, so possibly from an attacker: ``..dvx`` names the
tracked path ``.`` (the repository), ``...dvx`` names ``..`` (its parent). No command
may read, write or delete through such a name, and each must say which file is bad.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.conftest import Cli, git, run_dvx, write


def _snapshot(root: Path) -> dict[str, bytes]:
    """Every regular file below ``root`` (including .git and .dvx) -> its bytes."""
    out: dict[str, bytes] = {}
    for dirpath, _dirs, files in os.walk(root):
        for f in files:
            p = Path(dirpath) / f
            if not p.is_symlink():
                out[str(p.relative_to(root))] = p.read_bytes()
    return out


@pytest.fixture
def tracked_repo(repo_dir: Path, cli: Cli) -> Path:
    write(repo_dir / "code.py", "print('unsaved work')\n")
    write(repo_dir / "data" / "a.txt", "a" * 100)
    write(repo_dir / "model.bin", b"\x01" * 5000)
    cli("add", "data", "model.bin")
    git("add", "-A", cwd=repo_dir)
    git("commit", "-qm", "base", cwd=repo_dir)
    return repo_dir


@pytest.mark.parametrize("name", ["..dvx", "...dvx", "sub/...dvx", "sub/..dvx", ".git.dvx",
                                  "sub/.git.dvx", ".dvx.dvx", ".GIT.dvx"])
def test_hostile_pointer_name_never_deletes(tracked_repo: Path, cli: Cli, name: str) -> None:
    parent_sentinel = write(tracked_repo.parent / "sentinel.txt", "keep me")
    (tracked_repo / "sub").mkdir(exist_ok=True)
    write(tracked_repo / "sub" / "notes.txt", "sub work")
    shutil.copy(tracked_repo / "data.dvx", tracked_repo / name)
    before = _snapshot(tracked_repo)

    for args in (["checkout", "--force"], ["checkout"], ["status"], ["ls"], ["diff"],
                 ["commit", "-m", "x"], ["gc", "--yes", "--grace", "0"]):
        res = cli(*args, ok=None)
        if args[0] in ("checkout", "status", "ls", "diff", "commit"):
            assert res.exit_code == 1, f"dvx {' '.join(args)} accepted {name}: {res.output}"
            assert f"error: {name} is refused" in res.output, res.output
        assert "../" not in res.output.replace(f"{name}", "")  # nothing outside is listed

    assert parent_sentinel.read_text() == "keep me"
    after = _snapshot(tracked_repo)
    for path, data in before.items():
        if path.startswith((".git/", ".dvx/")) and not path.startswith((".git/objects/", ".git/HEAD")):
            continue  # git/DVX bookkeeping (index, refs, caches) may change; never the code
        assert after.get(path) == data, f"{path} changed or vanished"
    assert (tracked_repo / "code.py").read_text() == "print('unsaved work')\n"
    assert git("rev-parse", "HEAD", cwd=tracked_repo)  # the repository is intact
    subprocess.run(["git", "fsck", "--strict"], cwd=tracked_repo, check=True, capture_output=True)


def test_good_paths_still_work_beside_a_hostile_pointer(tracked_repo: Path, cli: Cli) -> None:
    shutil.copy(tracked_repo / "data.dvx", tracked_repo / "..dvx")
    shutil.rmtree(tracked_repo / "data")
    res = cli("checkout", ok=False)
    assert (tracked_repo / "data" / "a.txt").read_text() == "a" * 100  # the rest is done
    assert "error: ..dvx is refused" in res.output
    entries = json.loads(cli("ls", "--json", ok=False).stdout)
    assert [e["path"] for e in entries] == ["data", "model.bin"]
    st = json.loads(cli("status", "--json", ok=False).stdout)
    assert {p["path"]: p["state"] for p in st["paths"]} == {
        ".": "broken-pointer", "data": "clean", "model.bin": "clean"}


def test_attack_through_git_clone_and_pull(tmp_path: Path, tracked_repo: Path, cli: Cli) -> None:
    """An attacker commits ``..dvx`` with plain git; a victim clones and pulls --force."""
    remote = tmp_path / "remote"
    cli("remote", "add", "origin", str(remote), "--default")
    cli("push")
    shutil.copy(tracked_repo / "data.dvx", tracked_repo / "..dvx")
    shutil.copy(tracked_repo / "data.dvx", tracked_repo / "...dvx")
    git("add", "-A", cwd=tracked_repo)
    git("commit", "-qm", "innocent", cwd=tracked_repo)

    victim = tmp_path / "victim"
    git("clone", "-q", str(tracked_repo), str(victim), cwd=tmp_path)
    write(victim / "wip.py", "uncommitted work\n")
    write(tmp_path / "outside.txt", "beside the clone")
    res = run_dvx("pull", "--force", cwd=victim, check=False)
    assert res.returncode == 1
    assert "..dvx is refused" in res.stderr and "...dvx is refused" in res.stderr
    assert (victim / "wip.py").read_text() == "uncommitted work\n"
    assert (victim / ".git" / "HEAD").exists() and (victim / ".dvx" / "config").exists()
    assert (tmp_path / "outside.txt").read_text() == "beside the clone"
    assert (victim / "data" / "a.txt").read_text() == "a" * 100  # good data still arrives
    res = run_dvx("checkout", "--force", "--rev", "HEAD", cwd=victim, check=False)
    assert res.returncode == 1 and "HEAD:..dvx is refused" in res.stderr
    assert (victim / "wip.py").exists()


def test_pointer_behind_a_symlink_is_refused(tmp_path: Path, tracked_repo: Path, cli: Cli) -> None:
    """A committed symlink ``ext -> /outside`` plus a pointer ``ext/data.dvx``: checkout of
    that revision must not write (or delete) through the link."""
    outside = tmp_path / "outside"
    write(outside / "data" / "precious.txt", "not yours")
    os.symlink(outside, tracked_repo / "ext")
    git("add", "ext", cwd=tracked_repo)
    # a tree holding both the link and a pointer below it, built with git plumbing
    blob = subprocess.run(["git", "hash-object", "-w", "data.dvx"], cwd=tracked_repo, check=True,
                          capture_output=True, text=True).stdout.strip()
    git("update-index", "--add", "--cacheinfo", f"100644,{blob},ext2/data.dvx", cwd=tracked_repo)
    git("commit", "-qm", "link", cwd=tracked_repo)
    os.symlink(outside, tracked_repo / "ext2")  # as a checkout of another commit could leave it
    res = cli("checkout", "--force", "--rev", "HEAD", ok=False)
    assert "ext2 is a symbolic link" in res.output
    assert (outside / "data" / "precious.txt").read_text() == "not yours"
    assert sorted(p.name for p in (outside / "data").iterdir()) == ["precious.txt"]


def test_checkout_never_replaces_a_file_above_a_tracked_path(tracked_repo: Path, cli: Cli) -> None:
    write(tracked_repo / "deep" / "x" / "f.bin", b"f" * 10)
    cli("add", "deep/x")
    git("add", "-A", cwd=tracked_repo)
    git("commit", "-qm", "deep", cwd=tracked_repo)
    shutil.rmtree(tracked_repo / "deep")
    write(tracked_repo / "deep", "a user's file where a directory was")
    res = cli("checkout", "--force", "--rev", "HEAD", ok=False)
    assert "deep" in res.output
    assert (tracked_repo / "deep").read_text() == "a user's file where a directory was"


_parts = st.sampled_from(["", ".", "..", "...", "a", "b.c", ".git", ".Git", ".dvx", "x\ny", " ", "é"])


@given(st.lists(_parts, min_size=1, max_size=4))
def test_target_rule_property(parts: list[str]) -> None:
    from dvx.pointer import target_problem

    target = "/".join(parts)
    bad = (any(p in ("", ".", "..") or p.lower() in (".git", ".dvx") for p in parts)
           or "\n" in target)
    assert (target_problem(target) is not None) == bad


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(names=st.lists(st.lists(st.sampled_from(["", ".", "..", "...", "a", "d", ".git"]), min_size=1,
                               max_size=3), min_size=1, max_size=3))
def test_fuzzed_pointer_names_never_touch_anything_else(tmp_path_factory: pytest.TempPathFactory,
                                                        names: list[list[str]]) -> None:
    """Pointer files at arbitrary (creatable) names, then checkout --force: every file
    outside the safe tracked paths keeps its bytes."""
    from dvx.ops.checkout import checkout
    from dvx.ops.init import init as dvx_init
    from dvx.pointer import target_problem
    from dvx.repo import Repository

    top = tmp_path_factory.mktemp("fuzz")
    root = top / "repo"
    root.mkdir()
    subprocess.run(["git", "init", "-q", str(root)], check=True)
    dvx_init(str(root))
    write(top / "outside.txt", "outside")
    write(root / "code.py", "code")
    write(root / "src.bin", b"s" * 300)
    from dvx.ops.add import add

    repo = Repository(str(root))
    add(repo, [str(root / "src.bin")])
    pointer = (root / "src.bin.dvx").read_bytes()
    for parts in names:
        rel = "/".join(parts) + ".dvx"
        path = os.path.normpath(root / rel)
        if not path.startswith(str(root) + os.sep) or os.path.isdir(path):
            continue
        try:
            os.makedirs(os.path.dirname(path), exist_ok=True)
            Path(path).write_bytes(pointer)
        except OSError:
            continue
    before = {k: v for k, v in _snapshot(top).items() if not k.startswith("repo/.dvx/")}
    checkout(Repository(str(root)), force=True)
    after = _snapshot(top)
    def inside_a_safe_target(path: str) -> bool:  # what --force may legitimately replace
        if not path.startswith("repo/"):
            return False
        parts = path[5:].split("/")
        for i in range(1, len(parts) + 1):
            target = "/".join(parts[:i])
            if target_problem(target) is None and os.path.isfile(root / (target + ".dvx")):
                return True
        return False

    for path, data in before.items():
        if path.endswith(".gitignore") and after.get(path, b"").startswith(data):
            # checkout may add the ignore line of a safe target beside it, nothing else
            parent = path[5:].rpartition("/")[0]
            for line in after[path][len(data):].decode().splitlines():
                target = (parent + "/" if parent else "") + line.lstrip("/")
                assert inside_a_safe_target("repo/" + target), f"{path} gained {line!r}"
            continue
        if not inside_a_safe_target(path):
            assert after.get(path) == data, f"{path} was changed through a hostile pointer"


# -- defect 4: a newline in a tracked name --------------------------------------------

def test_newline_in_a_top_level_name_is_refused(repo_dir: Path, cli: Cli) -> None:
    write(repo_dir / "top\nnl.bin", "x")
    res = cli("add", "top\nnl.bin", ok=False)
    error, hint = res.output.strip().splitlines()
    assert error.startswith("error: ") and "cannot hold a newline" in error
    assert hint == "hint: rename it, or track the directory that holds it"
    assert not (repo_dir / ".gitignore").exists()
    assert not (repo_dir / "top\nnl.bin.dvx").exists()
    # inside a tracked directory such a name needs no ignore line: it is fine
    write(repo_dir / "d" / "in\nside.bin", "y")
    cli("add", "d")
    assert (repo_dir / ".gitignore").read_text() == "/d\n"


# -- defect 5: add always repairs the ignore line ---------------------------------------

def test_add_repairs_the_ignore_line_of_unchanged_data(repo_dir: Path, cli: Cli) -> None:
    write(repo_dir / "data" / "f.txt", "f")
    cli("add", "data")
    os.rename(repo_dir / "data", repo_dir / "data2")
    os.rename(repo_dir / "data.dvx", repo_dir / "data2.dvx")
    os.utime(repo_dir / "data2" / "f.txt", (1e9, 1e9))  # old data: its stat is cached
    cli("status")
    res = cli("add", "data2")
    assert "/data2" in (repo_dir / ".gitignore").read_text().splitlines()
    assert "unchanged data2" in res.output
    (repo_dir / ".gitignore").write_text("")  # the user deleted the line
    cli("add", "data2")
    assert (repo_dir / ".gitignore").read_text() == "/data2\n"
    write(repo_dir / "one.bin", "1")
    os.utime(repo_dir / "one.bin", (1e9, 1e9))
    cli("add", "one.bin")
    (repo_dir / ".gitignore").write_text("")
    cli("add", "one.bin", "data2")
    assert sorted((repo_dir / ".gitignore").read_text().splitlines()) == ["/data2", "/one.bin"]
    status = git("status", "--porcelain", "-uall", cwd=repo_dir)
    assert "data2/" not in status and "?? one.bin\n" not in status


# -- defect 6: long names inside a tracked directory ----------------------------------

def test_names_up_to_name_max_check_out(repo_dir: Path, cli: Cli) -> None:
    names = ["a" * 255, "b" * 238, "é" * 127]  # 255, 238 and 254 bytes
    for i, n in enumerate(names):
        write(repo_dir / "d" / n, f"content {i}")
    cli("add", "d")
    shutil.rmtree(repo_dir / "d")
    cli("checkout")
    for i, n in enumerate(names):
        assert (repo_dir / "d" / n).read_text() == f"content {i}"
    long_top = "t" * 251  # + ".dvx" = 255 bytes
    write(repo_dir / long_top, "top")
    cli("add", long_top)
    (repo_dir / long_top).unlink()
    cli("checkout", long_top)
    assert (repo_dir / long_top).read_text() == "top"
    write(repo_dir / ("u" * 252), "too long for a pointer")
    res = cli("add", "u" * 252, ok=False)
    assert "too long for its pointer file" in res.output


def test_unsaved_data_in_the_way_stops_everything_first(repo_dir: Path, cli: Cli) -> None:
    for n in ("a.txt", "b", "c.txt"):
        write(repo_dir / "d" / n / "x" if n == "b" else repo_dir / "d" / n, n)
    cli("add", "d")
    shutil.rmtree(repo_dir / "d")
    (repo_dir / "d").mkdir()
    write(repo_dir / "d" / "b", "a user's file where the tree has a directory")
    res = cli("checkout", ok=False)  # a conflict: unsaved data in the way, nothing changes
    assert "unsaved" in res.output and not (repo_dir / "d" / "a.txt").exists()


# -- defect 7: a second checkout does nothing -----------------------------------------

def test_second_checkout_rewrites_nothing(repo_dir: Path, cli: Cli) -> None:
    write(repo_dir / "big.bin", os.urandom(3 << 20))
    write(repo_dir / "d" / "f1", "1")
    write(repo_dir / "d" / "sub" / "f2", "2")
    cli("add", "big.bin", "d")
    (repo_dir / "big.bin").unlink()
    shutil.rmtree(repo_dir / "d")
    first = cli("checkout")
    assert "big.bin: 1 restored" in first.output and "d: 2 restored" in first.output
    inodes = {p: os.stat(repo_dir / p).st_ino for p in ("big.bin", "d/f1", "d/sub/f2")}
    second = cli("checkout")  # no `dvx status` in between
    assert second.output.strip() == "data already matches the pointers"
    assert {p: os.stat(repo_dir / p).st_ino for p in inodes} == inodes
    # and the cache still notices a real edit afterwards
    write(repo_dir / "d" / "f1", "edited")
    assert "modified: d" in cli("status").output


# -- missing small files are written whole, straight into place (O_TMPFILE + linkat) ---

def test_missing_files_are_restored_whole_in_place(repo_dir: Path, cli: Cli) -> None:
    """Small files that are missing are written as unnamed files linked into place;
    large ones and those that replace a file go through .dvx/tmp/checkout. Either way
    the content, the exec bit and the stat cache come out right, nothing is left
    behind, and a second checkout rewrites nothing."""
    from dvx.statcache import StatCache

    old_umask = os.umask(0o022)
    try:
        write(repo_dir / "d" / "small.txt", "small\n")
        write(repo_dir / "d" / "tool.sh", "#!/bin/sh\necho hi\n")
        os.chmod(repo_dir / "d" / "tool.sh", 0o755)
        write(repo_dir / "d" / "sub" / "was_a_dir.txt", "replaced a directory\n")
        write(repo_dir / "d" / "edited.txt", "saved version\n")
        write(repo_dir / "d" / "big.bin", os.urandom((1 << 20) + 5))
        write(repo_dir / "single.txt", "a tracked file\n")
        cli("add", "d", "single.txt")
        wanted = {p: (repo_dir / p).read_bytes() for p in ("d/small.txt", "d/tool.sh", "d/sub/was_a_dir.txt",
                                                           "d/edited.txt", "d/big.bin", "single.txt")}
        for p in ("d/small.txt", "d/tool.sh", "d/big.bin", "single.txt"):
            (repo_dir / p).unlink()
        (repo_dir / "d" / "sub" / "was_a_dir.txt").unlink()
        (repo_dir / "d" / "sub" / "was_a_dir.txt").mkdir()  # an empty directory in the way
        write(repo_dir / "d" / "edited.txt", "an edit to discard\n")  # replaced (renamed over)
        res = json.loads(cli("checkout", "--force", "--json").output)
        restored = sorted(r for x in res["paths"] for r in x["restored"])
        assert restored == ["big.bin", "edited.txt", "single.txt", "small.txt", "sub/was_a_dir.txt", "tool.sh"]
        for p, content in wanted.items():
            assert (repo_dir / p).read_bytes() == content, p
        assert os.stat(repo_dir / "d" / "tool.sh").st_mode & 0o777 == 0o755
        assert os.stat(repo_dir / "d" / "small.txt").st_mode & 0o777 == 0o644
        assert os.stat(repo_dir / "single.txt").st_mode & 0o777 == 0o644
        assert list((repo_dir / ".dvx" / "tmp" / "checkout").iterdir()) == []
        assert not [p for p in repo_dir.rglob("*") if p.name.endswith(".tmp")]
        # the stats checkout recorded are the files' own: trusted, nothing re-hashed
        rec = StatCache(str(repo_dir / ".dvx" / "state")).load_tree("d")
        assert rec.root_id is not None and all(d.trusted for d in rec.dirs.values())
        inodes = {p: os.stat(repo_dir / p).st_ino for p in wanted}
        assert cli("checkout").output.strip() == "data already matches the pointers"
        assert {p: os.stat(repo_dir / p).st_ino for p in wanted} == inodes
        assert "up to date" in cli("status").output
    finally:
        os.umask(old_umask)


@pytest.mark.parametrize("impl", ["c", "python"])
def test_new_file_writer_never_replaces_an_existing_name(repo_dir: Path, impl: str) -> None:
    """The unnamed-file writer only ever adds a name: where something appeared at the
    name meanwhile (a file, a link) it reports EEXIST (checkout then uses its usual
    path) and leaves that thing and the directory as they were. The C version and the
    Python reference agree."""
    import errno

    from dvx import workspace

    write_new = workspace.write_new_files if impl == "c" else workspace.write_new_files_reference
    if impl == "c":
        from dvx._scan import write_new_files  # type: ignore[import-not-found]

        assert write_new is write_new_files  # the extension is built
    write(repo_dir / "f.txt", "appeared meanwhile\n")
    os.symlink("elsewhere", repo_dir / "link")
    before = sorted(os.listdir(repo_dir))
    dfd = os.open(repo_dir, os.O_RDONLY | os.O_DIRECTORY)
    old_umask = os.umask(0o022)
    try:
        got = write_new([(dfd, b"f.txt", b"stored content\n", False), (dfd, b"link", b"x", False),
                         (dfd, b"new.txt", b"stored content\n", True), (dfd, b"plain", b"", False)], 2)
    finally:
        os.umask(old_umask)
        os.close(dfd)
    assert got[:2] == [errno.EEXIST, errno.EEXIST]
    assert (repo_dir / "f.txt").read_text() == "appeared meanwhile\n"
    assert os.readlink(repo_dir / "link") == "elsewhere" and not (repo_dir / "elsewhere").exists()
    assert sorted(os.listdir(repo_dir)) == sorted(before + ["new.txt", "plain"])
    assert (repo_dir / "new.txt").read_text() == "stored content\n" and (repo_dir / "plain").read_bytes() == b""
    for name, key in (("new.txt", got[2]), ("plain", got[3])):
        s = os.lstat(repo_dir / name)
        assert key == (s.st_ino, s.st_size, s.st_mtime_ns, s.st_ctime_ns, 1 if s.st_mode & 0o100 else 0)
    assert os.stat(repo_dir / "new.txt").st_mode & 0o777 == 0o755
    assert os.stat(repo_dir / "plain").st_mode & 0o777 == 0o644


# -- defect 8: a killed checkout leaves nothing in the work tree ----------------------

def test_killed_checkout_leaves_no_temp_file_in_the_work_tree(repo_dir: Path, cli: Cli) -> None:
    import signal
    import sys
    import time

    git("add", "-A", cwd=repo_dir)
    git("commit", "-qm", "init", cwd=repo_dir)
    write(repo_dir / "big.bin", os.urandom(64 << 20))
    cli("add", "big.bin")
    git("add", "-A", cwd=repo_dir)
    git("commit", "-qm", "data", cwd=repo_dir)
    tmp_dir = repo_dir / ".dvx" / "tmp" / "checkout"
    killed = False
    for _attempt in range(5):
        (repo_dir / "big.bin").unlink()
        proc = subprocess.Popen([sys.executable, "-m", "dvx", "checkout"], cwd=repo_dir,
                                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline and proc.poll() is None:
            if tmp_dir.is_dir() and any(p.stat().st_size > 0 for p in tmp_dir.iterdir()):
                proc.send_signal(signal.SIGKILL)
                killed = True
                break
            time.sleep(0.001)
        proc.wait()
        if killed:
            break
        cli("checkout")  # it finished first; try again
    assert killed, "could not catch checkout while it was writing"
    assert git("status", "--porcelain", "--ignored=no", "-uall", cwd=repo_dir) == ""
    assert not [p for p in repo_dir.iterdir() if p.name.endswith(".tmp")]
    assert "temporary file(s) of an interrupted checkout" in cli("status").output
    assert "temporary file(s) of an interrupted checkout" in cli("fsck").output
    cli("checkout")
    assert list(tmp_dir.iterdir()) == []
    assert "interrupted checkout" not in cli("status").output
    assert (repo_dir / "big.bin").stat().st_size == 64 << 20


def test_push_and_fetch_skip_a_hostile_pointer_and_do_the_rest(tmp_path: Path, tracked_repo: Path,
                                                               cli: Cli) -> None:
    cli("remote", "add", "origin", str(tmp_path / "remote"), "--default")
    shutil.copy(tracked_repo / "model.bin.dvx", tracked_repo / "..dvx")
    res = cli("push", ok=False)
    assert "error: ..dvx is refused" in res.output and "uploaded" in res.output
    shutil.rmtree(tracked_repo / ".dvx" / "store")
    res = cli("fetch", ok=False)
    assert "error: ..dvx is refused" in res.output and "downloaded" in res.output
    os.unlink(tracked_repo / "..dvx")
    shutil.rmtree(tracked_repo / "data")
    cli("checkout")
    assert (tracked_repo / "data" / "a.txt").read_text() == "a" * 100


def test_hooks_never_remove_data_through_a_committed_symlink(tmp_path: Path, repo_dir: Path,
                                                             cli: Cli) -> None:
    """Commit A has a pointer ``ext/data.bin.dvx``; commit B replaces the directory ``ext``
    by a symlink ``ext -> /outside``. Switching from A to B, the post-checkout hook's
    clean-up of vanished data must not delete /outside/data.bin through the link, even
    though its content is saved in the store."""
    payload = b"payload" * 100
    outside = tmp_path / "outside"
    write(outside / "data.bin", payload)
    write(repo_dir / "mine.bin", payload)
    cli("add", "mine.bin")
    git("add", "-A", cwd=repo_dir)
    git("commit", "-qm", "base", cwd=repo_dir)
    write(repo_dir / "ext" / "data.bin.dvx", (repo_dir / "mine.bin.dvx").read_bytes())
    git("add", "-A", cwd=repo_dir)
    git("commit", "-qm", "A", cwd=repo_dir)
    git("rm", "-rq", "ext", cwd=repo_dir)
    os.symlink(outside, repo_dir / "ext")
    git("add", "ext", cwd=repo_dir)
    git("commit", "-qm", "B: ext is a link", cwd=repo_dir)
    git("checkout", "-q", "HEAD~1", cwd=repo_dir)
    cli("hooks", "install")
    subprocess.run(["git", "checkout", "-q", "main"], cwd=repo_dir, capture_output=True, check=True)
    assert os.path.islink(repo_dir / "ext")
    assert (outside / "data.bin").read_bytes() == payload
    assert (repo_dir / "mine.bin").read_bytes() == payload


@pytest.mark.parametrize("kind", ["secret-link", "dev-zero", "directory"])
def test_a_hostile_gitignore_is_never_followed(tmp_path: Path, repo_dir: Path, cli: Cli, kind: str) -> None:
    """A committed ``.gitignore`` that is a symlink to a secret would be copied into the
    next commit; one to /dev/zero would hang add. Both are refused, nothing written."""
    secret = write(tmp_path / "credentials", "aws_secret_access_key = hunter2\n")
    gi = repo_dir / "sub" / ".gitignore"
    gi.parent.mkdir()
    if kind == "secret-link":
        os.symlink(secret, gi)
    elif kind == "dev-zero":
        os.symlink("/dev/zero", gi)
    else:
        gi.mkdir()
    write(repo_dir / "sub" / "new.bin", "x")
    res = cli("add", "sub/new.bin", ok=False)
    assert ".gitignore" in res.output and "error:" in res.output
    assert not (repo_dir / "sub" / "new.bin.dvx").exists()
    assert secret.read_text() == "aws_secret_access_key = hunter2\n"
    if kind != "directory":
        assert os.path.islink(gi)
    res = cli("commit", "-m", "x", ok=None)
    assert "hunter2" not in subprocess.run(["git", "log", "-p", "--all"], cwd=repo_dir,
                                           capture_output=True, text=True).stdout


@pytest.mark.parametrize("link", [".dvx", ".dvx/store"])
def test_a_linked_store_is_refused_so_gc_never_empties_another_project(
        tmp_path: Path, repo_dir: Path, cli: Cli, link: str) -> None:
    write(repo_dir / "m.bin", os.urandom(100_000))
    cli("add", "m.bin")
    git("add", "-A", cwd=repo_dir)
    git("commit", "-qm", "m", cwd=repo_dir)
    other = tmp_path / "other"
    other.mkdir()
    git("init", "-q", "-b", "main", cwd=other)
    if link == ".dvx":
        os.symlink(repo_dir / ".dvx", other / ".dvx")  # as a commit could carry it
    else:
        run_dvx("init", cwd=other)
        shutil.rmtree(other / ".dvx" / "store")
        os.symlink(repo_dir / ".dvx" / "store", other / ".dvx" / "store")
    res = run_dvx("gc", "--yes", "--grace", "0", cwd=other, check=False)
    assert res.returncode == 1 and "is a symbolic link" in res.stderr
    assert "ok" in cli("fsck").output  # the project that owns the store lost nothing


def test_gc_keeps_the_data_of_a_staged_pointer(repo_dir: Path, cli: Cli) -> None:
    write(repo_dir / "b", "b")
    git("add", "b", cwd=repo_dir)
    git("commit", "-qm", "b", cwd=repo_dir)
    write(repo_dir / "f", "v1-important" * 1000)
    cli("add", "f")
    git("add", "f.dvx", ".gitignore", cwd=repo_dir)  # v1 staged
    write(repo_dir / "f", "v2" * 1000)
    cli("add", "f")  # the work tree now names v2
    cli("gc", "--yes", "--grace", "0")
    git("commit", "-qm", "v1 staged", cwd=repo_dir)
    git("checkout", "HEAD", "--", "f.dvx", cwd=repo_dir)
    cli("checkout", "--force")
    assert (repo_dir / "f").read_text() == "v1-important" * 1000


@pytest.mark.parametrize("target", [".g\u200cit", ".git.", ".git ", "git~1", "GIT~1", ".git::$INDEX_ALLOCATION",
                                    "a\\..\\..\\x", ".dvx.", "sub/.Git../x", "d/.g\ufeffit"])
def test_names_other_file_systems_take_for_git_are_refused(target: str) -> None:
    """git's is_hfs_dotgit/is_ntfs_dotgit rules, on every platform: a repository
    cloned onto macOS or Windows must not have DVX write into .git there."""
    from dvx.pointer import target_problem

    assert target_problem(target) is not None


def test_checkout_adds_a_missing_ignore_line(tmp_path: Path, repo_dir: Path, cli: Cli) -> None:
    """A teammate committed d.dvx with plain git but not the .gitignore line: after
    pull/checkout the data must not show up as untracked in git status."""
    write(repo_dir / "d" / "f.bin", "data")
    cli("add", "d")
    (repo_dir / ".gitignore").unlink()
    git("add", "d.dvx", cwd=repo_dir)
    git("commit", "-qm", "pointer only", cwd=repo_dir)
    shutil.rmtree(repo_dir / "d")
    cli("checkout")
    assert (repo_dir / "d" / "f.bin").read_text() == "data"
    assert "d/" not in git("status", "--porcelain", "-uall", cwd=repo_dir)


def test_pointer_name_vectors() -> None:
    """protocols/vectors/pointer_names.json: what every reader accepts and refuses."""
    from dvx.pointer import target_problem
    from tests.conftest import VECTORS

    v = json.loads((VECTORS / "pointer_names.json").read_text(encoding="utf-8"))
    assert [t for t in v["accept"] if target_problem(t) is not None] == []
    assert [t for t in v["refuse"] if target_problem(t) is None] == []
