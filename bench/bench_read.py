"""Read-API benchmark: ``dvx.open`` / ``DVXFileSystem`` against ``dvc.api.open`` /
``DVCFileSystem``, measured in one run on the same data (issue #12 item 6).

    .venv/bin/python bench/bench_read.py [--quick]

Builds under bench/.work/read/ one git repository tracked by both tools: a 1 GiB
random file ``big.bin`` (committed, tagged ``old``, then 1 MiB of it overwritten and
committed again, so ``old`` is an old revision) and a directory ``many/`` of 100,000
files of 1-8 KiB. Then, each tool in its own process, with its local cache/store warm:

* open at the ``old`` commit (its id, as the issue's bar says; by tag too, for DVX)
  + read of a 1 MiB range at a random offset, per call (median of
  many calls; the first call, which opens the repository, is reported apart);
* sequential read of the 1 GiB file at ``old`` through the file object (8 MiB reads);
* listing of the 100,000-file directory at ``old`` (first call after the reads above,
  and warm), and the number of remote readers opened (DVX: 0 means no remote
  request could have been made); the same listing in a process that does nothing
  else (the first call opens the repository), and the CLI ``dvx ls many --rev old``
  (text and ``--json``) as whole processes.

Prints ratios and writes bench/results/read.json (read-quick.json with --quick).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

from common import DVX, ENV, TOP, WORK, ensure_peers, random_file, save, small_files, version_of

MiB = 1 << 20
GiB = 1 << 30

DVX_SCRIPT = r"""
import json, os, random, sys, time
t0 = time.perf_counter()
import dvx
from dvx.access.fs import DVXFileSystem
import dvx.access.source as source
size, calls, OLD = int(sys.argv[1]), int(sys.argv[2]), sys.argv[3]
out = {}
rng = random.Random(1)
MiB = 1 << 20
# warm: the packs in the page cache (new packs are written with direct I/O, so a fresh
# store is not in it), the repository opened
with dvx.open("big.bin", rev=OLD) as f:
    while f.read(64 * MiB):
        pass
def one():
    off = rng.randrange(0, size - MiB)
    with dvx.open("big.bin", rev=OLD) as f:
        f.seek(off)
        assert len(f.read(MiB)) == MiB
t = time.perf_counter(); one(); out["open_first_after_warmup_s"] = time.perf_counter() - t
times = []
for _ in range(calls):
    t = time.perf_counter(); one(); times.append(time.perf_counter() - t)
