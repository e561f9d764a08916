"""Regressions from the safety issue (#8): what the user sees when something is off.

Real git repositories, real files, the real ``dvx`` program (``run_dvx`` runs it in a
subprocess where exit status, stderr and at-exit behaviour matter), a real small tmpfs
for a full disk, real pipes for a reader that goes away.
"""

from __future__ import annotations

import errno
import json
import os
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.conftest import run_dvx, write


@pytest.fixture
def small_fs(tmp_path: Path) -> Iterator[Path]:
    """A real 4 MiB tmpfs (needs root); skipped where it cannot be mounted."""
    mnt = tmp_path / "small"
    mnt.mkdir()
    r = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=4m", "tmpfs", str(mnt)],
                       capture_output=True)
    if r.returncode != 0:
        pytest.skip("cannot mount a small tmpfs here")
    try:
        yield mnt
    finally:
        subprocess.run(["umount", "-l", str(mnt)], check=False)


def fill_up(fs: Path) -> None:
    """Write a file until the file system has not one byte left."""
    with open(fs / "filler", "wb", buffering=0) as f:
        for step in (1 << 16, 4096, 1):
            try:
                while True:
                    f.write(b"\0" * step)
            except OSError as exc:
                assert exc.errno == errno.ENOSPC
    with pytest.raises(OSError):
        (fs / "probe").write_bytes(b"x")


def assert_clean_stderr(proc: subprocess.CompletedProcess[str]) -> None:
    assert "Traceback" not in proc.stderr and "Exception ignored" not in proc.stderr, proc.stderr


# -- defect 10: caches on a full disk -------------------------------------------------------

def test_full_disk_read_only_commands_work_and_exit_status_is_real(small_fs: Path, tmp_path: Path) -> None:
    repo = small_fs / "work"
    repo.mkdir()
    subprocess.run(["git", "init", "-q", "-b", "main", str(repo)], check=True)
    run_dvx("init", cwd=repo)
    write(repo / "data" / "a.txt", "alpha")
    write(repo / "data" / "b.txt", "beta")
    write(repo / "one.txt", "one")
    run_dvx("add", "data", "one.txt", cwd=repo)
    run_dvx("commit", "-m", "data", cwd=repo)
    run_dvx("remote", "add", "origin", str(tmp_path / "remote"), "--default", cwd=repo)
    run_dvx("push", cwd=repo)
    shutil.rmtree(repo / ".dvx" / "state")  # every cache must be written again...
    fill_up(small_fs)  # ...and cannot be
    status = run_dvx("status", cwd=repo, check=False)
    assert_clean_stderr(status)
    assert status.returncode == 0 and status.stderr == ""
    assert "data is up to date" in status.stdout
    for args in (["checkout"], ["ls"], ["fsck"], ["status", "--json"], ["diff"],
                 ["fsck", "--remote", "origin"], ["push"]):
        proc = run_dvx(*args, cwd=repo, check=False)
        assert_clean_stderr(proc)
        assert proc.returncode == 0 and proc.stderr == "", (args, proc.stderr)
    # a command that really fails says so once, with a non-zero status, and loses nothing
    before = (repo / "one.txt.dvx").read_bytes()
    write(repo / "one.txt", "one, changed")
    add = run_dvx("add", "one.txt", cwd=repo, check=False)
    assert_clean_stderr(add)
    assert add.returncode == 1
    assert add.stderr.splitlines() == [
        "error: cannot write to the DVX store: no space left on device",
        "hint: free some disk space and re-run; nothing was lost"]
    assert (repo / "one.txt.dvx").read_bytes() == before
    (small_fs / "filler").unlink()
    run_dvx("add", "one.txt", cwd=repo)
    assert "data is up to date" in run_dvx("status", cwd=repo).stdout
    assert os.listdir(repo / ".dvx" / "state")  # caches are written again once there is room


# -- a reader that goes away: `dvx ls | head` ------------------------------------------------

