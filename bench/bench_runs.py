"""Cost of recording a run (issue 10 bars: ``run.log`` median ≤ 5 µs and p99 ≤ 50 µs per
call, one scalar and ten scalars; ``finish()`` ≤ 100 ms after 100,000 buffered points).

DVX only, for now: the peers (wandb offline, MLflow, DVCLive) come with the rest of the
issue. Each call is timed on its own with ``perf_counter_ns`` (the timer's own cost,
printed, is included in the figures). ``finish()`` is timed right after the last of
100,000 ``log`` calls, so most points are still in memory: it writes them, stores the
segments, writes the commit and moves the ref. Writes ``bench/results/runs.json``.

    .venv/bin/python bench/bench_runs.py [--quick]
"""

from __future__ import annotations

import json
import os
import shutil
import statistics
import subprocess
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from bench.common import BENCH, ENV, WORK  # noqa: E402

RESULTS = BENCH / "results"


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
                   stdout=subprocess.DEVNULL)
    return path


def _percentile(values: list[int], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))] / 1000.0


def measure(keys: int, calls: int) -> dict[str, float]:
    import dvx.runs as dr

    os.chdir(_repo(f"runs-{keys}"))
    os.environ.update({k: v for k, v in ENV.items() if k.startswith("GIT_")})
    run = dr.init(project="bench", system_metrics_interval=10.0, capture_output=False)
    payloads = [{f"metric_{j}": float(i + j) for j in range(keys)} for i in range(1000)]
    clock = time.perf_counter_ns
    log = run.log
    times = [0] * calls
    for i in range(calls):
        d = payloads[i % 1000]
        t0 = clock()
        log(d)
        times[i] = clock() - t0
    t0 = time.perf_counter()
    run.finish()
    finish_ms = (time.perf_counter() - t0) * 1000
    empty = []
    for _ in range(10000):
        t0 = clock()
        empty.append(clock() - t0)
    size = sum(os.path.getsize(os.path.join(d, f)) for d, _, fs in os.walk(".dvx/store") for f in fs)
    return {"keys": keys, "calls": calls, "median_us": _percentile(times, 0.5),
            "p99_us": _percentile(times, 0.99),
            "max_us": max(times) / 1000.0, "mean_us": statistics.fmean(times) / 1000.0,
            "timer_overhead_us": _percentile(empty, 0.5), "finish_ms": finish_ms, "points": calls * keys,
            "store_bytes": size}


def main() -> None:
    calls = 10_000 if "--quick" in sys.argv else 100_000
    results = []
    for keys in (1, 10):
        r = measure(keys, calls)
        results.append(r)
        print(f"log() {keys:2d} scalar(s) x {calls}: median {r['median_us']:.2f} µs, p99 {r['p99_us']:.2f} µs, "
              f"max {r['max_us']:.0f} µs (timer {r['timer_overhead_us']:.2f} µs); finish() after "
              f"{r['points']} points {r['finish_ms']:.0f} ms; store {r['store_bytes'] / 1e6:.2f} MB")
    os.makedirs(RESULTS, exist_ok=True)
    with open(os.path.join(RESULTS, "runs-quick.json" if "--quick" in sys.argv else "runs.json"), "w") as f:
        json.dump({"date": time.strftime("%Y-%m-%d %H:%M"), "results": results}, f, indent=2)


if __name__ == "__main__":
    main()