times.sort()
out["open_range_median_s"] = times[len(times) // 2]
out["open_range_p90_s"] = times[int(len(times) * 0.9)]
# by tag: the tag is resolved on every call (it may move)
times = []
for _ in range(calls):
    off = rng.randrange(0, size - MiB)
    t = time.perf_counter()
    with dvx.open("big.bin", rev="old") as f:
        f.seek(off)
        assert len(f.read(MiB)) == MiB
    times.append(time.perf_counter() - t)
times.sort()
out["open_range_by_tag_median_s"] = times[len(times) // 2]
# the same through the fsspec filesystem (cat_file of a range)
fs = DVXFileSystem(rev="old")
times = []
for _ in range(calls):
    off = rng.randrange(0, size - MiB)
    t = time.perf_counter(); assert len(fs.cat_file("big.bin", off, off + MiB)) == MiB
    times.append(time.perf_counter() - t)
times.sort()
out["fs_cat_range_median_s"] = times[len(times) // 2]
# sequential read of the whole file, warm: best of 3
best = None
buf = bytearray(8 * MiB)
for _ in range(3):
    t = time.perf_counter()
    n = 0
    with dvx.open("big.bin", rev="old") as f:
        while True:
            got = f.readinto(buf)
            if not got:
                break
            n += got
    dt = time.perf_counter() - t
    assert n == size
    best = dt if best is None else min(best, dt)
out["sequential_s"] = best
out["sequential_GBps"] = size / best / 1e9
# ls of the 100,000-file directory at the old revision (wall and CPU: a shared VM)
for label in ("ls_first", "ls_warm"):
    t, c = time.perf_counter(), time.process_time()
    rows = dvx.ls("many", rev="old")
    out[label + "_s"], out[label + "_cpu_s"] = time.perf_counter() - t, time.process_time() - c
out["ls_rows"] = len(rows)
del rows
for label in ("fs_find_first_s", "fs_find_warm_s"):
    t = time.perf_counter(); found = fs.find("many"); out[label] = time.perf_counter() - t
out["fs_find_rows"] = len(found)
out["remote_readers_opened"] = sum(len(s._readers) for s in source._SOURCES.values())
out["process_s"] = time.perf_counter() - t0
print(json.dumps(out))
"""

# ``dvx.ls`` in a process that has done nothing else: the first call opens the
# repository (and imports what that needs); then warm calls, best and median of 5
LS_SCRIPT = r"""
import json, time
t0, c0 = time.perf_counter(), time.process_time()
import dvx
out = {"import_s": time.perf_counter() - t0}
t, c = time.perf_counter(), time.process_time()
rows = dvx.ls("many", rev="old")
out["ls_fresh_s"], out["ls_fresh_cpu_s"] = time.perf_counter() - t, time.process_time() - c
n = len(rows)
del rows
walls, cpus = [], []
for _ in range(5):
    t, c = time.perf_counter(), time.process_time()
    rows = dvx.ls("many", rev="old")
    walls.append(time.perf_counter() - t); cpus.append(time.process_time() - c)
    del rows
walls.sort(); cpus.sort()
out.update(ls_warm_best_s=walls[0], ls_warm_median_s=walls[2], ls_warm_best_cpu_s=cpus[0],
           ls_warm_median_cpu_s=cpus[2], ls_rows=n, process_s=time.perf_counter() - t0)
print(json.dumps(out))
"""

DVC_SCRIPT = r"""
import json, os, random, sys, time
t0 = time.perf_counter()
import dvc.api
from dvc.api import DVCFileSystem
size, calls, OLD = int(sys.argv[1]), int(sys.argv[2]), sys.argv[3]
out = {}
rng = random.Random(1)
MiB = 1 << 20
with dvc.api.open("big.bin", rev=OLD, mode="rb") as f:  # warm, as for DVX
    while f.read(64 * MiB):
        pass
def one():
    off = rng.randrange(0, size - MiB)
    with dvc.api.open("big.bin", rev=OLD, mode="rb") as f:
        f.seek(off)
        assert len(f.read(MiB)) == MiB
t = time.perf_counter(); one(); out["open_first_after_warmup_s"] = time.perf_counter() - t
times = []
for _ in range(calls):
    t = time.perf_counter(); one(); times.append(time.perf_counter() - t)
times.sort()
out["open_range_median_s"] = times[len(times) // 2]
out["open_range_p90_s"] = times[int(len(times) * 0.9)]
fs = DVCFileSystem(".", rev="old")
times = []
for _ in range(calls):
    off = rng.randrange(0, size - MiB)
    t = time.perf_counter(); assert len(fs.cat_file("big.bin", start=off, end=off + MiB)) == MiB
    times.append(time.perf_counter() - t)
times.sort()
out["fs_cat_range_median_s"] = times[len(times) // 2]
best = None
buf = bytearray(8 * MiB)
for _ in range(3):
    t = time.perf_counter()
    n = 0
    with dvc.api.open("big.bin", rev="old", mode="rb") as f:
        while True:
            got = f.readinto(buf)
            if not got:
                break
            n += got
    dt = time.perf_counter() - t
    assert n == size
    best = dt if best is None else min(best, dt)
out["sequential_s"] = best
out["sequential_GBps"] = size / best / 1e9
for label in ("fs_find_first_s", "fs_find_warm_s"):
    t = time.perf_counter(); found = fs.find("many"); out[label] = time.perf_counter() - t
out["fs_find_rows"] = len(found)
out["process_s"] = time.perf_counter() - t0
print(json.dumps(out))
"""


def sh(cmd: list[str], cwd: Path) -> str:
    proc = subprocess.run(cmd, cwd=cwd, env=ENV, capture_output=True, text=True)
    if proc.returncode != 0:
        raise RuntimeError(f"{' '.join(cmd)} failed:\n{proc.stdout}\n{proc.stderr}")
    return proc.stdout


def build(root: Path, size: int, n_files: int, dvc: str) -> None:
    """One git repository tracked by both tools (DVX pointers and DVC .dvc files side
    by side: each tool ignores the other's)."""
    if root.exists():
        shutil.rmtree(root)
    root.mkdir(parents=True)
    sh(["git", "init", "-q", "-b", "main"], root)
    sh([*DVX, "init"], root)
    sh([dvc, "init", "-q"], root)
    sh([dvc, "config", "core.autostage", "false"], root)
    random_file(root / "big.bin", size, 41)
    small_files(root / "many", n_files, 42)
    sh([*DVX, "add", "big.bin", "many"], root)
    # DVC must not see DVX's pointers as data, nor DVX DVC's files: separate names
    sh([dvc, "add", "-q", "big.bin", "many"], root)
    sh(["git", "add", "-A"], root)
    sh(["git", "commit", "-q", "-m", "old"], root)
    sh(["git", "tag", "old"], root)
    with open(root / "big.bin", "r+b") as f:  # a new version: 1 MiB overwritten
        f.seek(size // 2)
        f.write(os.urandom(MiB))
    sh([*DVX, "add", "big.bin"], root)
    sh([dvc, "add", "-q", "big.bin"], root)
    sh(["git", "add", "-A"], root)
    sh(["git", "commit", "-q", "-m", "new"], root)


def measure(python: str, script: str, root: Path, size: int, calls: int, pythonpath: str | None) -> dict:
    env = dict(ENV)
    if pythonpath is not None:
        env["PYTHONPATH"] = pythonpath
    old = sh(["git", "rev-parse", "old"], root).strip()
    proc = subprocess.run([python, "-c", script, str(size), str(calls), old], cwd=root, env=env,
                          capture_output=True, text=True)
    if proc.returncode != 0:
        raise RuntimeError(proc.stderr)
    return json.loads(proc.stdout.strip().splitlines()[-1])  # type: ignore[no-any-return]


def measure_ls(root: Path) -> dict:
    """``dvx.ls`` in a fresh process, and the CLI ``dvx ls many --rev old`` (text and
    ``--json``, to a pipe) as whole processes: best and median of 5 each."""
    env = dict(ENV, PYTHONPATH=str(TOP))
    proc = subprocess.run([sys.executable, "-c", LS_SCRIPT], cwd=root, env=env, capture_output=True, text=True)
    if proc.returncode != 0:
        raise RuntimeError(proc.stderr)
    res: dict = json.loads(proc.stdout.strip().splitlines()[-1])
    for label, extra in (("cli_ls", []), ("cli_ls_json", ["--json"])):
        times = []
        for _ in range(5):
            t = time.perf_counter()
            got = subprocess.run([*DVX, "ls", "many", "--rev", "old", *extra], cwd=root, env=env,
                                 capture_output=True)
            times.append(time.perf_counter() - t)
            if got.returncode != 0:
                raise RuntimeError(got.stderr.decode())
        times.sort()
        res[label + "_best_s"], res[label + "_median_s"] = times[0], times[2]
        res[label + "_bytes"] = len(got.stdout)
    return res


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--quick", action="store_true", help="64 MiB and 10,000 files")
    ap.add_argument("--calls", type=int, default=200)
    ap.add_argument("--skip-dvc", action="store_true")
    ap.add_argument("--reuse", action="store_true", help="measure again on the data of the last run")
    ap.add_argument("--ls-only", action="store_true", help="with --reuse: only the ls figures")
    args = ap.parse_args()
    size = 64 * MiB if args.quick else GiB
    n_files = 10_000 if args.quick else 100_000
    peers = None if args.skip_dvc else ensure_peers("dvc")
    dvc = str(peers / "dvc") if peers else "true"
    root = WORK / "read"
    if args.reuse and (root / "big.bin.dvx").exists():
        print(f"reusing {root}", flush=True)
    else:
        print(f"building {root}: {size // MiB} MiB file, {n_files} files", flush=True)
        build(root, size, n_files, dvc) if not args.skip_dvc else build_dvx_only(root, size, n_files)
    res: dict[str, object] = {"versions": {"dvx": version_of(DVX + ["--version"])},
                              "size": size, "files": n_files,
                              "load_average_before": os.getloadavg()}  # a shared 2-core VM
    res["ls"] = ls = measure_ls(root)
    if args.ls_only:
        res["load_average_after"] = os.getloadavg()
        print(json.dumps(res, indent=1))
        print_ls(ls, n_files)
        save("read-ls-quick" if args.quick else "read-ls", res)
        return
    res["dvx"] = d = measure(sys.executable, DVX_SCRIPT, root, size, args.calls, str(TOP))
    if peers:
        res["versions"]["dvc"] = version_of([dvc, "--version"])  # type: ignore[index]
        res["dvc"] = c = measure(str(peers / "python"), DVC_SCRIPT, root, size, max(10, args.calls // 10), None)
    else:
        c = {}
    res["load_average_after"] = os.getloadavg()
    print(json.dumps(res, indent=1))

    def ratio(key: str, bigger_is_better: bool = False) -> str:
        if key not in c or key not in d:
            return ""
        r = d[key] / c[key] if bigger_is_better else c[key] / d[key]
        return f"{r:.1f}x"

    print(f"open(rev=old) + 1 MiB range, warm, median: dvx {d['open_range_median_s'] * 1e3:.2f} ms"
          + (f", dvc {c['open_range_median_s'] * 1e3:.1f} ms ({ratio('open_range_median_s')})" if c else "")
          + "  [bar <= 2 ms]")
    print(f"  ... by tag (resolved each call): dvx {d['open_range_by_tag_median_s'] * 1e3:.2f} ms")
    print(f"fsspec cat_file 1 MiB range, median: dvx {d['fs_cat_range_median_s'] * 1e3:.2f} ms"
          + (f", dvc {c['fs_cat_range_median_s'] * 1e3:.1f} ms ({ratio('fs_cat_range_median_s')})"
             if c else ""))
    print(f"sequential read {size // MiB} MiB: dvx {d['sequential_GBps']:.2f} GB/s"
          + (f", dvc {c['sequential_GBps']:.2f} GB/s" if c else "") + "  [bar >= 1 GB/s]")
    print(f"ls {n_files} files at rev, after the reads above: dvx first {d['ls_first_s']:.3f} s "
          f"(CPU {d['ls_first_cpu_s']:.3f}), warm {d['ls_warm_s']:.3f} s (CPU {d['ls_warm_cpu_s']:.3f}); "
          f"remote readers opened: {d['remote_readers_opened']}  [bar <= 0.3 s, 0 requests]")
    print_ls(res["ls"], n_files)
    print(f"fs.find {n_files} files: dvx first {d['fs_find_first_s']:.3f} s, warm {d['fs_find_warm_s']:.3f} s"
          + (f"; dvc first {c['fs_find_first_s']:.3f} s, warm {c['fs_find_warm_s']:.3f} s" if c else ""))
    save("read-quick" if args.quick else "read", res)


def print_ls(ls: dict, n_files: int) -> None:
    print(f"ls {n_files} files at rev, fresh process: first call {ls['ls_fresh_s']:.3f} s "
          f"(CPU {ls['ls_fresh_cpu_s']:.3f}; after `import dvx` {ls['import_s']:.3f} s), "
          f"warm best/median {ls['ls_warm_best_s']:.3f}/{ls['ls_warm_median_s']:.3f} s "
          f"(CPU {ls['ls_warm_best_cpu_s']:.3f}/{ls['ls_warm_median_cpu_s']:.3f})  [bar <= 0.3 s]")
    print(f"CLI `dvx ls many --rev old` whole process, best/median: text {ls['cli_ls_best_s']:.3f}/"
          f"{ls['cli_ls_median_s']:.3f} s, --json {ls['cli_ls_json_best_s']:.3f}/"
          f"{ls['cli_ls_json_median_s']:.3f} s")


def build_dvx_only(root: Path, size: int, n_files: int) -> None:
    if root.exists():
        shutil.rmtree(root)
    root.mkdir(parents=True)
    sh(["git", "init", "-q", "-b", "main"], root)
    sh([*DVX, "init"], root)
    random_file(root / "big.bin", size, 41)
    small_files(root / "many", n_files, 42)
    sh([*DVX, "add", "big.bin", "many"], root)
    sh([*DVX, "commit", "-m", "old"], root)
    sh(["git", "tag", "old"], root)
    with open(root / "big.bin", "r+b") as f:
        f.seek(size // 2)
        f.write(os.urandom(MiB))
    sh([*DVX, "add", "big.bin"], root)
    sh([*DVX, "commit", "-m", "new"], root)


if __name__ == "__main__":
    main()
