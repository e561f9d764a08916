"""Runs (protocols/runs.md): the API records into real git repositories, checked with
the git CLI; faults use real processes (signals, kill -9, fork, a file-size limit)."""

from __future__ import annotations

import base64
import json
import math
import os
import signal
import subprocess
import sys
import textwrap
import time
import warnings
from pathlib import Path

import pyarrow as pa
import pytest

import dvx.runs as dr
from dvx.repo import Repository
from dvx.runs.catalog import find_run, list_runs, read_history
from dvx.runs.record import RunError, decode_record, encode_record, summarize
from dvx.runs.segments import SCHEMA, batch_stats, public_stats, read_segment
from tests.conftest import VECTORS, git, run_dvx, write

TOP = Path(__file__).resolve().parent.parent


@pytest.fixture
def code_repo(repo_dir: Path) -> Path:
    write(repo_dir / "train.py", "print('train')\n")
    git("add", "-A", cwd=repo_dir)
    git("commit", "-qm", "code", cwd=repo_dir)
    return repo_dir


@pytest.fixture(autouse=True)
def _no_leftover_run():
    yield
    run = dr.current()
    if run is not None:
        run.finish()


def runs_cli(*args: str, cwd: Path, check: bool = True) -> subprocess.CompletedProcess[str]:
    env = dict(os.environ, PYTHONPATH=str(TOP))
    proc = subprocess.run([sys.executable, "-m", "dvx.cli_runs", "runs", *args], cwd=cwd, text=True,
                          capture_output=True, env=env)
    if check:
        assert proc.returncode == 0, proc.stderr + proc.stdout
    return proc


def _default_sigint() -> None:
    # a test run started in the background inherits SIGINT ignored, and Python keeps it so:
    # the child must see Ctrl-C as a user's script does
    signal.signal(signal.SIGINT, signal.SIG_DFL)


def child(code: str, cwd: Path, **kw) -> subprocess.Popen[str]:  # type: ignore[no-untyped-def]
    env = dict(os.environ, PYTHONPATH=str(TOP))
    env.update(kw.pop("env", {}))
    return subprocess.Popen([sys.executable, "-c", textwrap.dedent(code)], cwd=cwd, text=True,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env,
                            preexec_fn=_default_sigint, **kw)


def wait_line(proc: subprocess.Popen[str], text: str) -> None:
    assert proc.stdout is not None
    for line in proc.stdout:
        if text in line:
            return
    raise AssertionError(f"child ended before printing {text!r}: {proc.stderr.read() if proc.stderr else ''}")


def record_at(repo: Path, ref: str) -> dict:
    return decode_record(git("show", f"{ref}:.dvx-run/run.json", cwd=repo).encode(), ref)


def points(repo: Path, run_id: str) -> pa.Table:
    r = Repository(str(repo))
    return read_history(r, find_run(r, run_id))


# -- vectors --------------------------------------------------------------------------------------
def test_record_and_segment_vectors() -> None:
    v = json.loads((VECTORS / "runs.json").read_text(encoding="utf-8"))
    canonical = v["record"]["canonical_utf8"].encode()
    record = decode_record(canonical, "vector")
    assert math.isinf(record["summary"]["weird"]) and record["summary"]["weird"] < 0
    assert encode_record(record) == canonical
    seg = base64.b64decode(v["segment"]["stream_base64"])
    path = VECTORS.parent.parent / ".pytest-seg.arrows"
    try:
        path.write_bytes(seg)
        batches, complete = read_segment(str(path))
        assert complete
        table = pa.Table.from_batches(batches)
        assert table.schema.equals(SCHEMA, check_metadata=True)
        got = [list(r.values()) for r in table.to_pylist()]
        want = v["segment"]["points"]
        for g, w in zip(got, want, strict=True):
            assert g[:5] == w[:5] and g[6] == w[6]
            assert (repr(g[5]) if isinstance(g[5], float) and not math.isfinite(g[5]) else g[5]) == w[5]
        path.write_bytes(base64.b64decode(v["segment"]["truncated_base64"]))
        batches, complete = read_segment(str(path))
        assert not complete and sum(b.num_rows for b in batches) == v["segment"]["truncated_points"]
    finally:
        path.unlink(missing_ok=True)
    keys = public_stats(batch_stats(table))[0]

    def norm(x):  # type: ignore[no-untyped-def]
        return repr(x) if isinstance(x, float) and not math.isfinite(x) else x

    for rule, want_values in v["summaries"].items():
        name, _, goal = rule.partition("_")
        metrics = {"loss": {"summary": name, "goal": goal or None}}
        got_summary = summarize(keys, metrics, {})
        for key, value in want_values.items():
            assert norm(got_summary[key]) == value, (rule, key)


