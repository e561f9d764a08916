"""Cost of recording a run, DVX against wandb (offline), MLflow (local SQLite store) and
DVCLive (issue 10: ``run.log`` median ≤ 5 µs and p99 ≤ 50 µs per call, one scalar and
ten scalars, ≥ 20x cheaper than each peer; ``finish()`` ≤ 100 ms after 100,000
buffered points).

Each peer is installed from PyPI into its own environment, ``bench/.venv-<peer>``
(never a DVX dependency); a peer that cannot be installed is reported and skipped. Every
tool runs the same loop in its own process: ``calls`` logging calls of one scalar (or
of ten), each timed on its own with ``perf_counter_ns`` (the timer's own cost, printed,
is in every figure), then the tool's finish, then the bytes it left on disk. A peer
too slow to make 100,000 calls within ``--budget`` seconds stops there (the calls it
made are printed): its per-call figures stand, its finish covers fewer points.

``finish()`` of DVX is also measured on its own, ``--trials`` times on fresh
repositories (median, and the CPU time of the process during finish, which the load of
a shared machine does not inflate). Writes ``bench/results/runs.json``.

    .venv/bin/python bench/bench_runs.py [--quick] [--trials N] [--budget S] [--peers wandb,mlflow,dvclive]
                                         [--out runs.json]
"""

from __future__ import annotations

import contextlib
import json
import os
import platform
import shutil
import statistics
import subprocess
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from bench.common import BENCH, ENV, WORK  # noqa: E402

RESULTS = BENCH / "results"
PEERS = {"wandb": ["wandb"], "mlflow": ["mlflow"], "dvclive": ["dvclive"]}
# MLflow's asynchronous logging drains ~100 points a second into SQLite here at finish
# (10,000 calls: 86-109 s): 100,000 calls would block finish for a quarter of an hour.
MAX_CALLS = {"mlflow": 10_000}

# The loop every tool runs, in its own process: argv = tool, keys, calls, budget, dir.
LOOP = r'''
import json, os, sys, time
tool, keys, calls, budget, where = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), float(sys.argv[4]), \
    sys.argv[5]
os.chdir(where)
payloads = [{f"metric_{j}": float(i + j) for j in range(keys)} for i in range(1000)]
if tool == "dvx":
    import dvx
    run = dvx.init(project="bench", capture_output=False)
    log = run.log
    finish = run.finish
    version = "dvx " + dvx.__version__
elif tool == "wandb":
    import wandb
    run = wandb.init(project="bench", mode="offline", dir=where,
                     settings=wandb.Settings(console="off", silent=True))
    log = run.log
    finish = run.finish
    version = "wandb " + wandb.__version__
elif tool == "mlflow":
    import inspect
    import mlflow
    mlflow.set_tracking_uri(f"sqlite:///{where}/mlflow.db")
    mlflow.set_experiment("bench")
    mlflow.start_run()
    step = [0]
    sync = {"synchronous": False} if "synchronous" in inspect.signature(mlflow.log_metrics).parameters else {}
    if keys == 1:
        def log(d, log_metric=mlflow.log_metric, step=step):
            (k, v), = d.items()
            log_metric(k, v, step=step[0], **sync)
            step[0] += 1
    else:
        def log(d, log_metrics=mlflow.log_metrics, step=step):
            log_metrics(d, step=step[0], **sync)
            step[0] += 1
    finish = mlflow.end_run
    version = "mlflow " + mlflow.__version__ + (" (async logging)" if sync else " (synchronous)")
elif tool == "dvclive":
    import dvclive
    live = dvclive.Live(dir=os.path.join(where, "dvclive"), save_dvc_exp=False, report=None)
    def log(d, live=live):
        for k, v in d.items():
            live.log_metric(k, v)
        live.next_step()
    finish = live.end
    from importlib.metadata import version as _v
    version = "dvclive " + _v("dvclive")
clock = time.perf_counter_ns
times = []
append = times.append
deadline = time.perf_counter() + budget
t_loop = time.perf_counter()
for i in range(calls):
    d = payloads[i % 1000]
    t0 = clock()
    log(d)
    append(clock() - t0)
    if i % 1000 == 999 and time.perf_counter() > deadline:
        break
loop_s = time.perf_counter() - t_loop
buffered = len(run._rows) // 3 if tool == "dvx" else None  # calls not yet written when finish starts
c0 = time.process_time()
t0 = time.perf_counter()
finish()
finish_ms = (time.perf_counter() - t0) * 1000
finish_cpu_ms = (time.process_time() - c0) * 1000
empty = []
for _ in range(10000):
    t0 = clock()
    empty.append(clock() - t0)
times.sort()
empty.sort()
print(json.dumps({"tool": tool, "version": version, "keys": keys, "calls": len(times), "loop_s": loop_s,
                  "median_us": times[len(times) // 2] / 1000, "p99_us": times[int(0.99 * len(times))] / 1000,
                  "max_us": times[-1] / 1000, "mean_us": sum(times) / len(times) / 1000,
                  "timer_us": empty[len(empty) // 2] / 1000, "finish_ms": finish_ms,
                  "finish_cpu_ms": finish_cpu_ms, "buffered_at_finish": buffered}))
'''


