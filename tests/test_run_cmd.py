"""`dvx run -- CMD` (protocols/runs.md §10) with a shell script and a Python child that
joins the run; `dvx runs promote` and `dvx runs rm` (§11). Real processes and git."""

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


@pytest.fixture
def proj(repo_dir: Path) -> Path:
    write(repo_dir / "data" / "x.csv", "a,b\n1,2\n")
    run_dvx("add", "data", cwd=repo_dir)
    write(repo_dir / "train.sh", "#!/bin/sh\necho training on $DVX_RUN_ID\necho warn >&2\n"
          "mkdir -p model && cat data/x.csv > model/weights.txt\nexit ${FAIL:-0}\n")
    os.chmod(repo_dir / "train.sh", 0o755)
    git("add", "-A", cwd=repo_dir)
    git("commit", "-qm", "code", cwd=repo_dir)
    return repo_dir


def last_json(stdout: str) -> dict:
    """The --json report: the last object on stdout, after the command's own output."""
    start = 0 if stdout.startswith("{") else stdout.rindex("\n{") + 1
    return json.loads(stdout[start:])  # type: ignore[no-any-return]


def show(repo: Path, run_id: str) -> dict:
    return json.loads(run_dvx("runs", "show", run_id, "--json", cwd=repo).stdout)


def test_shell_command_recorded(proj: Path) -> None:
    proc = run_dvx("run", "--name", "sh1", "-i", "data", "-o", "model", "--json", "--", "./train.sh", cwd=proj)
    rep = last_json(proc.stdout)
    assert rep["state"] == "finished" and rep["exit_code"] == 0 and rep["outputs"] == ["model"]
    assert "training on " + rep["id"] in proc.stdout and "warn" in proc.stderr  # tee'd through
    r = show(proj, rep["id"])
    assert r["name"] == "sh1" and r["state"] == "finished" and r["exit_code"] == 0
    assert [e["path"] for e in r["inputs"]] == ["data"] and [e["path"] for e in r["outputs"]] == ["model"]
    assert r["command"] == ["./train.sh"] and r["code"]["commit"] == git("rev-parse", "HEAD", cwd=proj).strip()
    console = git("show", f"refs/dvx/runs/{rep['id']}:.dvx-run/console.log.dvx", cwd=proj)
    assert "kind: file" in console
    assert (proj / "model.dvx").exists()  # added as `dvx add` does
    assert "system" in r["files"]  # system metrics sampled (at least the final sample)


def test_failing_command_records_failed_run(proj: Path) -> None:
    proc = run_dvx("run", "-o", "model", "--", "./train.sh", cwd=proj, check=False,
                   env={"FAIL": "7"})
    assert proc.returncode == 7
    run_id = proc.stderr.split("dvx run: run ")[1].split()[0]
    r = show(proj, run_id)
    assert r["state"] == "failed" and r["exit_code"] == 7 and r["outputs"] == []
    assert not (proj / "model.dvx").exists()  # outputs only after a zero exit


def test_inputs_verified(proj: Path) -> None:
    assert "does not exist" in run_dvx("run", "-i", "nope", "--", "true", cwd=proj, check=False).stderr
    write(proj / "extra.txt", "untracked\n")
    proc = run_dvx("run", "-i", "extra.txt", "--json", "--", "true", cwd=proj)
    assert last_json(proc.stdout)["added"] == ["extra.txt"] and (proj / "extra.txt.dvx").exists()
    assert run_dvx("run", "--", "definitely-not-a-command-xyz", cwd=proj, check=False).returncode == 127


def test_python_child_joins_the_run(proj: Path) -> None:
    write(proj / "train.py", textwrap.dedent("""
        import os, dvx.runs as dr
        run = dr.init(name="from-child", config={"lr": 0.01}, tags=["child"])
        assert run.id == os.environ["DVX_RUN_ID"], (run.id, os.environ["DVX_RUN_ID"])
        for i in range(20):
            run.log({"loss": 1.0 / (i + 1)})
        run.summary["best"] = 42
        print("child done")
        run.finish()
    """))
    env = {"PYTHONPATH": str(TOP)}
    proc = run_dvx("run", "--json", "--", sys.executable, "train.py", cwd=proj, env=env)
    rep = last_json(proc.stdout)
    assert "child done" in proc.stdout
    runs = json.loads(run_dvx("runs", "list", "--json", cwd=proj).stdout)
    assert [r["id"] for r in runs] == [rep["id"]]  # one run, not two
    r = show(proj, rep["id"])
    assert r["name"] == "from-child" and r["config"] == {"lr": 0.01} and r["tags"] == ["child"]
    assert r["history"]["points"] == 20 and r["summary"]["loss"] == pytest.approx(1 / 20)
    assert r["summary"]["best"] == 42