# -- a whole run, checked with git ------------------------------------------------------------
def test_run_is_a_commit_on_its_own_ref(code_repo: Path) -> None:
    write(code_repo / "train.py", "print('edited')\n")  # uncommitted: saved as code.diff
    write(code_repo / "data" / "a.csv", "x,y\n1,2\n")
    head = git("rev-parse", "HEAD", cwd=code_repo).strip()
    with dr.init(project="p", name="first", config={"lr": 0.1, "layers": [1, 2]}, tags=["b", "a"],
                 system_metrics_interval=0.1) as run:
        run.use_artifact("data")
        run.config.batch = 32
        run.log_param("opt", "adam")
        run.define_metric("loss", summary="min")
        for step in range(5):
            run.log({"loss": 1.0 / (step + 1), "acc": step / 10}, step=step)
        run.log({"loss": 0.01}, step=2)  # a repeated, out-of-order step: kept
        run.log({"loss": float("nan")})
        run.log_metrics({"done": True})
        print("hello console")
        time.sleep(0.3)
        write(code_repo / "model.bin", "weights")
        out = run.log_artifact("model.bin", type="model")
        assert out is not None and len(out.id) == 64
        status_before = git("status", "--porcelain", cwd=code_repo)
    ref = f"refs/dvx/runs/{run.id}"
    assert run.ref == ref
    sha = git("rev-parse", ref, cwd=code_repo).strip()
    assert sha == run.commit
    assert git("rev-parse", f"{ref}^1", cwd=code_repo).strip() == head
    assert git("rev-parse", "HEAD", cwd=code_repo).strip() == head  # branch untouched
    assert git("status", "--porcelain", cwd=code_repo) == status_before  # index, work tree untouched
    git("fsck", "--strict", cwd=code_repo)
    files = set(git("ls-tree", "-r", "--name-only", ref, "--", ".dvx-run", cwd=code_repo).split())
    assert {".dvx-run/run.json", ".dvx-run/code.diff", ".dvx-run/metrics.dvx", ".dvx-run/system.dvx",
            ".dvx-run/console.log.dvx", ".dvx-run/inputs/data.dvx", ".dvx-run/outputs/model.bin.dvx"} == files
    assert "print('edited')" in git("show", f"{ref}:.dvx-run/code.diff", cwd=code_repo)
    rec = record_at(code_repo, ref)
    assert rec["state"] == "finished" and rec["exit_code"] == 0 and rec["name"] == "first"
    assert rec["tags"] == ["a", "b"]
    assert rec["config"] == {"lr": 0.1, "layers": [1, 2], "batch": 32, "opt": "adam"}
    assert rec["summary"]["loss"] == 0.01 and rec["summary"]["acc"] == 0.4 and rec["summary"]["done"] is True
    assert rec["code"]["commit"] == head and rec["code"]["dirty"] and rec["code"]["branch"] == "refs/heads/main"
    assert rec["environment"]["packages"]["pyarrow"] == pa.__version__
    assert [e["path"] for e in rec["inputs"]] == ["data"] and rec["outputs"][0]["type"] == "model"
    assert rec["outputs"][0]["aliases"] == ["latest"] and rec["outputs"][0]["name"] == "model.bin"
    assert not (code_repo / ".dvx" / "state" / "runs" / run.id).exists()
    t = points(code_repo, run.id)
    loss = [(r["seq"], r["step"], r["value"]) for r in t.to_pylist() if r["key"] == "loss"]
    assert [s for _, s, _ in loss] == [0, 1, 2, 3, 4, 2, 3]  # every point, as logged
    assert math.isnan(loss[-1][2]) and loss[5][2] == 0.01
    assert [q for q, _, _ in loss] == sorted(q for q, _, _ in loss)
    r = Repository(str(code_repo))
    system = read_history(r, find_run(r, run.id), "system")
    assert "process.rss_bytes" in set(system["key"].to_pylist())
    console = git("show", f"{ref}:.dvx-run/console.log.dvx", cwd=code_repo)
    assert "kind: file" in console
    # the run's data is live for gc and checked by fsck
    run_dvx("gc", "--grace", "0", cwd=code_repo)
    run_dvx("fsck", cwd=code_repo)
    assert points(code_repo, run.id).num_rows == t.num_rows


