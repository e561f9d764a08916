"""Querying runs (issue 10 bars): over 10,000 runs, a filtered and sorted query
≤ 50 ms warm from Python (``dvx.Api().runs``) and ≤ 0.3 s from the CLI
(``dvx runs list --filter ... --sort ...``), the index rebuilt from git ≤ 2 s; one key
of a 1,000,000-point run read back (``run.history("loss")``) ≤ 100 ms; against
``mlflow.search_runs`` on the same 10,000 runs (MLflow in ``bench/.venv-mlflow``, a
local SQLite store).

The 10,000 runs: a few through the real API (``dvx.init``/``log``/``finish``), the rest
made by a generator that writes what ``finish()`` writes through the same functions
(``dvx.runs.commit.commit_run`` on a record shaped like a real one; these runs hold no
metric points, so the store holds nothing for them). Each run has ``config.lr``,
``config.batch``, ``config.arch``, ``summary.acc``, ``summary.loss`` and 0-2 tags.
Writes ``bench/results/runs_query.json``.

    .venv/bin/python bench/bench_runs_query.py [--runs N] [--no-mlflow]
"""

from __future__ import annotations

import argparse
import json
import os
import random
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from bench.common import BENCH, ENV, TOP, WORK, save  # noqa: E402

MLFLOW_VENV = BENCH / ".venv-mlflow"
DVX_FILTER = 'config.lr < 1e-3 and (summary.acc >= 0.9 or tags contains "baseline") and config.arch ~ "^resnet"'
DVX_ORDER = "-summary.acc"
# the closest MLflow can say (it has no OR, mlflow#6075; no regex): lr and acc only
SIMPLE_FILTER = "config.lr < 1e-3 and summary.acc >= 0.9"
MLFLOW_FILTER = "metrics.lr < 0.001 and metrics.acc >= 0.9"
MLFLOW_ORDER = ["metrics.acc DESC"]
ARCHS = ["resnet18", "resnet50", "vit-b", "convnext", "mlp"]
TAGS = ["baseline", "ablation", "sweep"]


def params(i: int) -> dict:
    rng = random.Random(i)
    tags = sorted(rng.sample(TAGS, rng.randint(0, 2)))
    return {"lr": 10 ** rng.uniform(-5, -1), "batch": rng.choice([32, 64, 128, 256]), "arch": rng.choice(ARCHS),
            "acc": rng.random(), "loss": rng.random() * 3, "tags": tags}


def _repo(path: Path) -> None:
    shutil.rmtree(path, ignore_errors=True)
    path.mkdir(parents=True)
    subprocess.run(["git", "init", "-q", "-b", "main", str(path)], check=True)
    (path / "train.py").write_text("print('train')\n")
    subprocess.run(["git", "add", "train.py"], cwd=path, check=True)
    subprocess.run(["git", "commit", "-qm", "code"], cwd=path, check=True, env=ENV)
    subprocess.run([sys.executable, "-m", "dvx", "init"], cwd=path, check=True, env=ENV,
                   stdout=subprocess.DEVNULL)


def make_runs(path: Path, n: int, real: int = 5) -> float:
    """``real`` runs through dvx.init, ``n - real`` through commit_run; returns seconds."""
    os.environ.update({k: v for k, v in ENV.items() if k.startswith("GIT_")})
    import dvx.runs as dr
    from dvx.repo import Repository
    from dvx.runs.commit import commit_run
    from dvx.runs.record import new_run_id

    t0 = time.perf_counter()
    template = None
    for i in range(real):
        p = params(i)
        with dr.init(dir=str(path), name=f"{p['arch']}-{i}", config={k: p[k] for k in ("lr", "batch", "arch")},
                     tags=p["tags"], project="bench", system_metrics=False, capture_output=False) as run:
            for step in range(10):
                run.log({"acc": p["acc"] * step / 9, "loss": p["loss"] * (10 - step) / 10}, step=step)
        template = run
    repo = Repository.find(str(path))
    from dvx.runs.catalog import find_run

    base = find_run(repo, template.id)  # type: ignore[union-attr]
    base = {k: v for k, v in base.items() if k not in ("ref", "commit")}
    base["files"] = {}
    base["history"] = {"points": 0, "next_seq": 0, "last_step": None, "keys": {}}
    start = time.time() - n * 60
    with tempfile.TemporaryDirectory() as empty:
        for i in range(real, n):
            p = params(i)
            rec = json.loads(json.dumps(base))
            rec.update(id=new_run_id(), name=f"{p['arch']}-{i}", tags=p["tags"], session=new_run_id(),
                       config={k: p[k] for k in ("lr", "batch", "arch")},
                       summary={"acc": p["acc"], "loss": p["loss"]},
                       start_time=start + i * 60, end_time=start + i * 60 + 30, state="finished", exit_code=0)
            commit_run(repo, empty, rec, old=None)
            if i % 1000 == 0:
                print(f"  {i} runs", flush=True)
    return time.perf_counter() - t0