def test_promote_and_rm(proj: Path) -> None:
    run_id = last_json(run_dvx("run", "-o", "model", "--json", "--", "./train.sh", cwd=proj).stdout)["id"]
    (proj / "model.dvx").unlink()  # as if the output had not been kept in the work tree
    before = git("rev-parse", "HEAD", cwd=proj).strip()
    rep = json.loads(run_dvx("runs", "promote", run_id, "--json", cwd=proj).stdout)
    assert rep["paths"] == ["model"] and rep["commit"] == git("rev-parse", "HEAD", cwd=proj).strip()
    assert git("rev-parse", "HEAD~1", cwd=proj).strip() == before
    msg = git("log", "-1", "--format=%B", cwd=proj)
    assert f"Run-Id: {run_id}" in msg
    assert git("status", "--porcelain", cwd=proj) == ""  # index and work tree match the commit
    assert git("show", "HEAD:model.dvx", cwd=proj) == (proj / "model.dvx").read_text()
    assert "nothing to promote" in run_dvx("runs", "promote", run_id, cwd=proj, check=False).stderr

    # a second run whose output the branch changed since: refused
    run2 = last_json(run_dvx("run", "-o", "model", "--json", "--", "sh", "-c",
                              "mkdir -p model; echo other > model/weights.txt", cwd=proj).stdout)["id"]
    write(proj / "model" / "weights.txt", "changed on the branch\n")
    run_dvx("add", "model", cwd=proj)
    git("add", "-A", cwd=proj)
    git("commit", "-qm", "branch moves", cwd=proj)
    proc = run_dvx("runs", "promote", run2, cwd=proj, check=False)
    assert proc.returncode == 1 and "the branch changed model.dvx" in proc.stderr

    out = json.loads(run_dvx("runs", "rm", run2, "--json", cwd=proj).stdout)
    assert out["deleted"] and out["ref"] == f"refs/dvx/runs/{run2}"
    assert git("for-each-ref", f"refs/dvx/runs/{run2}", cwd=proj) == ""
    assert "no run" in run_dvx("runs", "show", run2, cwd=proj, check=False).stderr
    assert "dvx gc" in run_dvx("runs", "rm", run_id, cwd=proj).stdout
    subprocess.run(["git", "fsck", "--strict", "--no-progress"], cwd=proj, check=True)


def _forge_run(proj: Path, run_id: str, path: str) -> None:
    """Rewrite a committed run so its record names ``path`` for its output, as a
    teammate's (or an attacker's) pushed run could."""
    ref = f"refs/dvx/runs/{run_id}"
    rec = json.loads(git("show", f"{ref}:.dvx-run/run.json", cwd=proj))
    rec["outputs"][0]["path"] = path
    blob = subprocess.run(["git", "hash-object", "-w", "--stdin"], input=json.dumps(rec), text=True,
                          cwd=proj, check=True, capture_output=True).stdout.strip()
    env = dict(os.environ, GIT_INDEX_FILE=str(proj / ".git" / "forge-index"))
    subprocess.run(["git", "read-tree", ref], cwd=proj, env=env, check=True)
    subprocess.run(["git", "update-index", "--cacheinfo", f"100644,{blob},.dvx-run/run.json"],
                   cwd=proj, env=env, check=True)
    tree = subprocess.run(["git", "write-tree"], cwd=proj, env=env, check=True, capture_output=True,
                          text=True).stdout.strip()
    sha = git("commit-tree", tree, "-p", ref, "-m", "forged", cwd=proj).strip()
    git("update-ref", ref, sha, cwd=proj)


@pytest.mark.parametrize("path", ["../escaped", "/tmp/dvx-absolute-escape", "a\nb", ".git/hooks/x",
                                  "x" * 255])
def test_promote_refuses_a_hostile_path_in_a_run_record(proj: Path, path: str) -> None:
    run_id = last_json(run_dvx("run", "-o", "model", "--json", "--", "./train.sh", cwd=proj).stdout)["id"]
    (proj / "model.dvx").unlink()
    _forge_run(proj, run_id, path)
    before = git("rev-parse", "HEAD", cwd=proj).strip()
    proc = run_dvx("runs", "promote", run_id, cwd=proj, check=False)
    assert proc.returncode == 1 and "Traceback" not in proc.stderr, proc.stderr
    assert git("rev-parse", "HEAD", cwd=proj).strip() == before
    assert not (proj.parent / "escaped.dvx").exists()
    assert not os.path.exists("/tmp/dvx-absolute-escape.dvx")
    assert not (proj / ".git" / "hooks" / "x.dvx").exists()