def test_exception_marks_failed_and_saves(code_repo: Path) -> None:
    with pytest.raises(ZeroDivisionError), dr.init(system_metrics=False) as run:
        run.log({"x": 1})
        1 / 0  # noqa: B018
    rec = record_at(code_repo, run.ref)
    assert rec["state"] == "failed" and rec["exit_code"] == 1 and rec["history"]["points"] == 1


def test_repository_without_commits(repo_dir: Path) -> None:
    run = dr.init(system_metrics=False, capture_output=False)
    run.log({"x": 1.5})
    run.finish()
    assert git("rev-list", "--count", run.ref, cwd=repo_dir).strip() == "1"
    assert git("log", "-1", "--format=%P", run.ref, cwd=repo_dir).strip() == ""
    assert record_at(repo_dir, run.ref)["code"]["commit"] is None
    git("fsck", "--strict", cwd=repo_dir)
    assert subprocess.run(["git", "rev-parse", "HEAD"], cwd=repo_dir, capture_output=True).returncode != 0


def test_values_of_every_kind_and_refusals(code_repo: Path) -> None:
    run = dr.init(system_metrics=False, capture_output=False)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        run.log({"i": 2**60 + 1, "b": False, "s": "text", "inf": float("-inf"), "bad": [1, 2], 3: 4})
        run.log({"bad": [1]})  # the same key: no second warning
        run.log("not a dict")  # type: ignore[arg-type]
        run.log({"x": 1}, step=1.5)  # type: ignore[arg-type]
    messages = [str(w.message) for w in caught]
    assert sum("'bad'" in m for m in messages) == 1 and any("key 3" in m for m in messages)
    assert any("not str" in m or "not a dict" in m or "str" in m for m in messages)
    assert any("step must be an integer" in m for m in messages)
    run.finish()
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        run.log({"late": 1})
    assert any("after finish" in str(w.message) for w in caught)
    rows = {r["key"]: r for r in points(code_repo, run.id).to_pylist()}
    assert rows["i"]["kind"] == 1 and rows["i"]["text"] == str(2**60 + 1)
    assert rows["b"]["kind"] == 2 and rows["s"]["text"] == "text" and rows["inf"]["value"] == float("-inf")
    assert "bad" not in rows and "late" not in rows
    assert record_at(code_repo, run.ref)["summary"]["i"] == 2**60 + 1