def timed(fn, repeat: int) -> tuple[float, object]:  # type: ignore[no-untyped-def]
    times, out = [], None
    for _ in range(repeat):
        t = time.perf_counter()
        out = fn()
        times.append(time.perf_counter() - t)
    return statistics.median(times), out


def bench_dvx(path: Path) -> dict:
    from dvx.runs import index
    from dvx.runs.api import Api

    api = Api(str(path))
    res: dict = {}
    os.unlink(index.index_path(api.repo)) if os.path.exists(index.index_path(api.repo)) else None
    cpu = time.process_time()
    res["index_rebuild_s"], count = timed(api.reindex, 3)
    res["index_rebuild_cpu_s"] = (time.process_time() - cpu) / 3  # CPU time: the VM is shared
    res["runs"] = count
    res["index_bytes"] = os.path.getsize(index.index_path(api.repo))
    api.runs(DVX_FILTER, DVX_ORDER)  # warm
    res["python_warm_s"], found = timed(lambda: api.runs(DVX_FILTER, DVX_ORDER), 20)
    res["python_matches"] = len(found)  # type: ignore[arg-type]
    res["python_warm_simple_s"], found = timed(lambda: api.runs(SIMPLE_FILTER, DVX_ORDER), 20)
    res["python_simple_matches"] = len(found)  # type: ignore[arg-type]
    res["python_warm_all_s"], found = timed(lambda: api.runs(), 10)
    res["python_warm_dict_s"], _ = timed(lambda: api.runs(
        {"$and": [{"config.lr": {"$lt": 1e-3}}, {"$or": [{"summary.acc": {"$gte": 0.9}},
                                                      {"tags": {"$in": ["baseline"]}}]}]}, DVX_ORDER), 20)
    cmd = [sys.executable, "-m", "dvx", "runs", "list", "--filter", DVX_FILTER, "--sort", DVX_ORDER,
           "--limit", "20"]
    env = dict(ENV, PYTHONPATH=str(TOP))
    subprocess.run(cmd, cwd=path, env=env, check=True, capture_output=True)
    import resource

    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    res["cli_warm_s"], _ = timed(
        lambda: subprocess.run(cmd, cwd=path, env=env, check=True, capture_output=True), 5)
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    res["cli_warm_cpu_s"] = (after.ru_utime + after.ru_stime - before.ru_utime - before.ru_stime) / 5
    cmd_all = [sys.executable, "-m", "dvx", "runs", "list", "--filter", DVX_FILTER, "--sort", DVX_ORDER]
    res["cli_warm_all_matches_s"], _ = timed(
        lambda: subprocess.run(cmd_all, cwd=path, env=env, check=True, capture_output=True), 3)
    # staleness: one more run (a ref added) brings the index up to date incrementally
    import dvx.runs as dr

    with dr.init(dir=str(path), name="one-more", config={"lr": 1e-4, "arch": "resnet18"},
                 system_metrics=False, capture_output=False) as run:
        run.log({"acc": 0.99})
    t = time.perf_counter()
    found = api.runs(DVX_FILTER, DVX_ORDER)
    res["python_after_new_ref_s"] = time.perf_counter() - t
    assert run.id in [r.id for r in found], "the new run must be found"
    return res