def test_closed_pipe_is_quiet_like_git(repo_dir: Path) -> None:
    for i in range(2500):  # far more output than a pipe holds (64 KiB)
        write(repo_dir / "d" / f"file-{i:05d}-{'x' * 60}.txt", str(i))
    run_dvx("add", "d", cwd=repo_dir)
    run_dvx("commit", "-m", "d", cwd=repo_dir)
    for p in (repo_dir / "d").iterdir():
        p.write_text("changed " + p.name)
    run_dvx("add", "d", cwd=repo_dir)
    for args in (["ls", "d"], ["ls", "d", "--json"], ["diff", "HEAD"], ["diff", "HEAD", "--json"]):
        proc = subprocess.Popen([sys.executable, "-m", "dvx", *args], cwd=repo_dir,
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        assert proc.stdout is not None and proc.stderr is not None
        first = proc.stdout.readline()
        proc.stdout.close()  # what `head -1` does after its line
        err = proc.stderr.read().decode()
        proc.stderr.close()
        code = proc.wait(timeout=60)
        assert first.strip(), args
        assert err == "", (args, err)
        assert code == 141, args  # what a shell reports for git killed by SIGPIPE


# -- names: a leading '-', control characters --------------------------------------------------

def test_dash_file_gets_a_hint_about_double_dash(repo_dir: Path) -> None:
    write(repo_dir / "-dash.bin", b"\x00\x01")
    bad = run_dvx("add", "-dash.bin", cwd=repo_dir, check=False)
    assert bad.returncode == 2
    assert bad.stderr.splitlines() == [
        "error: no such option -dash.bin",
        "hint: to add a file whose name starts with '-', use `dvx add -- -dash.bin`"]
    assert not (repo_dir / "-dash.bin.dvx").exists()
    run_dvx("add", "--", "-dash.bin", cwd=repo_dir)
    assert (repo_dir / "-dash.bin.dvx").exists()
    st = run_dvx("status", "-dash.bin", cwd=repo_dir, check=False)
    assert st.returncode == 2 and st.stderr == (
        "error: no such option -dash.bin\n"
        "hint: for a path whose name starts with '-', use `dvx status -- -dash.bin`\n")
    assert "up to date" in run_dvx("status", "--", "-dash.bin", cwd=repo_dir).stdout
    typo = run_dvx("add", "--forse", cwd=repo_dir, check=False)
    assert typo.returncode == 2 and typo.stderr == (
        "error: no such option --forse\n"
        "hint: see `dvx add --help`; a path that starts with '-' goes after `--`\n")


def test_ls_and_status_quote_odd_names_like_git(repo_dir: Path) -> None:
    names = ["plain.txt", "new\nline.txt", "tab\there", 'quo"te', "back\\slash", "bell\a",
             "été.csv"]
    for n in names:
        write(repo_dir / "d" / n, n)
    (repo_dir / "d" / "link").symlink_to("new\nline.txt")
    run_dvx("add", "d", cwd=repo_dir)
    lines = run_dvx("ls", "d", cwd=repo_dir).stdout.splitlines()
    assert len(lines) == len(names) + 1  # one line per entry, whatever the names
    for shown in ('d/plain.txt', '"d/new\\nline.txt"', '"d/tab\\there"', '"d/quo\\"te"',
                  '"d/back\\\\slash"', '"d/bell\\a"', "d/été.csv", 'd/link -> "new\\nline.txt"'):
        assert sum(line.endswith(" " + shown) for line in lines) == 1, (shown, lines)
    # --json keeps the names as they are
    listed = {e["path"] for e in json.loads(run_dvx("ls", "d", "--json", cwd=repo_dir).stdout)}
    assert {f"d/{n}" for n in names} <= listed
    (repo_dir / "d" / "new\nline.txt").write_text("changed")
    status = run_dvx("status", cwd=repo_dir).stdout
    assert '    modified: "d/new\\nline.txt"' in status.splitlines()


def test_quote_path_matches_git_c_style() -> None:
    from dvx.cli import quote_path

    assert quote_path("a/b c.txt") == "a/b c.txt"
    assert quote_path("日本語") == "日本語"
    assert quote_path("a\x01b\x7f") == '"a\\001b\\177"'
    assert quote_path("bad\udcff") == '"bad\\377"'  # a byte that is not UTF-8
    assert quote_path("\r\v\f\b") == '"\\r\\v\\f\\b"'


# -- fsck: pointers that contradict their data; many missing chunks -------------------------

def test_fsck_checks_pointer_fields_against_the_store(repo_dir: Path) -> None:
    write(repo_dir / "f.bin", b"ab")
    write(repo_dir / "d" / "x.txt", "x")
    write(repo_dir / "d" / "y.txt", "yy")
    run_dvx("add", "f.bin", "d", cwd=repo_dir)
    assert json.loads(run_dvx("fsck", "--json", cwd=repo_dir).stdout)["ok"]
    fp, dp = repo_dir / "f.bin.dvx", repo_dir / "d.dvx"
    good_f, good_d = fp.read_text(), dp.read_text()
    fp.write_text(good_f.replace("size: 2\n", "size: 999\n"))
    res = run_dvx("fsck", cwd=repo_dir, check=False)
    assert res.returncode == 1
    assert ("bad pointer f.bin.dvx: size: 999 but its file says 2; restore it with "
            "`git checkout -- f.bin.dvx` or delete it and run `dvx add f.bin`") in res.stdout
    # what the hint says works (a plain re-add of unchanged data keeps the pointer)
    fp.unlink()
    run_dvx("add", "f.bin", cwd=repo_dir)
    assert fp.read_text() == good_f
    b3 = next(line for line in good_f.splitlines() if line.startswith("b3: "))
    fp.write_text(good_f.replace(b3, "b3: " + "0" * 64))
    assert "b3: 0000000000000000000000000000000000000000000000000000000000000000 but its file says" \
        in run_dvx("fsck", cwd=repo_dir, check=False).stdout
    fp.write_text(good_f)
    dp.write_text(good_d.replace("files: 2\n", "files: 5\n").replace("size: 3\n", "size: 4\n"))
    report = json.loads(run_dvx("fsck", "--json", cwd=repo_dir, check=False).stdout)
    (prob,) = report["problems"]
    assert prob["what"] == "pointer" and prob["name"] == "d.dvx"
    assert prob["message"].startswith("size: 4 but its tree says 3; files: 5 but its tree says 2;")
    dp.write_text(good_d)
    assert json.loads(run_dvx("fsck", "--json", cwd=repo_dir).stdout)["ok"]


def _drop_chunks(repo: Path) -> None:
    """What a fetch killed after the manifests and trees arrived leaves: every chunk
    missing. The packs are rewritten without their chunks."""
    from dvx.hashing import KIND_CHUNK
    from dvx.repo import Repository
    from dvx.store.pack import read_footer

    r = Repository(str(repo))
    keep = []
    for name in r.store.pack_names():
        entries, _ = read_footer(r.store.pack_path(name))
        with open(r.store.pack_path(name), "rb") as f:
            for e in entries:
                if e.kind != KIND_CHUNK:
                    f.seek(e.offset)
                    keep.append((e.kind, e.oid, f.read(e.length)))
        os.unlink(r.store.pack_path(name))
        os.unlink(r.store.idx_path(name))
    r.store.refresh()
    w = r.store.writer()
    for kind, oid, data in keep:
        w.add(kind, oid, data)
    w.commit()


def test_fsck_sums_up_many_missing_objects(repo_dir: Path) -> None:
    for i in range(40):
        write(repo_dir / "d" / f"f{i:02d}.txt", f"file {i}")
    write(repo_dir / "e" / "one.txt", "one")
    run_dvx("add", "d", "e", cwd=repo_dir)
    _drop_chunks(repo_dir)
    res = run_dvx("fsck", cwd=repo_dir, check=False)
    assert res.returncode == 1
    lines = res.stdout.splitlines()
    assert len(lines) == 4, lines
    assert lines[0].startswith("d: 40 objects missing from the store, needed by 40 files (")
    assert lines[0].endswith(", ...); `dvx fetch` downloads them")
    assert lines[1].startswith("e: 1 objects missing from the store, needed by 1 files (")
    assert lines[2] == "(41 bad or missing objects in all; `dvx fsck --verbose` lists each one)"
    assert lines[3].endswith("pointers: 41 problem(s)")
    every = run_dvx("fsck", "--verbose", cwd=repo_dir, check=False).stdout.splitlines()
    assert sum(line.startswith("bad object ") for line in every) == 41
    report = json.loads(run_dvx("fsck", "--json", cwd=repo_dir, check=False).stdout)
    assert len(report["problems"]) == 41
    assert {tuple(p["pointers"]) for p in report["problems"]} == {("d",), ("e",)}


# -- FIFOs and sockets inside a tracked directory ----------------------------------------------

def test_add_and_status_name_fifos_and_sockets_they_skip(repo_dir: Path) -> None:
    import socket

    write(repo_dir / "d" / "a.txt", "a")
    os.mkfifo(repo_dir / "d" / "pipe")
    (repo_dir / "d" / "sub").mkdir()
    sock = socket.socket(socket.AF_UNIX)
    sock.bind("d/sub/sock")  # relative: AF_UNIX paths are short
    try:
        add = run_dvx("add", "d", cwd=repo_dir)
        warning = ("warning: d: not tracked, not regular files: d/pipe (fifo), d/sub/sock (socket) "
                   "(DVX tracks files, symlinks and directories)\n")
        assert add.stderr == warning
        assert add.stdout.startswith("added d (1 B, 1 files")
        status = run_dvx("status", cwd=repo_dir)
        assert status.stderr == warning and "up to date" in status.stdout
        entry = json.loads(run_dvx("status", "--json", cwd=repo_dir).stdout)["paths"][0]
        assert entry["state"] == "clean" and entry["skipped"] == ["d/pipe (fifo)", "d/sub/sock (socket)"]
        assert run_dvx("add", "d", cwd=repo_dir).stderr == warning  # also when unchanged
    finally:
        sock.close()


# -- data that git already tracks -------------------------------------------------------------

def test_add_warns_when_git_tracks_the_data_too(repo_dir: Path) -> None:
    from tests.conftest import git

    write(repo_dir / "models" / "m.bin", b"model")
    write(repo_dir / "data" / "a.csv", "a")
    write(repo_dir / "data" / "sub" / "b.csv", "b")
    write(repo_dir / "data" / "c.csv", "c")
    write(repo_dir / "other.bin", "o")
    git("add", "models/m.bin", "data/a.csv", "data/sub/b.csv", cwd=repo_dir)
    git("commit", "-qm", "data in git by mistake", cwd=repo_dir)
    res = run_dvx("add", "models/m.bin", "data", "other.bin", cwd=repo_dir)
    assert res.stderr.splitlines() == [
        "warning: git also tracks models/m.bin; run `git rm --cached models/m.bin` "
        "so that only its pointer goes into git",
        "warning: git also tracks 2 files in data (data/a.csv, data/sub/b.csv); run "
        "`git rm -r --cached data` so that only its pointer goes into git"]
    # from a subdirectory, the command to run is relative to it
    write(repo_dir / "models" / "m.bin", b"model v2")
    sub = run_dvx("add", "m.bin", cwd=repo_dir / "models")
    assert "run `git rm --cached m.bin`" in sub.stderr
    git("rm", "-q", "--cached", "models/m.bin", cwd=repo_dir)
    git("rm", "-q", "-r", "--cached", "data", cwd=repo_dir)
    write(repo_dir / "models" / "m.bin", b"model v3")
    write(repo_dir / "data" / "c.csv", "c2")
    assert run_dvx("add", "models/m.bin", "data", cwd=repo_dir).stderr == ""


# -- packaging ---------------------------------------------------------------------------------

def test_pyproject_license_is_an_spdx_string() -> None:
    """A TOML table made setuptools print `project.license as a TOML table is
    deprecated` three times per install (both README commands install DVX)."""
    tomllib = pytest.importorskip("tomllib")
    meta = tomllib.loads((Path(__file__).resolve().parent.parent / "pyproject.toml").read_text())
    assert meta["project"]["license"] == "Apache-2.0"
    setuptools_req = next(r for r in meta["build-system"]["requires"] if r.startswith("setuptools"))
    assert setuptools_req == "setuptools>=77"  # the first to accept the SPDX string


# -- the example script ---------------------------------------------------------------------------

def test_example_prints_commands_that_can_be_pasted(tmp_path: Path) -> None:
    steps = Path(__file__).resolve().parent.parent / ".dvx-example" / "steps.sh"
    args = ["first model and dataset", "it's", "", "a$b", "~x", "HEAD~1", "-m", "*.csv", "x\ny"]
    script = 'source "$1"; shift; step printf "<%s>\\n" "$@"'
    res = subprocess.run(["bash", "-c", script, "bash", str(steps), *args],
                         capture_output=True, text=True, check=True, cwd=tmp_path)
    shown, _, ran = res.stdout.removeprefix("\n\033[1m$ ").partition("\033[0m\n")
    assert shown == ("printf '<%s>\\n' 'first model and dataset' 'it'\\''s' '' 'a$b' '~x' HEAD~1 -m "
                     "'*.csv' 'x\ny'")
    again = subprocess.run(["bash", "-c", shown], capture_output=True, text=True, check=True,
                           cwd=tmp_path)
    assert again.stdout == ran == "".join(f"<{a}>\n" for a in args)
