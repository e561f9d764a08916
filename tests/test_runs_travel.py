"""Runs travel (protocols/runs.md §9): `dvx push` / `git push` (pre-push hook) send run
refs and their data, `dvx fetch` / `dvx pull` after a plain `git clone` bring them; one
ref per run, so machines never contend. Real bare git remotes and directory DVX
remotes, checked with the git CLI; real processes."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from tests.conftest import git, run_dvx, write

TOP = Path(__file__).resolve().parent.parent


def log_run(repo: Path, run_id: str, n: int = 50, extra: str = "") -> None:
    code = f"""
        import dvx.runs as dr
        with dr.init(id={run_id!r}, name="r-" + {run_id!r}, config={{"lr": 0.1}}, system_metrics=False) as run:
            for i in range({n}):
                run.log({{"loss": 1.0 / (i + 1)}}, step=i)
            {extra}
    """
    env = dict(os.environ, PYTHONPATH=str(TOP))
    proc = subprocess.run([sys.executable, "-c", textwrap.dedent(code)], cwd=repo, env=env, text=True,
                          capture_output=True)
    assert proc.returncode == 0, proc.stderr


@pytest.fixture
def machine_a(repo_dir: Path, tmp_path: Path) -> tuple[Path, Path, Path]:
    """Machine A: a repository with code committed and pushed to a bare git remote
    (``origin``, tracked by main) and a directory DVX remote in the committed config."""
    bare = tmp_path / "code.git"
    subprocess.run(["git", "init", "-q", "--bare", "-b", "main", str(bare)], check=True)
    store = tmp_path / "data-remote"
    run_dvx("remote", "add", "store", str(store), "--default", cwd=repo_dir)
    write(repo_dir / "train.py", "print('train')\n")
    write(repo_dir / "data" / "x.csv", "a,b\n1,2\n")
    run_dvx("add", "data", cwd=repo_dir)
    git("add", "-A", cwd=repo_dir)
    git("commit", "-qm", "code", cwd=repo_dir)
    git("remote", "add", "origin", str(bare), cwd=repo_dir)
    git("push", "-q", "-u", "origin", "main", cwd=repo_dir)
    return repo_dir, bare, store


def clone(bare: Path, where: Path) -> Path:
    subprocess.run(["git", "clone", "-q", str(bare), str(where)], check=True, capture_output=True)
    return where


def test_push_then_clone_pull_lists_the_run(machine_a: tuple[Path, Path, Path], tmp_path: Path) -> None:
    a, bare, _store = machine_a
    log_run(a, "run1", extra="run.use_artifact('data')")
    rep = json.loads(run_dvx("push", "--json", cwd=a).stdout)
    assert rep["runs_pushed"] == ["run1"] and rep["runs_git_remote"] == "origin"
    sha = git("rev-parse", "refs/dvx/runs/run1", cwd=a).strip()
    assert git("ls-remote", str(bare), "refs/dvx/runs/*", cwd=a).split() == [sha, "refs/dvx/runs/run1"]
    # again: nothing new to send
    assert json.loads(run_dvx("push", "--json", cwd=a).stdout)["runs_pushed"] == []

    b = clone(bare, tmp_path / "b")
    assert git("for-each-ref", "refs/dvx", cwd=b) == ""  # git clone does not bring them
    got = json.loads(run_dvx("pull", "--json", cwd=b).stdout)
    assert got["runs_fetched"] == ["run1"] and not got["errors"], got
    assert git("rev-parse", "refs/dvx/runs/run1", cwd=b).strip() == sha
    listed = json.loads(run_dvx("runs", "list", "--json", cwd=b).stdout)
    assert [r["id"] for r in listed] == ["run1"] and listed[0]["summary"]["loss"] == pytest.approx(1 / 50)
    # the metrics read back from the store (fetched from the DVX remote)
    code = ("from dvx.repo import Repository\nfrom dvx.runs.catalog import find_run, read_history\n"
            "r = Repository('.')\nt = read_history(r, find_run(r, 'run1'))\n"
            "print(t.num_rows, t.column('value').to_pylist()[-1])")
    out = subprocess.run([sys.executable, "-c", code], cwd=b, text=True, capture_output=True,
                         env=dict(os.environ, PYTHONPATH=str(TOP)))
    assert out.returncode == 0, out.stderr
    assert out.stdout.split() == ["50", str(1 / 50)]
    shown = json.loads(run_dvx("runs", "show", "run1", "--json", cwd=b).stdout)
    assert shown["inputs"][0]["path"] == "data"
    run_dvx("fsck", cwd=b)
    # a second pull: nothing new
    assert json.loads(run_dvx("fetch", "--json", cwd=b).stdout)["runs_fetched"] == []


def test_git_push_hook_sends_runs(machine_a: tuple[Path, Path, Path], tmp_path: Path) -> None:
    a, bare, store = machine_a
    run_dvx("hooks", "install", cwd=a)
    log_run(a, "hooked")
    write(a / "train.py", "print('train v2')\n")
    git("commit", "-qam", "v2", cwd=a)
    proc = subprocess.run(["git", "push", "origin", "main"], cwd=a, capture_output=True, text=True,
                          timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert "pushed 1 run" in proc.stderr
    sha = git("rev-parse", "refs/dvx/runs/hooked", cwd=a).strip()
    assert sha in git("ls-remote", str(bare), cwd=a)
    # the branch went too, and git push itself was not disturbed
    head = git("ls-remote", str(bare), "refs/heads/main", cwd=a).split()[0]
    assert git("rev-parse", "main", cwd=a).strip() == head
    b = clone(bare, tmp_path / "b")
    run_dvx("fetch", cwd=b)
    assert json.loads(run_dvx("runs", "show", "hooked", "--json", cwd=b).stdout)["history"]["points"] == 50
    # pushing the same refs by hand with git (the hook leaves refs git pushes to git)
    log_run(a, "byhand")
    proc = subprocess.run(["git", "push", "origin", "refs/dvx/runs/byhand"], cwd=a, capture_output=True,
                          text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert "refs/dvx/runs/byhand" in git("ls-remote", str(bare), cwd=a)


def test_concurrent_pushes_of_different_runs_both_succeed(machine_a: tuple[Path, Path, Path],
                                                         tmp_path: Path) -> None:
    a, bare, _store = machine_a
    run_dvx("push", cwd=a)
    b = clone(bare, tmp_path / "b")
    run_dvx("pull", cwd=b)
    log_run(a, "froma")
    log_run(b, "fromb")
    env = dict(os.environ)
    procs = [subprocess.Popen([sys.executable, "-m", "dvx", "push", "--json"], cwd=m, text=True,
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env) for m in (a, b)]
    outs = [p.communicate(timeout=120) for p in procs]
    for p, (_out, err) in zip(procs, outs, strict=True):
        assert p.returncode == 0, err
    assert json.loads(outs[0][0])["runs_pushed"] == ["froma"]
    assert json.loads(outs[1][0])["runs_pushed"] == ["fromb"]
    remote = git("ls-remote", str(bare), "refs/dvx/runs/*", cwd=a)
    assert "refs/dvx/runs/froma" in remote and "refs/dvx/runs/fromb" in remote
    subprocess.run(["git", "fsck", "--strict", "--no-progress"], cwd=bare, check=True)
    # each machine then sees the other's run, data included
    got = json.loads(run_dvx("fetch", "--json", cwd=a).stdout)
    assert got["runs_fetched"] == ["fromb"] and not got["errors"]
    assert {r["id"] for r in json.loads(run_dvx("runs", "list", "--json", cwd=a).stdout)} == {"froma", "fromb"}


def test_runs_remote_is_configurable_and_can_be_off(machine_a: tuple[Path, Path, Path], tmp_path: Path) -> None:
    a, bare, _store = machine_a
    other = tmp_path / "runs.git"
    subprocess.run(["git", "init", "-q", "--bare", str(other)], check=True)
    git("remote", "add", "runs", str(other), cwd=a)
    git("config", "dvx.runsRemote", "runs", cwd=a)
    log_run(a, "elsewhere")
    rep = json.loads(run_dvx("push", "--json", cwd=a).stdout)
    assert rep["runs_git_remote"] == "runs" and rep["runs_pushed"] == ["elsewhere"]
    assert "elsewhere" in git("ls-remote", str(other), cwd=a)
    assert "elsewhere" not in git("ls-remote", str(bare), cwd=a)
    git("config", "dvx.runsRemote", "none", cwd=a)
    log_run(a, "stays")
    rep = json.loads(run_dvx("push", "--json", cwd=a).stdout)
    assert rep["runs_pushed"] == [] and "off" in rep["runs_note"]
    assert "stays" not in git("ls-remote", str(other), cwd=a)


def test_no_git_remote_keeps_runs_local(repo_dir: Path, tmp_path: Path) -> None:
    run_dvx("remote", "add", "store", str(tmp_path / "data-remote"), "--default", cwd=repo_dir)
    write(repo_dir / "train.py", "x\n")
    git("add", "-A", cwd=repo_dir)
    git("commit", "-qm", "code", cwd=repo_dir)
    log_run(repo_dir, "local1")
    rep = json.loads(run_dvx("push", "--create", "--json", cwd=repo_dir).stdout)
    assert rep["runs_pushed"] == [] and "no git remote" in rep["runs_note"]


def test_hostile_run_ref_names_on_the_git_remote_are_refused(machine_a: tuple[Path, Path, Path],
                                                            tmp_path: Path) -> None:
    """Only refs/dvx/runs/<valid run id> may become a local ref: a nested name or one
    starting with '-' from someone's push is reported, the good runs still arrive."""
    a, bare, _store = machine_a
    log_run(a, "good", n=5)
    run_dvx("push", cwd=a)
    sha = git("rev-parse", "refs/dvx/runs/good", cwd=a).strip()
    for bad in ("refs/dvx/runs/nested/x", "refs/dvx/runs/-dash", "refs/dvx/runs/" + "x" * 200):
        git("update-ref", bad, sha, cwd=bare)
    b = clone(bare, tmp_path / "b")
    got = json.loads(run_dvx("fetch", "--json", cwd=b, check=False).stdout)
    assert got["runs_fetched"] == ["good"]
    assert sum("is refused" in e for e in got["errors"]) == 3, got["errors"]
    assert git("for-each-ref", "--format=%(refname)", "refs/dvx", cwd=b).split() == ["refs/dvx/runs/good"]
