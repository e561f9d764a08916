"""The public Python API (``dvx.api``, re-exported by ``dvx``) and how errors are shown.

Real git repositories, real files, the real ``dvx`` program beside the API (their
``--json`` must agree), a real pseudo-terminal for progress bars.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

import dvx
from tests.conftest import Cli, git, run_dvx, write

EXPECTED_ALL = [
    "add", "checkout", "commit", "diff", "fetch", "fsck", "gc", "hooks_install", "hooks_uninstall",
    "init_repo", "log", "ls", "pull", "push", "raise_on_error", "remote_add", "remote_list",
    "remote_modify", "remote_remove", "status",
    "get", "info", "open", "read",
    "config", "define_metric", "finish", "init", "log_artifact", "summary", "use_artifact",
    "Api",
    "Histogram", "Image",
    "Repository",
    "ConfigError", "CorruptObjectError", "DvxError", "FormatVersionError", "GitError",
    "MissingObjectError", "NotARepositoryError", "NotTrackedError", "PartialFailureError",
    "PathOutsideRepoError", "PointerError", "ReadOnlyError", "RemoteError", "StoreError", "UsageError",
    "WorkspaceConflictError",
    "__version__",
]
HEAVY = ["blake3", "pydantic", "dulwich", "rich", "typer", "click", "fsspec", "dvx.repo",
         "dvx.store.local", "dvx.ops.add"]


def _loaded_after(code: str) -> list[str]:
    """The modules of HEAVY that ``code`` loads, in a fresh interpreter."""
    probe = f"{code}\nimport sys, json\nprint(json.dumps([m for m in {HEAVY!r} if m in sys.modules]))"
    out = subprocess.run([sys.executable, "-c", probe], check=True, capture_output=True, text=True)
    return json.loads(out.stdout.splitlines()[-1])


# -- the package surface ------------------------------------------------------------------

def test_all_is_pinned_and_every_name_resolves() -> None:
    assert dvx.__all__ == EXPECTED_ALL
    for name in EXPECTED_ALL:
        assert getattr(dvx, name) is not None, name
    assert issubclass(dvx.UsageError, dvx.DvxError) and dvx.UsageError.exit_code == 2
    assert issubclass(dvx.PartialFailureError, dvx.DvxError)
    assert dvx.add is dvx.api.add and dvx.Repository.__module__ == "dvx.repo"
    with pytest.raises(AttributeError, match="no attribute 'nonesuch'"):
        dvx.nonesuch  # noqa: B018


def test_dvx_init_starts_a_run_not_a_repository() -> None:
    """``dvx.init`` is wandb's: it starts a run; a repository is ``dvx.init_repo``."""
    import dvx.runs

    assert dvx.init is dvx.runs.init and dvx.finish is dvx.runs.finish
    assert dvx.init is not dvx.init_repo
    assert dvx.config is dvx.runs.config  # the active run's config, not a module


def test_import_dvx_is_lazy() -> None:
    assert _loaded_after("import dvx") == []
    # the verbs and errors themselves still load nothing heavy until they are called
    assert _loaded_after("import dvx; dvx.add; dvx.status; dvx.DvxError; dvx.UsageError") == []
    assert _loaded_after("import dvx; dvx.progress.Progress; dvx.api.StatusReport") == []
    assert _loaded_after("import dvx; dvx.Repository") != []  # the store comes with it


# -- the verbs, against a real repository ---------------------------------------------------