def bench_history(path: Path, points: int) -> dict:
    import dvx.runs as dr
    from dvx.runs.api import Api

    t = time.perf_counter()
    with dr.init(dir=str(path), name="long", system_metrics=False, capture_output=False) as run:
        for step in range(points // 2):
            run.log({"loss": 1.0 / (step + 1), "acc": step / points}, step=step)
    made = time.perf_counter() - t
    api = Api(str(path))
    r = api.run(run.id)
    r.history("loss")
    one, table = timed(lambda: r.history("loss"), 5)
    both, _ = timed(lambda: r.history(), 3)
    return {"points": points, "make_s": made, "history_one_key_s": one, "history_one_key_rows": table.num_rows,  # type: ignore[attr-defined]
            "history_all_keys_s": both}


MLFLOW_SCRIPT = r"""
import json, os, random, sys, time, statistics
import mlflow
from mlflow.tracking import MlflowClient
from mlflow.entities import Metric, Param, RunTag
root, n = sys.argv[1], int(sys.argv[2])
params = json.load(open(os.path.join(root, "params.json")))
uri = "sqlite:///" + os.path.join(root, "mlflow.db")
mlflow.set_tracking_uri(uri)
client = MlflowClient(uri)
found = client.get_experiment_by_name("bench")
made_before = found is not None and len(mlflow.search_runs([found.experiment_id], max_results=n + 1)) == n
exp = found.experiment_id if made_before else client.create_experiment(
    "bench", artifact_location=os.path.join(root, "artifacts"))
t0 = time.perf_counter()
now = int(time.time() * 1000)
for i, p in enumerate([] if made_before else params):
    run = client.create_run(exp, run_name=f"{p['arch']}-{i}", start_time=now + i)
    client.log_batch(run.info.run_id,
                     metrics=[Metric("acc", p["acc"], now, 0), Metric("loss", p["loss"], now, 0),
                              Metric("lr", p["lr"], now, 0)],
                     params=[Param("lr", repr(p["lr"])), Param("batch", str(p["batch"])),
                             Param("arch", p["arch"])],
                     tags=[RunTag(t, "true") for t in p["tags"]])
    client.set_terminated(run.info.run_id)
    if i % 1000 == 0:
        print(f"  mlflow {i} runs", file=sys.stderr, flush=True)
made = time.perf_counter() - t0
def timed(fn, k):
    ts, out = [], None
    for _ in range(k):
        t = time.perf_counter(); out = fn(); ts.append(time.perf_counter() - t)
    return statistics.median(ts), out
ids = [exp]
res = {"mlflow": mlflow.__version__, "make_s": None if made_before else made}
res["search_all_s"], df = timed(lambda: mlflow.search_runs(ids, max_results=100000), 3)
res["search_all_rows"] = len(df)
res["search_sorted_s"], df = timed(lambda: mlflow.search_runs(
    ids, order_by=["metrics.acc DESC"], max_results=100000), 3)
res["search_filtered_sorted_s"], df = timed(lambda: mlflow.search_runs(
    ids, filter_string=sys.argv[3], order_by=["metrics.acc DESC"], max_results=100000), 3)
res["search_filtered_sorted_rows"] = len(df)
print(json.dumps(res))
"""


def ensure_mlflow() -> Path | None:
    py = MLFLOW_VENV / "bin" / "python"
    if not py.exists():
        subprocess.run([sys.executable, "-m", "venv", str(MLFLOW_VENV)], check=True)
    if subprocess.run([str(py), "-c", "import mlflow"], capture_output=True).returncode != 0:
        print(f"installing mlflow into {MLFLOW_VENV}", flush=True)
        if subprocess.run([str(py), "-m", "pip", "install", "-q", "mlflow"]).returncode != 0:
            return None
    return py


def bench_mlflow(n: int, reuse: bool = False) -> dict:
    py = ensure_mlflow()
    if py is None:
        return {"error": "mlflow could not be installed"}
    root = WORK / "runs-query-mlflow"
    if not (reuse and (root / "mlflow.db").is_file()):
        shutil.rmtree(root, ignore_errors=True)
    root.mkdir(parents=True, exist_ok=True)
    (root / "params.json").write_text(json.dumps([params(i) for i in range(n)]))
    script = root / "bench_mlflow.py"
    script.write_text(MLFLOW_SCRIPT)
    out = subprocess.run([str(py), str(script), str(root), str(n), MLFLOW_FILTER], check=True,
                         capture_output=True,
                         text=True, env=dict(os.environ, MLFLOW_TRACKING_URI=""))
    return json.loads(out.stdout.splitlines()[-1])


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--runs", type=int, default=10_000)
    ap.add_argument("--points", type=int, default=1_000_000)
    ap.add_argument("--no-mlflow", action="store_true")
    ap.add_argument("--reuse", action="store_true", help="keep the runs made by a previous invocation")
    args = ap.parse_args()
    path = WORK / "runs-query"
    results: dict = {"runs": args.runs, "filter": DVX_FILTER, "order": DVX_ORDER}
    if not (args.reuse and (path / ".dvx").is_dir()):
        _repo(path)
        print(f"making {args.runs} runs in {path}", flush=True)
        results["make_runs_s"] = make_runs(path, args.runs)
    results["dvx"] = bench_dvx(path)
    hist_repo = WORK / "runs-query-history"
    _repo(hist_repo)
    results["history"] = bench_history(hist_repo, args.points)
    if not args.no_mlflow:
        print(f"making {args.runs} MLflow runs (SQLite)", flush=True)
        results["mlflow"] = bench_mlflow(args.runs, args.reuse)
    d, h = results["dvx"], results["history"]
    print(f"\n{args.runs} runs; filter {DVX_FILTER!r}, sort {DVX_ORDER}")
    print(f"  dvx.Api().runs warm          {d['python_warm_s'] * 1e3:8.1f} ms  (bar 50 ms; "
          f"{d['python_matches']} runs)")
    print(f"  same, simple filter          {d['python_warm_simple_s'] * 1e3:8.1f} ms  "
          f"({d['python_simple_matches']} runs)")
    print(f"  same, dict filter            {d['python_warm_dict_s'] * 1e3:8.1f} ms")
    print(f"  all runs, no filter          {d['python_warm_all_s'] * 1e3:8.1f} ms")
    print(f"  dvx runs list (CLI, -n 20)   {d['cli_warm_s'] * 1e3:8.1f} ms  (bar 300 ms; CPU time "
          f"{d['cli_warm_cpu_s'] * 1e3:.0f} ms)")
    print(f"  dvx runs list (CLI, all)     {d['cli_warm_all_matches_s'] * 1e3:8.1f} ms")
    print(f"  index rebuilt from git       {d['index_rebuild_s'] * 1e3:8.1f} ms  (bar 2000 ms; CPU time "
          f"{d['index_rebuild_cpu_s'] * 1e3:.0f} ms; {d['index_bytes'] / 1e6:.1f} MB)")
    print(f"  query after one new ref      {d['python_after_new_ref_s'] * 1e3:8.1f} ms")
    print(f"  history('loss'), {h['points']} pts {h['history_one_key_s'] * 1e3:8.1f} ms  (bar 100 ms; "
          f"{h['history_one_key_rows']} rows)")
    print(f"  history(), both keys          {h['history_all_keys_s'] * 1e3:8.1f} ms")
    m = results.get("mlflow")
    if m and "error" not in m:
        print(f"  mlflow {m['mlflow']} search_runs: all {m['search_all_s']:.2f} s, "
              f"sorted {m['search_sorted_s']:.2f} s, filtered+sorted {m['search_filtered_sorted_s']:.2f} s "
              f"({m['search_filtered_sorted_rows']} runs)")
        fs = m["search_filtered_sorted_s"]
        print(f"  ratio filtered+sorted: mlflow / dvx Python = {fs / d['python_warm_simple_s']:.0f}x, "
              f"mlflow / dvx CLI = {fs / d['cli_warm_s']:.0f}x; "
              f"sorted all: mlflow / dvx Python = {m['search_sorted_s'] / d['python_warm_all_s']:.0f}x")
    elif m:
        print(f"  mlflow: {m['error']}")
    save("runs_query", results)


if __name__ == "__main__":
    main()