def _du(path: str) -> int:
    total = 0
    for d, _, files in os.walk(path):
        for f in files:
            with contextlib.suppress(OSError):
                total += os.lstat(os.path.join(d, f)).st_size
    return total


def _repo(name: str) -> str:
    path = str(WORK / name)
    shutil.rmtree(path, ignore_errors=True)
    os.makedirs(path)
    subprocess.run(["git", "init", "-q", "-b", "main", path], check=True)
    with open(os.path.join(path, "train.py"), "w") as f:
        f.write("print('train')\n")
    subprocess.run(["git", "add", "train.py"], cwd=path, check=True)
    subprocess.run(["git", "commit", "-qm", "code"], cwd=path, check=True, env=ENV)
    subprocess.run([sys.executable, "-m", "dvx", "init"], cwd=path, check=True, env=ENV,
                   stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    return path


def ensure_peer(name: str) -> str | None:
    """bench/.venv-<name> with the peer installed from PyPI; its python, or None."""
    venv = BENCH / f".venv-{name}"
    py = venv / "bin" / "python"
    try:
        if not py.exists():
            subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
        if subprocess.run([str(py), "-c", f"import {name}"], capture_output=True).returncode != 0:
            print(f"installing {name} into {venv}", flush=True)
            subprocess.run([str(py), "-m", "pip", "install", "-q", *PEERS[name]], check=True,
                           capture_output=True)
    except (OSError, subprocess.CalledProcessError) as exc:
        print(f"{name}: could not be installed from PyPI here ({exc}); skipped", flush=True)
        return None
    return str(py)


def measure(tool: str, python: str, keys: int, calls: int, budget: float) -> dict:
    if tool == "dvx":
        where = _repo(f"runs-dvx-{keys}")
        env = dict(ENV, PYTHONPATH=str(BENCH.parent))
        before = _du(os.path.join(where, ".dvx")) + _du(os.path.join(where, ".git"))
    else:
        # outside any git repository: DVCLive would otherwise run `dvc init` in the
        # enclosing one (this checkout) and stage its files there
        where = os.path.join(tempfile.gettempdir(), "dvx-bench-runs", f"{tool}-{keys}")
        shutil.rmtree(where, ignore_errors=True)
        os.makedirs(where)
        env = dict(ENV, WANDB_SILENT="true", WANDB_MODE="offline", MLFLOW_ENABLE_ASYNC_LOGGING="true",
                   DVCLIVE_OPEN="false", DO_NOT_TRACK="1", PYTHONPATH="")
        before = 0
    with tempfile.NamedTemporaryFile("w", suffix=".py", delete=False) as f:
        f.write(LOOP)
    try:
        n = min(calls, MAX_CALLS.get(tool, calls))
        proc = subprocess.run([python, f.name, tool, str(keys), str(n), str(budget), where],
                              capture_output=True, text=True, env=env, timeout=budget + 600)
    except subprocess.TimeoutExpired:
        return {"tool": tool, "keys": keys, "error": f"did not finish within {budget + 600:.0f} s"}
    finally:
        os.unlink(f.name)
    lines = [ln for ln in proc.stdout.splitlines() if ln.startswith('{"tool"')]
    if not lines:  # (a peer that crashes at interpreter exit, after its figures, still counts)
        return {"tool": tool, "keys": keys, "error": (proc.stderr or proc.stdout).strip().splitlines()[-1:]}
    result = json.loads(lines[-1])
    time.sleep(1.0 if tool == "dvx" else 3.0)  # DVX deletes its state dir in a thread; wandb syncs files
    result["disk_bytes"] = (_du(os.path.join(where, ".dvx")) + _du(os.path.join(where, ".git")) - before
                            if tool == "dvx" else _du(where))
    result["points"] = result["calls"] * keys
    return result


def finish_trials(trials: int, calls: int) -> list[dict]:
    """DVX's ``finish()`` after ``calls`` one-scalar calls, on fresh repositories."""
    out = []
    for i in range(trials):
        r = measure("dvx", sys.executable, 1, calls, 3600.0)
        out.append({k: r[k] for k in ("finish_ms", "finish_cpu_ms", "loop_s", "median_us", "p99_us",
                                      "buffered_at_finish")})
        print(f"  finish trial {i + 1}: {r['finish_ms']:.0f} ms wall, {r['finish_cpu_ms']:.0f} ms CPU "
              f"(loop {r['loop_s'] * 1000:.0f} ms, {r['buffered_at_finish']} calls still buffered)", flush=True)
    return out


def main() -> None:
    quick = "--quick" in sys.argv
    calls = 10_000 if quick else 100_000

    def opt(name: str, default: str) -> str:
        return sys.argv[sys.argv.index(name) + 1] if name in sys.argv else default

    trials = int(opt("--trials", "3" if quick else "7"))
    budget = float(opt("--budget", "10" if quick else "30"))
    peers = [p for p in opt("--peers", "wandb,mlflow,dvclive").split(",") if p]
    print(f"machine: {platform.machine()}, {os.cpu_count()} cores, Python {platform.python_version()}, "
          f"load {os.getloadavg()[0]:.1f}", flush=True)
    print(f"DVX finish() after {calls} one-scalar calls, {trials} trials:", flush=True)
    trials_out = finish_trials(trials, calls)
    walls = [t["finish_ms"] for t in trials_out]
    cpus = [t["finish_cpu_ms"] for t in trials_out]
    print(f"  median {statistics.median(walls):.0f} ms wall (min {min(walls):.0f}, max {max(walls):.0f}), "
          f"median {statistics.median(cpus):.0f} ms CPU; bar ≤ 100 ms", flush=True)
    pythons = {"dvx": sys.executable}
    for p in peers:
        py = ensure_peer(p)
        if py is not None:
            pythons[p] = py
    results = []
    for keys in (1, 10):
        row = {}
        for tool, py in pythons.items():
            r = measure(tool, py, keys, calls, budget)
            results.append(r)
            row[tool] = r
            if "error" in r:
                print(f"{tool:8s} {keys:2d} scalar(s): failed: {r['error']}", flush=True)
                continue
            print(f"{r['version']:40s} {keys:2d} scalar(s) x {r['calls']:6d}: median {r['median_us']:8.2f} µs, "
                  f"p99 {r['p99_us']:9.2f} µs (timer {r['timer_us']:.2f}); finish {r['finish_ms']:8.0f} ms; "
                  f"disk {r['disk_bytes'] / 1e6:7.2f} MB", flush=True)
        d = row.get("dvx")
        if d and "error" not in d:
            for tool, r in row.items():
                if tool == "dvx" or "error" in r:
                    continue
                print(f"  {keys:2d} scalar(s): DVX vs {tool}: {r['median_us'] / d['median_us']:.0f}x cheaper "
                      f"(median), {r['p99_us'] / d['p99_us']:.0f}x (p99); bar ≥ 20x", flush=True)
    os.makedirs(RESULTS, exist_ok=True)
    name = opt("--out", "runs-quick.json" if quick else "runs.json")
    with open(os.path.join(RESULTS, name), "w") as f:
        json.dump({"date": time.strftime("%Y-%m-%d %H:%M"), "machine": platform.platform(),
                   "cores": os.cpu_count(), "python": platform.python_version(),
                   "finish_trials": trials_out, "results": results}, f, indent=2)


if __name__ == "__main__":
    main()