@pytest.fixture
def project(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A fresh DVX repository made through the API; the cwd is elsewhere."""
    root = tmp_path / "proj"
    res = dvx.init_repo(root)
    assert res.created and res.git_created and res.root == os.path.realpath(root)
    again = dvx.init_repo(root)
    assert not again.created and not again.git_created
    monkeypatch.chdir(tmp_path)  # paths are relative to repo=, not to the cwd
    return root


def test_workflow_through_the_api(project: Path, tmp_path: Path) -> None:
    write(project / "data" / "a.txt", "alpha")
    write(project / "data" / "b.txt", "beta")
    write(project / "model.bin", b"\x00" * 1000)
    added = dvx.add(["data", "model.bin"], repo=project)
    assert [r.target for r in added] == ["data", "model.bin"]
    assert added.to_json()[0]["pointer"]["files"] == 2 and (project / "data.dvx").exists()
    assert dvx.add("model.bin", repo=project).paths[0].changed is False  # one path as a str

    st = dvx.status(repo=project)
    assert st.clean and st.errors == [] and {r.target for r in st} == {"data", "model.bin"}
    (project / "data" / "a.txt").write_text("alpha, changed")
    st = dvx.status(["data"], repo=project)
    assert not st.clean and st.paths[0].state == "modified" and st.paths[0].modified == ["a.txt"]

    first = dvx.commit("first", repo=project)
    assert first.readded == ["data"] and first.errors == [] and len(first.sha) == 40
    assert git("log", "--format=%s", cwd=project).split() == ["first"]
    write(project / "data" / "c.txt", "gamma")
    dvx.add("data", repo=project)
    dvx.commit("second", repo=project)

    d = dvx.diff("HEAD~1", "HEAD", repo=project)
    assert [(e.path, e.status) for e in d] == [("data/c.txt", "added")] and d.errors == []
    log = dvx.log("data", repo=project)
    assert [e.change for e in log] == ["modified", "added"] and len(dvx.log(repo=project, max_count=1)) == 1
    assert {e.path for e in dvx.ls("data", repo=project)} == {"data/a.txt", "data/b.txt", "data/c.txt"}
    assert {e.path for e in dvx.ls("data", repo=project, rev="HEAD~1")} == {"data/a.txt", "data/b.txt"}

    # checkout of another revision, and back
    co = dvx.checkout(["data"], repo=project, rev="HEAD~1")
    assert co.removed == 1 and co.errors == [] and not (project / "data" / "c.txt").exists()
    assert dvx.checkout(repo=project).restored == 1 and (project / "data" / "c.txt").read_text() == "gamma"

    # remotes, push, and a clone that pulls
    remote = tmp_path / "remote"
    added_remote = dvx.remote_add("origin", str(remote), repo=project, default=True, options={"timeout": "30"})
    assert added_remote.created_directory == str(remote)
    assert [(r.name, r.default, r.options) for r in dvx.remote_list(repo=project)] == [
        ("origin", True, {"timeout": "30"})]
    dvx.remote_modify("origin", repo=project, unset=["timeout"])
    assert dvx.remote_list(repo=project).remotes[0].options == {}
    pushed = dvx.raise_on_error(dvx.push(repo=project, all_commits=True))
    assert pushed.remote == "origin" and pushed.objects_uploaded > 0 and pushed.missing_locally == []
    git("add", ".dvx/config", cwd=project)
    git("commit", "-q", "-m", "remote", cwd=project)
    clone = tmp_path / "clone"
    subprocess.run(["git", "clone", "-q", str(project), str(clone)], check=True)
    got = dvx.pull(repo=clone)
    assert got.errors == [] and sorted(got.checkout) == ["data", "model.bin"]
    assert (clone / "data" / "c.txt").read_text() == "gamma"
    assert dvx.fetch(repo=clone, rev="HEAD~1").roots_already_local == 2

    assert dvx.fsck(repo=clone).ok and dvx.fsck(repo=clone, remote="origin").ok
    assert dvx.gc(repo=project, dry_run=True).dry_run
    assert dvx.gc(repo=project, remote="origin", dry_run=True).packs_deleted == []
    assert [c.action for c in dvx.hooks_install(repo=project)] == ["installed"] * 5
    assert {c.action for c in dvx.hooks_uninstall(repo=project)} == {"removed"}
    assert dvx.remote_remove("origin", repo=project).action == "removed"
    assert len(dvx.remote_list(repo=project)) == 0


def test_results_are_what_the_cli_prints_with_json(repo_dir: Path, cli: Cli) -> None:
    write(repo_dir / "d" / "x.txt", "x")
    write(repo_dir / "f.bin", "f")
    first = json.loads(cli("add", "d", "f.bin", "--json").output)
    assert [(r["path"], r["changed"], r["pointer"]["files"]) for r in first] == [("d", True, 1),
                                                                                 ("f.bin", True, 1)]
    again = dvx.add(["d", "f.bin"]).to_json()  # unchanged: what the CLI says for a re-add
    cli_again = json.loads(cli("add", "d", "f.bin", "--json").output)
    for r in again + cli_again:  # a file younger than its stat-cache entry is hashed again
        del r["hashed_files"]
    assert again == cli_again and [r["changed"] for r in again] == [False, False]
    assert json.loads(cli("commit", "-m", "one", "--json").output)["staged"][:2] == ["d.dvx", ".gitignore"]
    write(repo_dir / "d" / "y.txt", "y")
    cli("add", "d")
    for args, result in [
        (["status"], lambda: dvx.status()),
        (["ls"], lambda: dvx.ls()),
        (["ls", "d"], lambda: dvx.ls("d")),
        (["diff"], lambda: dvx.diff()),
        (["log"], lambda: dvx.log()),
        (["fsck"], lambda: dvx.fsck()),
        (["gc", "--dry-run"], lambda: dvx.gc(dry_run=True)),
        (["remote", "list"], lambda: dvx.remote_list()),
        (["checkout"], lambda: dvx.checkout()),
        (["init"], lambda: dvx.init_repo()),
    ]:
        assert json.loads(cli(*args, "--json").output) == result().to_json(), args


def test_commit_from_a_subdirectory_re_adds_changed_data(repo_dir: Path) -> None:
    write(repo_dir / "data.txt", "one")
    (repo_dir / "sub").mkdir()
    run_dvx("add", "data.txt", cwd=repo_dir)
    run_dvx("commit", "-m", "one", cwd=repo_dir)
    write(repo_dir / "data.txt", "two")
    res = run_dvx("commit", "-m", "two", cwd=repo_dir / "sub")  # re-adds data.txt, not sub/data.txt
    assert res.stdout.splitlines()[0] == "re-added data.txt"
    assert dvx.status(repo=repo_dir).clean


def test_relative_paths_follow_repo(project: Path, tmp_path: Path) -> None:
    write(project / "data.txt", "d")
    write(tmp_path / "data.txt", "not this one")
    assert [r.target for r in dvx.add("data.txt", repo=project)] == ["data.txt"]
    with dvx.Repository.find(str(project)) as r:
        assert [r.target for r in dvx.status("data.txt", repo=r)] == ["data.txt"]  # from the root
    with pytest.raises(dvx.PathOutsideRepoError):
        dvx.add(str(tmp_path / "data.txt"), repo=project)


def test_repository_context_manager_saves_caches_and_closes_packs(project: Path) -> None:
    write(project / "f.bin", os.urandom(300_000))
    dvx.add("f.bin", repo=project)
    (project / "f.bin").unlink()

    def open_packs() -> list[str]:
        fds = os.listdir("/proc/self/fd")
        found = []
        for fd in fds:
            try:
                target = os.readlink(f"/proc/self/fd/{fd}")
            except OSError:
                continue
            if target.endswith(".pack"):
                found.append(target)
        return found

    with dvx.Repository.find(str(project)) as repo:
        assert dvx.checkout(repo=repo).restored == 1  # reads the pack
        assert open_packs() != []  # the repository keeps it open for the next call
        assert dvx.status(repo=repo).clean
    assert open_packs() == []
    assert (project / "f.bin").stat().st_size == 300_000
    # a path as repo=: opened and closed by the call itself
    (project / "f.bin").unlink()
    dvx.checkout(repo=project)
    assert open_packs() == []


def test_errors_raise_and_partial_failures_stay_in_results(project: Path) -> None:
    with pytest.raises(dvx.NotARepositoryError) as info:
        dvx.status(repo=project.parent)
    assert info.value.hint == "run `dvx init` first"
    with pytest.raises(dvx.UsageError, match="exclude each other"):
        dvx.checkout(["x"], repo=project, ours=True, theirs=True)
    with pytest.raises(dvx.UsageError, match="empty commit message"):
        dvx.commit("  ", repo=project)
    with pytest.raises(dvx.UsageError, match="not KEY=VALUE"):
        dvx.remote_add("o", "/tmp/x", repo=project, options=["novalue"])
    with pytest.raises(dvx.UsageError, match="--download needs --remote"):
        dvx.fsck(repo=project, download=True)
    # a broken pointer: the rest is done, the failure is in the result
    write(project / "good.txt", "good")
    dvx.add("good.txt", repo=project)
    (project / "good.txt").unlink()
    write(project / "bad.txt.dvx", "this is not a pointer\n")
    co = dvx.checkout(repo=project)
    assert (project / "good.txt").read_text() == "good"
    assert co.restored == 1 and len(co.errors) == 1 and "bad.txt.dvx" in co.errors[0]
    assert [r.target for r in co if r.error] == ["bad.txt"]
    assert dvx.status(repo=project).errors == co.errors
    with pytest.raises(dvx.PartialFailureError) as failed:
        dvx.raise_on_error(co)
    assert failed.value.errors == co.errors and "bad.txt.dvx" in failed.value.message
    assert dvx.raise_on_error(dvx.ls("good.txt", repo=project)).entries[0].path == "good.txt"


# -- errors as the CLI prints them ------------------------------------------------------------

def test_errors_print_message_then_hint_line(repo_dir: Path) -> None:
    failed = run_dvx("add", "nope", cwd=repo_dir, check=False)
    assert failed.returncode == 1 and failed.stdout == ""
    assert failed.stderr.splitlines() == ["error: nope does not exist", "hint: check the path"]
    # a collected per-path error keeps its hint line too
    write(repo_dir / "x.txt.dvx", "garbage\n")
    co = run_dvx("checkout", cwd=repo_dir, check=False)
    lines = co.stderr.splitlines()
    assert co.returncode == 1 and len(lines) == 2, lines
    assert lines[0].startswith("error: x.txt.dvx") and lines[1].startswith("hint: ")


@pytest.mark.parametrize("args, message, hint", [
    (["add"], "error: missing argument 'PATHS...'", "hint: see `dvx add --help`"),
    (["log", "-n", "x"], "error: invalid value for '--max-count' / '-n': 'x' is not a valid integer",
     "hint: see `dvx log --help`"),
    (["frobnicate"], "error: no such command 'frobnicate'", "hint: see `dvx --help`"),
    (["remote", "add", "o"], "error: missing argument 'URL'", "hint: see `dvx remote add --help`"),
    (["push", "--jobs", "0"], "error: invalid value for '--jobs' / '-j': 0 is not in the range x>=1",
     "hint: see `dvx push --help`"),
    (["checkout", "--ours", "--theirs", "d"], "error: --ours, --theirs and --rev exclude each other",
     "hint: pick one"),
    (["remote", "add", "o", "/tmp/x", "-o", "novalue"], "error: option 'novalue' is not KEY=VALUE",
     "hint: write it as -o endpoint_url=http://..."),
    (["gc", "--workspace-only"], "error: --workspace-only deletes every version not checked out now",
     "hint: re-run with --yes to confirm"),
])
def test_usage_errors_exit_2(repo_dir: Path, args: list[str], message: str, hint: str) -> None:
    res = run_dvx(*args, cwd=repo_dir, check=False)
    assert (res.returncode, res.stderr.splitlines(), res.stdout) == (2, [message, hint], "")


def test_help_for_every_command(cli: Cli) -> None:
    commands = [[], ["init"], ["add"], ["status"], ["checkout"], ["ls"], ["fsck"], ["commit"],
                ["diff"], ["log"], ["hooks"], ["hooks", "install"], ["hooks", "uninstall"], ["gc"],
                ["remote"], ["remote", "add"], ["remote", "list"], ["remote", "remove"],
                ["remote", "modify"], ["push"], ["fetch"], ["pull"]]
    for words in commands:
        shown = cli(*words, "--help").output
        assert "Usage:" in shown and " ".join(words) in shown, words
    top = cli("--help").output
    for name in ("add", "status", "checkout", "commit", "push", "fetch", "pull", "remote", "hooks"):
        assert re.search(rf"^\s+{name}\s", top, re.M), name


def test_error_is_never_drawn_into_a_progress_bar(tmp_path: Path) -> None:
    """A live bar on a real terminal is taken off the screen before ``error:`` is
    written, and nothing of the bar comes after it."""
    import pty

    code = (
        "import time\n"
        "from dvx.cli import print_error\n"
        "from dvx.errors import DvxError\n"
        "from dvx.progress import RichProgress, _live\n"
        "bar = RichProgress()\n"
        "bar.start('copying', 1000)\n"
        "for _ in range(5):\n"
        "    bar.advance(10); time.sleep(0.05)\n"
        "print_error(DvxError('the disk is full', 'free some space'))\n"
        "assert not _live and bar._bar is None\n"
        "time.sleep(0.3)\n"  # a bar still alive would redraw itself here
    )
    env = {k: v for k, v in os.environ.items() if k != "DVX_NO_PROGRESS"}
    env.update(TERM="xterm", COLUMNS="80")
    master, slave = pty.openpty()
    proc = subprocess.Popen([sys.executable, "-c", code], stdin=subprocess.DEVNULL,
                            stdout=subprocess.PIPE, stderr=slave, env=env)
    os.close(slave)
    chunks = []
    while True:
        try:
            data = os.read(master, 65536)
        except OSError:
            break
        if not data:
            break
        chunks.append(data)
    os.close(master)
    assert proc.wait(timeout=60) == 0, proc.stdout.read() if proc.stdout else ""
    screen = b"".join(chunks).decode("utf-8", "replace")
    assert "copying" in screen  # the bar was really drawn
    after = screen[screen.index("error:"):]
    plain = re.sub(r"\x1b\[[0-9;?]*[A-Za-z]", "", after)
    lines = [x.strip() for x in re.split(r"[\r\n]+", plain) if x.strip()]
    assert lines == ["error: the disk is full", "hint: free some space"], lines
    assert "copying" not in after