def test_bad_use(code_repo: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    run = dr.init(system_metrics=False, capture_output=False, config={"a": 1})
    with pytest.raises(RunError, match="still active"):
        dr.init()
    assert dr.config.a == 1 and dr.config["a"] == 1
    dr.summary["best"] = 3
    dr.log({"y": 2})
    second = dr.init(reinit=True, system_metrics=False, capture_output=False)
    assert record_at(code_repo, run.ref)["summary"] == {"best": 3, "y": 2}
    second.finish()
    with pytest.raises(RunError, match="already exists"):
        dr.init(id=run.id)
    with pytest.raises(RunError, match="invalid run id"):
        dr.init(id="../x")
    elsewhere = tmp_path / "nowhere"
    elsewhere.mkdir()
    monkeypatch.chdir(elsewhere)
    with pytest.raises(Exception, match="dvx init") as info:
        dr.init()
    assert "mode='disabled'" in str(info.value)
    off = dr.init(mode="disabled", config={"lr": 1})
    off.log({"x": 1})
    off.finish()
    assert off.disabled and off.config["lr"] == 1


def test_multi_rank(code_repo: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("RANK", "1")
    monkeypatch.setenv("WORLD_SIZE", "2")
    assert dr.init().disabled
    monkeypatch.setenv("DVX_RUN_GROUP", "job7")
    run = dr.init(all_ranks=True, system_metrics=False, capture_output=False)
    run.finish()
    rec = record_at(code_repo, run.ref)
    assert (rec["rank"], rec["world_size"], rec["group"]) == (1, 2, "job7")


def test_resume_continues_seq_and_keeps_history(code_repo: Path) -> None:
    run = dr.init(id="resume-me", system_metrics=False, capture_output=False)
    for i in range(3):
        run.log({"loss": float(i)})
    run.finish()
    first = run.commit
    with pytest.raises(RunError, match="does not exist"):
        dr.init(id="nope", resume="must")
    again = dr.init(id="resume-me", resume=True, system_metrics=False, capture_output=False)
    again.log({"loss": 9.0}, step=0)  # a restarted step
    again.log({"loss": 10.0})
    again.finish()
    assert git("rev-parse", f"{again.ref}^2", cwd=code_repo).strip() == first
    t = points(code_repo, "resume-me").to_pylist()
    assert [(r["seq"], r["step"], r["value"]) for r in t] == [(0, 0, 0.0), (1, 1, 1.0), (2, 2, 2.0),
                                                               (3, 0, 9.0), (4, 1, 10.0)]
    rec = record_at(code_repo, again.ref)
    assert rec["resumed"] == 1 and rec["history"]["next_seq"] == 5
    git("fsck", "--strict", cwd=code_repo)


# -- real processes ---------------------------------------------------------------------------------
LOGGER = """
    import sys, time
    import dvx.runs as dr
    run = dr.init(id=sys.argv[1] if len(sys.argv) > 1 else None, system_metrics_interval=0.2)
    for i in range(1000):
        run.log({"loss": float(i)}, step=i)
    print("logged", run.id, flush=True)
    time.sleep(1.5)  # the writer flushes meanwhile
    print("flushed", flush=True)
    time.sleep(60)
"""


def test_script_that_ends_without_finish_is_committed(code_repo: Path) -> None:
    # the run is finished at interpreter exit; committing it writes a pack through the
    # store's thread pool, which Python refuses once its thread machinery has shut down
    # ("cannot schedule new futures after interpreter shutdown"): the run must be finished
    # before that, not in a plain atexit hook
    proc = child("""
        import dvx.runs as dr
        run = dr.init()
        for i in range(10):
            run.log({"loss": float(i)}, step=i)
        print("logged", run.id, flush=True)
    """, code_repo)
    out, err = proc.communicate(timeout=60)
    assert proc.returncode == 0 and "Traceback" not in err and "Exception ignored" not in err, err
    run_id = out.split()[1]
    assert git("rev-parse", "--verify", f"refs/dvx/runs/{run_id}", cwd=code_repo).strip()
    (run,) = list_runs(Repository(str(code_repo)))
    assert (run["state"], run["history"]["points"]) == ("finished", 10)


def test_sigterm_saves_everything(code_repo: Path) -> None:
    proc = child(LOGGER, code_repo)
    wait_line(proc, "logged")
    proc.send_signal(signal.SIGTERM)
    assert proc.wait(30) == -signal.SIGTERM
    (run,) = list_runs(Repository(str(code_repo)))
    assert (run["state"], run["exit_code"], run["signal"]) == ("failed", 143, "SIGTERM")
    assert run["history"]["points"] == 1000


def test_sigint_saves_everything(code_repo: Path) -> None:
    proc = child(LOGGER, code_repo)
    wait_line(proc, "logged")
    proc.send_signal(signal.SIGINT)
    proc.wait(30)
    (run,) = list_runs(Repository(str(code_repo)))
    assert (run["state"], run["exit_code"]) == ("failed", 130)
    assert run["history"]["points"] == 1000


def test_kill_9_is_recovered_as_crashed(code_repo: Path) -> None:
    proc = child(LOGGER, code_repo)
    wait_line(proc, "flushed")
    proc.kill()
    proc.wait(30)
    # a second process cannot take over while... the process is dead: the CLI recovers it
    res = runs_cli("list", "--json", cwd=code_repo)
    (run,) = json.loads(res.stdout)
    assert run["state"] == "crashed" and run["exit_code"] is None
    shown = json.loads(runs_cli("show", run["id"][:5], "--json", cwd=code_repo).stdout)
    assert shown["history"]["points"] == 1000 and shown["summary"]["loss"] == 999.0
    assert not list((code_repo / ".dvx" / "state" / "runs").iterdir())
    git("fsck", "--strict", cwd=code_repo)
    text = runs_cli("list", cwd=code_repo).stdout
    assert "crashed" in text and run["id"] in text


def test_second_process_cannot_resume_a_live_run(code_repo: Path) -> None:
    proc = child(LOGGER, code_repo, env={})
    proc2 = None
    try:
        wait_line(proc, "logged")
        run_id = next(iter(os.listdir(code_repo / ".dvx" / "state" / "runs")))
        proc2 = child(f"import dvx.runs as dr; dr.init(id={run_id!r}, resume=True)", code_repo)
        _, err = proc2.communicate(timeout=60)
        assert proc2.returncode != 0 and "in use by another process" in err
        listed = json.loads(runs_cli("list", "--json", cwd=code_repo).stdout)
        assert [r["state"] for r in listed] == ["running"]
    finally:
        proc.terminate()
        proc.wait(30)


def test_fork_child_neither_deadlocks_nor_duplicates(code_repo: Path) -> None:
    proc = child("""
        import os, warnings
        import dvx.runs as dr
        run = dr.init(system_metrics_interval=0.05)
        for i in range(50000):
            run.log({"x": float(i)})
        for _ in range(4):
            pid = os.fork()
            if pid == 0:
                with warnings.catch_warnings():
                    warnings.simplefilter("ignore")
                    run.log({"child": 1.0})
                print("child out")
                os._exit(0)
            os.waitpid(pid, 0)
        pid = os.fork()
        if pid == 0:  # a child that exits normally runs atexit: it must not finish the run
            raise SystemExit(0)
        os.waitpid(pid, 0)
        run.log({"x": -1.0})
        run.finish()
        print("parent done", run.id)
    """, code_repo)
    out, err = proc.communicate(timeout=120)
    assert proc.returncode == 0, err
    (run,) = list_runs(Repository(str(code_repo)))
    assert run["state"] == "finished" and run["history"]["points"] == 50001
    assert "child" not in run["history"]["keys"]


def test_disk_full_warns_and_training_goes_on(code_repo: Path) -> None:
    proc = child("""
        import resource, signal, sys
        import dvx.runs as dr
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
        run = dr.init(system_metrics=False, capture_output=False)
        resource.setrlimit(resource.RLIMIT_FSIZE, (20000, 20000))  # writes beyond 20 kB fail
        for i in range(200000):
            run.log({"loss": float(i)})
            if i % 50000 == 0:
                run.flush()
        print("training finished", flush=True)
        run.finish()
        print("after finish", flush=True)
    """, code_repo)
    out, err = proc.communicate(timeout=120)
    assert proc.returncode == 0, err
    assert "training finished" in out and "after finish" in out
    assert "could not save metrics" in err
    # with room again, the next dvx command commits what was kept
    (run,) = list_runs(Repository(str(code_repo)))
    assert run["state"] in ("finished", "crashed") and run["history"]["points"] > 0
    git("fsck", "--strict", cwd=code_repo)


def test_import_is_cheap() -> None:
    code = ("import sys, dvx.runs; bad = [m for m in ('pyarrow', 'psutil', 'pynvml', 'dulwich', 'numpy') "
            "if m in sys.modules]; print(bad)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True,
                         env=dict(os.environ, PYTHONPATH=str(TOP))).stdout
    assert out.strip() == "[]"


def test_a_branch_switch_during_a_run_changes_neither(code_repo: Path) -> None:
    """The run belongs to the code it started on; the branch the user switched to is
    left exactly as it is."""
    start = git("rev-parse", "HEAD", cwd=code_repo).strip()
    git("checkout", "-q", "-b", "other", cwd=code_repo)
    write(code_repo / "other.py", "x\n")
    git("add", "other.py", cwd=code_repo)
    git("commit", "-qm", "other", cwd=code_repo)
    other = git("rev-parse", "HEAD", cwd=code_repo).strip()
    git("checkout", "-q", "main", cwd=code_repo)
    run = dr.init(name="switch", system_metrics=False, capture_output=False)
    run.log({"a": 1.0})
    git("checkout", "-q", "other", cwd=code_repo)  # mid-run
    run.log({"a": 2.0})
    run.finish()
    assert git("rev-parse", f"{run.ref}^", cwd=code_repo).strip() == start
    assert git("rev-parse", "HEAD", cwd=code_repo).strip() == other
    assert git("symbolic-ref", "HEAD", cwd=code_repo).strip() == "refs/heads/other"
    assert git("status", "--porcelain", cwd=code_repo) == ""
    assert [r["value"] for r in points(code_repo, run.id).to_pylist()] == [1.0, 2.0]
    assert record_at(code_repo, run.ref)["code"]["branch"] == "refs/heads/main"
