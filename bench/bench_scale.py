"""Scale benchmark: a million small files, DVX against DVC, measured in one run.

    .venv/bin/python bench/bench_scale.py [--files 1000000] [--reps 3] [--dvc-files 200000]
    .venv/bin/python bench/bench_scale.py --quick          # 20,000 files, a smoke run
    .venv/bin/python bench/bench_scale.py --generate-only --files N   # just the data

Builds its data under ``bench/.work/scale/``: N files of 50-400 bytes in 1,000
directories (deterministic: BLAKE3 XOF of a seed; written with ``os.write`` in a tight
loop: a million files in ~35 s on a quiet machine). Then, on a fresh repository:

* ``dvx add`` (first add; also at N/5 files, to show it grows linearly),
* ``status`` with nothing changed, and after one changed file (a different file each
  repetition, so each run sees a new change),
* ``add`` again after one changed file,
* ``checkout`` after deleting 1,000 files (one in each directory: every directory
  changed, the worst case for per-directory caching), each followed by the floor
  under it: ``stat_floor.c`` lists and lstats every file in C on two threads (what
  any tool that notices in-place edits without a file-system monitor must do),
* ``fsck``.

Every command is timed as a whole process (start-up included) under ``/usr/bin/time``:
wall time, CPU time (user + sys) and peak RSS. Medians of ``--reps`` repetitions. DVC
runs the same steps on ``--dvc-files`` files (its add takes minutes at a million).
Results go to ``bench/results/scale.json``.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import time
from pathlib import Path

from blake3 import blake3
from common import DVX, ENV, WORK, ensure_peers, fresh_repo, save, version_of

N_DIRS = 1000
MIN_SIZE, MAX_SIZE = 50, 400


def generate(root: Path, n_files: int, seed: int = 7, n_dirs: int = N_DIRS) -> float:
    """Write ``n_files`` files of 50-400 bytes into ``n_dirs`` directories under ``root``;
    returns the seconds it took. Content and sizes are a BLAKE3 XOF stream of ``seed``:
    the same arguments always give the same bytes, and no two files are equal."""
    t = time.perf_counter()
    root.mkdir(parents=True, exist_ok=True)
    per_dir = -(-n_files // n_dirs)
    xof = blake3(seed.to_bytes(8, "little"))
    flags = os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_CLOEXEC
    pos = 0
    for d in range(n_dirs):
        first = d * per_dir
        count = min(per_dir, n_files - first)
        if count <= 0:
            break
        sub = root / f"d{d:04d}"
        sub.mkdir(exist_ok=True)
        raw = xof.digest(length=2 * count, seek=1 << 40 | (first * 2))
        sizes = [MIN_SIZE + (raw[2 * i] | raw[2 * i + 1] << 8) % (MAX_SIZE - MIN_SIZE + 1)
                 for i in range(count)]
        data = xof.digest(length=sum(sizes), seek=pos)
        pos += len(data)
        view = memoryview(data)
        dfd = os.open(sub, os.O_RDONLY | os.O_DIRECTORY)
        try:
            start = 0
            open_, write, close = os.open, os.write, os.close
            for i, n in enumerate(sizes):
                fd = open_(f"f{first + i:07d}.bin", flags, 0o644, dir_fd=dfd)
                write(fd, view[start:start + n])
                close(fd)
                start += n
        finally:
            os.close(dfd)
    return time.perf_counter() - t


def timed(cmd: list[str], cwd: Path, check: bool = True) -> dict[str, float]:
    """Run one command; wall, user+sys CPU seconds and peak RSS (MB) of the process."""
    t = time.perf_counter()
    proc = subprocess.run(["/usr/bin/time", "-f", "TIME %e %U %S %M", *cmd], cwd=cwd, env=ENV,
                          capture_output=True, text=True)
    wall = time.perf_counter() - t
    lines = [ln for ln in proc.stderr.splitlines() if ln.startswith("TIME ")]
    if check and proc.returncode != 0:
        raise RuntimeError(f"{' '.join(cmd)} failed ({proc.returncode}):\n{proc.stdout[-2000:]}\n"
                           f"{proc.stderr[-2000:]}")
    _, _e, user, sys_, rss = lines[-1].split()
    return {"wall": round(wall, 3), "cpu": round(float(user) + float(sys_), 3),
            "rss_mb": round(int(rss) / 1024, 1), "rc": proc.returncode}


def median_of(runs: list[dict[str, float]]) -> dict[str, object]:
    return {"wall": round(statistics.median(r["wall"] for r in runs), 3),
            "cpu": round(statistics.median(r["cpu"] for r in runs), 3),
            "rss_mb": max(r["rss_mb"] for r in runs),
            "runs": runs}


def touch_one(data: Path, k: int) -> None:
    """Change the content of one file (a different one for each ``k``), keeping its size."""
    d = data / f"d{(k * 37 + 11) % N_DIRS:04d}"
    victims = sorted(os.listdir(d))
    path = d / victims[(k * 101) % len(victims)]
    raw = bytearray(path.read_bytes())
    raw[0] ^= 0xFF
    raw[-1] = (raw[-1] + k + 1) % 256
    path.write_bytes(bytes(raw))


def delete_spread(data: Path, count: int, k: int) -> list[Path]:
    """Delete ``count`` files, one per directory (as many directories as possible)."""
    dirs = sorted(os.listdir(data))
    gone = []
    for i in range(count):
        d = data / dirs[i % len(dirs)]
        names = sorted(os.listdir(d))
        p = d / names[(k * 7 + i // len(dirs)) % len(names)]
        p.unlink()
        gone.append(p)
    return gone


def stat_floor() -> str | None:
    """Build ``stat_floor.c`` (the system calls of a scan, in C on two threads: the
    floor under checkout's stat pass); None without a C compiler."""
    cc = shutil.which("cc") or shutil.which("gcc")
    if cc is None:
        return None
    exe = WORK / "stat_floor"
    WORK.mkdir(parents=True, exist_ok=True)
    subprocess.run([cc, "-O2", "-pthread", "-o", str(exe), str(Path(__file__).parent / "stat_floor.c")],
                   check=True)
    return str(exe)


def steps(tool: str, repo: Path, reps: int, exe: str) -> dict[str, object]:
    """Every measured step on a repository whose data/ is already generated."""
    out: dict[str, object] = {}
    if tool == "dvx":
        init, add = DVX + ["init"], DVX + ["add", "data"]
        status, checkout, fsck = DVX + ["status"], DVX + ["checkout"], DVX + ["fsck"]
    else:
        init, add = [exe, "init", "-q"], [exe, "add", "-q", "data"]
        status, checkout, fsck = [exe, "status", "-q"], [exe, "checkout", "-q"], None
    timed(init, repo)
    subprocess.run(["sync"])
    out["add"] = timed(add, repo)
    print(f"  {tool} add: {out['add']}", flush=True)
    out["status_clean"] = median_of([timed(status, repo, check=False) for _ in range(reps)])
    print(f"  {tool} status clean: {out['status_clean']}", flush=True)
    runs = []
    for k in range(reps):
        touch_one(repo / "data", k)
        runs.append(timed(status, repo, check=False))
    out["status_one_change"] = median_of(runs)
    print(f"  {tool} status after one change: {out['status_one_change']}", flush=True)
    runs = []
    for k in range(reps):
        touch_one(repo / "data", 100 + k)
        runs.append(timed(add, repo))
    out["readd_one_change"] = median_of(runs)
    print(f"  {tool} re-add after one change: {out['readd_one_change']}", flush=True)
    out["status_clean_after_readd"] = median_of([timed(status, repo, check=False) for _ in range(reps)])
    print(f"  {tool} status clean (after re-add): {out['status_clean_after_readd']}", flush=True)
    runs = []
    floors = []
    floor = stat_floor() if tool == "dvx" else None
    for k in range(reps):
        delete_spread(repo / "data", 1000, k)
        runs.append(timed(checkout, repo))
        if floor is not None:  # the kernel's share, measured right after each checkout
            floors.append(json.loads(subprocess.run([floor, str(repo / "data"), "2"], capture_output=True,
                                                    text=True, check=True).stdout))
    out["checkout_1000_deleted"] = median_of(runs)
    print(f"  {tool} checkout 1000 deleted: {out['checkout_1000_deleted']}", flush=True)
    if floors:
        out["stat_floor_2_threads"] = {"wall": round(statistics.median(f["wall"] for f in floors), 3),
                                       "cpu": round(statistics.median(f["cpu"] for f in floors), 3),
                                       "runs": floors}
        print(f"  listing + lstat of every file (C, 2 threads, no Python): {out['stat_floor_2_threads']}",
              flush=True)
    if fsck is not None:
        out["fsck"] = median_of([timed(fsck, repo) for _ in range(max(1, min(reps, 3)))])
        print(f"  {tool} fsck: {out['fsck']}", flush=True)
    return out


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--files", type=int, default=1_000_000)
    ap.add_argument("--small", type=int, default=0, help="also run DVX at this many files "
                    "(default: files / 5), to check that add grows linearly")
    ap.add_argument("--dvc-files", type=int, default=200_000, help="0: skip DVC")
    ap.add_argument("--reps", type=int, default=3)
    ap.add_argument("--quick", action="store_true", help="20,000 files, 1 rep, no DVC")
    ap.add_argument("--generate-only", action="store_true")
    ap.add_argument("--keep", action="store_true", help="keep the repositories afterwards")
    ap.add_argument("--name", default="", help="results file name (default: scale, or scale-quick)")
    args = ap.parse_args()
    if args.quick:
        args.files, args.reps, args.dvc_files = 20_000, 1, 0
    small = args.small or args.files // 5
    base = WORK / "scale"
    if args.generate_only:
        dest = base / f"gen-{args.files}"
        shutil.rmtree(dest, ignore_errors=True)
        print(f"generated {args.files} files in {generate(dest, args.files):.1f} s")
        return
    res: dict[str, object] = {"versions": {
        "dvx": version_of(DVX + ["--version"]), "python": sys.version.split()[0],
        "cpus": os.cpu_count(), "machine": os.uname().machine, "kernel": os.uname().release}}
    dvc = ""
    if args.dvc_files:
        dvc = str(ensure_peers("dvc") / "dvc")
        res["versions"]["dvc"] = version_of([dvc, "--version"])  # type: ignore[index]
    print(json.dumps(res["versions"]), flush=True)
    plan = [("dvx", args.files), ("dvx", small)]
    if args.dvc_files:
        plan += [("dvx", args.dvc_files), ("dvc", args.dvc_files)]
    seen = set()
    for tool, n in plan:
        if (tool, n) in seen:
            continue
        seen.add((tool, n))
        repo = fresh_repo(base / f"{tool}-{n}")
        gen = generate(repo / "data", n)
        print(f"{tool} at {n:,} files (generated in {gen:.1f} s)", flush=True)
        res[f"{tool}_{n}"] = {"generate_s": round(gen, 2), **steps(tool, repo, args.reps, dvc)}
        if not args.keep:
            shutil.rmtree(repo)
        save(args.name or ("scale-quick" if args.quick else "scale"), res)
    print(json.dumps(res, indent=1))


if __name__ == "__main__":
    main()
