"""Remote benchmark: dvx push/pull against dvc push/pull, same moto S3 server, same run.

    .venv/bin/python bench/bench_remote.py [--quick]
    .venv/bin/python bench/bench_remote.py --wire-only [--trials 3] [--baseline DIR]

Data (as the store benchmark): a 1 GiB random file in three versions (original, a 1 MiB
overwrite at 500 MiB, a 10-byte insertion at 100 MiB), committed as three commits, plus
20,000 files of 1-8 KiB. Both tools push every commit (`--all-commits`), then push again
with nothing new, then a fresh clone pulls HEAD. A counting proxy in front of the server
measures HTTP requests and bytes for both tools alike.

``--wire-only``: DVX alone beside the raw floor of the same server (boto3 parallel
PUT/GET of the same pack files), interleaved trials (see ``wire``).
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

from common import (
    DVX,
    ENV,
    WORK,
    CountingProxy,
    ensure_peers,
    fresh_repo,
    insert,
    random_file,
    run,
    save,
    small_files,
    version_of,
)

MiB = 1 << 20
GiB = 1 << 30


def git(repo: Path, *args: str) -> None:
    subprocess.run(["git", *args], cwd=repo, env=ENV, check=True, capture_output=True)


def count_objects(bucket_prefix: str, port: int) -> int:
    os.environ.setdefault("AWS_EC2_METADATA_DISABLED", "true")
    import fsspec

    fs = fsspec.filesystem("s3", key="testing", secret="testing", endpoint_url=f"http://127.0.0.1:{port}",
                           skip_instance_cache=True)
    return len(fs.find(bucket_prefix))


# -- the wire's floor: dvx push/fetch/pull beside raw parallel boto3 PUT/GET ----------------
def _cpu_of(pid: int) -> float:
    """CPU seconds (user + system) a process has used so far (Linux /proc)."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            fields = f.read().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
    except OSError:
        return 0.0


def _median(xs: list[float]) -> float:
    s = sorted(xs)
    n = len(s)
    return s[n // 2] if n % 2 else (s[n // 2 - 1] + s[n // 2]) / 2


def wire(big: int, trials: int, jobs: int = 8, baseline: str | None = None) -> dict[str, object]:
    """Interleaved trials against one moto server: a raw parallel PUT of the store's
    pack files (boto3, ``jobs`` at a time), ``dvx push`` of the same file, a raw
    parallel GET of those objects (into memory), ``dvx fetch`` into a fresh clone, then
    ``dvx checkout`` there, and ``dvx pull`` into another fresh clone. Every step is
    timed (wall) with its CPU time (the client's, and the server's). ``baseline``: the
    source directory of another DVX (e.g. ``git archive`` of an older commit, with its
    compiled extensions) whose push/fetch/pull run in the same trials, for a
    before/after in one run."""
    import resource
    from concurrent.futures import ThreadPoolExecutor

    import boto3
    from botocore.config import Config

    from tests.servers import free_port, wait_port

    moto = shutil.which("moto_server") or str(Path(sys.executable).parent / "moto_server")
    port = free_port()
    server = subprocess.Popen([moto, "-H", "127.0.0.1", "-p", str(port)], stdout=subprocess.DEVNULL,
                              stderr=subprocess.DEVNULL)
    wait_port(port, server)
    url = f"http://127.0.0.1:{port}"
    env = dict(ENV, AWS_ACCESS_KEY_ID="testing", AWS_SECRET_ACCESS_KEY="testing",
               AWS_EC2_METADATA_DISABLED="true")
    s3 = boto3.client("s3", endpoint_url=url, aws_access_key_id="testing", aws_secret_access_key="testing",
                      region_name="us-east-1",
                      config=Config(max_pool_connections=2 * jobs, s3={"payload_signing_enabled": False}))
    s3.create_bucket(Bucket="bench")
    src = WORK / "src-wire"
    if not (src / "big.bin").exists() or (src / "big.bin").stat().st_size != big:
        random_file(src / "big.bin", big, 7)
    repo = fresh_repo(WORK / "wire-repo")
    shutil.copy(src / "big.bin", repo / "big.bin")
    run(DVX + ["init"], repo)
    versions = {"": dict(env, PYTHONPATH=str(Path(__file__).resolve().parent.parent))}  # this checkout
    if baseline:
        versions["_base"] = dict(env, PYTHONPATH=str(Path(baseline).resolve()))  # the --baseline one
    for t in range(trials):
        for v in versions:
            run(DVX + ["remote", "add", f"t{t}{v}", f"s3://bench/dvx-t{t}{v}", "-o", f"endpoint_url={url}"],
                repo)
    run(DVX + ["add", "big.bin"], repo)
    git(repo, "add", "-A")
    git(repo, "commit", "-q", "-m", "v0")
    packs = sorted((repo / ".dvx" / "store" / "packs").glob("*.pack"))
    if not packs:
        packs = sorted((repo / ".dvx").rglob("*.pack"))
    nbytes = sum(p.stat().st_size for p in packs)
    print(f"wire: {len(packs)} packs, {nbytes / MiB:.0f} MiB, {trials} trials, jobs {jobs}", flush=True)

    def measure(fn, *args) -> dict[str, float]:  # type: ignore[no-untyped-def]
        c0 = resource.getrusage(resource.RUSAGE_CHILDREN)
        p0 = time.process_time()
        s0 = _cpu_of(server.pid)
        w = time.perf_counter()
        fn(*args)
        wall = time.perf_counter() - w
        c1 = resource.getrusage(resource.RUSAGE_CHILDREN)
        client = (time.process_time() - p0) + (c1.ru_utime - c0.ru_utime) + (c1.ru_stime - c0.ru_stime)
        return {"seconds": wall, "client_cpu": client, "server_cpu": _cpu_of(server.pid) - s0}

    def dvx(args: list[str], cwd: Path, v: str = "") -> None:
        p = subprocess.run(DVX + args, cwd=cwd, env=versions[v], capture_output=True, text=True)
        if p.returncode != 0:
            raise RuntimeError(f"dvx {args} failed: {p.stdout}\n{p.stderr}")

    def raw_put(prefix: str) -> None:
        def one(p: Path) -> None:
            s3.put_object(Bucket="bench", Key=f"{prefix}/{p.name}", Body=p.read_bytes())
        with ThreadPoolExecutor(jobs) as pool:
            list(pool.map(one, packs))

    def raw_get(prefix: str) -> None:
        def one(p: Path) -> int:
            return len(s3.get_object(Bucket="bench", Key=f"{prefix}/{p.name}")["Body"].read())
        with ThreadPoolExecutor(jobs) as pool:
            assert sum(pool.map(one, packs)) == nbytes

    def clone(name: str) -> Path:
        path = WORK / name
        if path.exists():
            shutil.rmtree(path)
        subprocess.run(["git", "clone", "-q", str(repo), str(path)], check=True)
        return path

    def wipe(prefix: str) -> None:  # moto holds everything in memory
        for page in s3.get_paginator("list_objects_v2").paginate(Bucket="bench", Prefix=prefix):
            keys = [{"Key": o["Key"]} for o in page.get("Contents", [])]
            if keys:
                s3.delete_objects(Bucket="bench", Delete={"Objects": keys})

    names = ["raw_put", "push", "raw_get", "fetch", "checkout", "pull"]
    names += [f"{n}_base" for n in ("push", "fetch", "pull") if baseline]
    steps: dict[str, list[dict[str, float]]] = {k: [] for k in names}
    try:
        for t in range(trials):
            # this checkout and the baseline alternate which goes first
            order = list(versions) if t % 2 == 0 else list(versions)[::-1]
            steps["raw_put"].append(measure(raw_put, f"raw{t}"))
            for v in order:
                steps[f"push{v}"].append(measure(dvx, ["push", "-r", f"t{t}{v}"], repo, v))
            steps["raw_get"].append(measure(raw_get, f"raw{t}"))
            for v in order:
                c1 = clone("wire-fetch")
                steps[f"fetch{v}"].append(measure(dvx, ["fetch", "-r", f"t{t}{v}"], c1, v))
                if not v:
                    steps["checkout"].append(measure(dvx, ["checkout"], c1))
                    assert subprocess.run(["cmp", str(src / "big.bin"), str(c1 / "big.bin")]).returncode == 0
                shutil.rmtree(c1)
            for v in order:
                c2 = clone("wire-pull")
                steps[f"pull{v}"].append(measure(dvx, ["pull", "-r", f"t{t}{v}"], c2, v))
                assert subprocess.run(["cmp", str(src / "big.bin"), str(c2 / "big.bin")]).returncode == 0
                shutil.rmtree(c2)
            for prefix in (f"raw{t}", *(f"dvx-t{t}{v}" for v in versions)):
                wipe(prefix)
            print("  trial", t, " ".join(f"{k} {v[-1]['seconds']:.2f}s" for k, v in steps.items()), flush=True)
    finally:
        server.terminate()
        server.wait()
        shutil.rmtree(repo, ignore_errors=True)
    med = {k: {m: _median([x[m] for x in v]) for m in v[0]} for k, v in steps.items()}
    sec = {k: v["seconds"] for k, v in med.items()}
    print(f"\nwire floor, {nbytes / MiB:.0f} MiB in {len(packs)} objects, {jobs} at a time "
          f"(medians of {trials}; cpu: client / moto server)")
    for k in steps:
        print(f"  {k:9s} {sec[k]:6.2f} s   {nbytes / MiB / sec[k]:6.0f} MiB/s   "
              f"cpu {med[k]['client_cpu']:5.2f} / {med[k]['server_cpu']:5.2f} s")
    print(f"  push / raw PUT  {sec['push'] / sec['raw_put']:5.2f}x (bar <= 1.5x)")
    print(f"  fetch / raw GET {sec['fetch'] / sec['raw_get']:5.2f}x (bar <= 1.5x)")
    print(f"  pull {sec['pull']:.2f} s vs fetch + checkout {sec['fetch'] + sec['checkout']:.2f} s "
          f"(bar: pull <= fetch + checkout)")
    if baseline:
        print(f"  baseline ({baseline}): push / raw PUT {sec['push_base'] / sec['raw_put']:5.2f}x, "
              f"fetch / raw GET {sec['fetch_base'] / sec['raw_get']:5.2f}x")
    return {"bytes": nbytes, "objects": len(packs), "jobs": jobs, "trials": steps, "medians": med,
            "push_over_raw_put": sec["push"] / sec["raw_put"],
            "fetch_over_raw_get": sec["fetch"] / sec["raw_get"]}


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--wire-only", action="store_true", help="only the raw floor beside dvx push/fetch/pull")
    ap.add_argument("--trials", type=int, default=3, help="interleaved trials of the wire floor")
    ap.add_argument("--baseline", help="a DVX source directory to time beside this one (wire floor)")
    args = ap.parse_args()
    big = 64 * MiB if args.quick else GiB
    if args.wire_only:
        res0 = {"versions": {"dvx": version_of(DVX + ["--version"])},
                "wire": wire(big, args.trials, baseline=args.baseline)}
        save("remote-wire" + ("-quick" if args.quick else ""), res0)
        return
    n_small = 2000 if args.quick else 20_000
    peers = ensure_peers("dvc", "dvc-s3")
    dvc = str(peers / "dvc")
    moto = shutil.which("moto_server") or str(Path(sys.executable).parent / "moto_server")
    from tests.servers import free_port, wait_port

    def start_server() -> tuple[int, subprocess.Popen[bytes], CountingProxy]:
        port = free_port()
        server = subprocess.Popen([moto, "-H", "127.0.0.1", "-p", str(port)], stdout=subprocess.DEVNULL,
                                  stderr=subprocess.DEVNULL)
        wait_port(port, server)
        return port, server, CountingProxy(port)
    env = dict(ENV, AWS_ACCESS_KEY_ID="testing", AWS_SECRET_ACCESS_KEY="testing",
               AWS_EC2_METADATA_DISABLED="true")
    os.environ.update({k: env[k] for k in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY")})
    import fsspec
    res: dict[str, object] = {"versions": {"dvx": version_of(DVX + ["--version"]),
                                           "dvc": version_of([dvc, "--version"]),
                                           "moto": version_of([moto, "--version"])},
                              "big": big, "small_files": n_small}
    print(json.dumps(res["versions"]), flush=True)
    src = WORK / "src-remote"
    if not (src / "big.bin").exists() or (src / "big.bin").stat().st_size != big:
        random_file(src / "big.bin", big, 1)
    if not (src / f"small{n_small}").exists():
        small_files(src / f"small{n_small}", n_small, 2)

    def timed(cmd: list[str], cwd: Path) -> dict[str, float]:
        proxy.reset()  # the proxy of the current tool's server (see the loop below)
        t = time.perf_counter()
        p = subprocess.run(cmd, cwd=cwd, env=env, capture_output=True, text=True)
        wall = time.perf_counter() - t
        if p.returncode != 0:
            raise RuntimeError(f"{cmd} failed: {p.stdout}\n{p.stderr}")
        return {"seconds": wall, "requests": proxy.requests, "bytes_up": proxy.bytes_up,
                "bytes_down": proxy.bytes_down}

    for tool in ("dvx", "dvc"):
        # a fresh server per tool: moto keeps every object in memory
        port, server, proxy = start_server()
        direct = f"http://127.0.0.1:{port}"
        endpoint = f"http://127.0.0.1:{proxy.port}"  # through the counting proxy
        fsspec.filesystem("s3", endpoint_url=direct, skip_instance_cache=True).mkdir("bench")
        repo = fresh_repo(WORK / f"{tool}-remote")
        shutil.copy(src / "big.bin", repo / "big.bin")
        shutil.copytree(src / f"small{n_small}", repo / "data")
        # two remotes on the same server: "timed" is reached directly (wall times),
        # "counted" through the counting proxy (requests and bytes; the proxy's own
        # copying would slow the measured tool down)
        if tool == "dvx":
            run(DVX + ["init"], repo)
            for name, url in (("timed", direct), ("counted", endpoint)):
                run(DVX + ["remote", "add", name, f"s3://bench/dvx-{name}", "-o", f"endpoint_url={url}"], repo)
            add = DVX + ["add", "big.bin", "data"]

            def push(name: str, everything: bool = True) -> list[str]:
                return DVX + ["push", "-r", name] + (["--all-commits"] if everything else [])

            def pull(name: str) -> list[str]:
                return DVX + ["pull", "-r", name]
        else:
            run([dvc, "init", "-q"], repo)
            for name, url in (("timed", direct), ("counted", endpoint)):
                run([dvc, "remote", "add", name, f"s3://bench/dvc-{name}"], repo)
                run([dvc, "remote", "modify", name, "endpointurl", url], repo)
            run([dvc, "remote", "default", "timed"], repo)  # --all-commits wants a default
            add = [dvc, "add", "-q", "big.bin", "data"]

            def push(name: str, everything: bool = True) -> list[str]:
                return [dvc, "push", "-r", name] + (["--all-commits"] if everything else [])

            def pull(name: str) -> list[str]:
                return [dvc, "pull", "-q", "-r", name]
        for step in range(3):
            if step == 1:
                with open(repo / "big.bin", "r+b") as f:
                    f.seek(big // 2)
                    f.write(os.urandom(MiB))
            elif step == 2:
                insert(repo / "big.bin", big // 10, b"0123456789")
            run(add, repo)
            git(repo, "add", "-A")
            git(repo, "commit", "-q", "-m", f"v{step}")
        out: dict[str, object] = {}
        for name in ("timed", "counted"):
            cold = timed(push(name), repo)
            again = timed(push(name, everything=False), repo)
            clone = WORK / f"{tool}-clone"
            if clone.exists():
                shutil.rmtree(clone)
            subprocess.run(["git", "clone", "-q", str(repo), str(clone)], check=True)
            pulled = timed(pull(name), clone)
            ok = subprocess.run(["cmp", str(repo / "big.bin"), str(clone / "big.bin")]).returncode == 0
            shutil.rmtree(clone)
            print(f"{tool} [{name}] cold push {cold}\n  nothing new {again}\n  pull {pulled}", flush=True)
            out[name] = {"cold_push": cold, "push_nothing_new": again, "pull_fresh_clone": pulled,
                         "pull_identical": ok}
        t, c = out["timed"], out["counted"]  # type: ignore[index]
        res[tool] = {
            "cold_push": {"seconds": t["cold_push"]["seconds"], "requests": c["cold_push"]["requests"],
                          "bytes_up": c["cold_push"]["bytes_up"]},
            "push_nothing_new": {"seconds": t["push_nothing_new"]["seconds"],
                                 "requests": c["push_nothing_new"]["requests"]},
            "pull_fresh_clone": {"seconds": t["pull_fresh_clone"]["seconds"],
                                 "requests": c["pull_fresh_clone"]["requests"],
                                 "bytes_down": c["pull_fresh_clone"]["bytes_down"]},
            "through_proxy_seconds": {"cold_push": c["cold_push"]["seconds"],
                                      "pull_fresh_clone": c["pull_fresh_clone"]["seconds"]},
            "remote_objects": count_objects(f"bench/{tool}-timed", port),
            "pull_identical": t["pull_identical"] and c["pull_identical"],
        }
        shutil.rmtree(repo)
        proxy.sock.close()
        server.terminate()
        server.wait()
    d, v = res["dvx"], res["dvc"]  # type: ignore[index]
    print()
    cp, nn, pf = "cold_push", "push_nothing_new", "pull_fresh_clone"
    print(f"cold push           dvx {d[cp]['seconds']:8.2f} s  dvc {v[cp]['seconds']:8.2f} s  "
          f"ratio {v[cp]['seconds'] / d[cp]['seconds']:5.1f}x (bar >= 10x)")
    print(f"  requests          dvx {d[cp]['requests']:8d}    dvc {v[cp]['requests']:8d}")
    print(f"  bytes up          dvx {d[cp]['bytes_up'] / 1e6:8.1f} MB dvc {v[cp]['bytes_up'] / 1e6:8.1f} MB")
    print(f"  remote objects    dvx {d['remote_objects']:8d}    dvc {v['remote_objects']:8d}   "
          f"(bar: <= {n_small // 1000} + indexes for {n_small} small files)")
    print(f"push, nothing new   dvx {d[nn]['seconds']:8.2f} s  dvc {v[nn]['seconds']:8.2f} s"
          f"  requests dvx {d[nn]['requests']} dvc {v[nn]['requests']} (bar <= 0.5 s)")
    print(f"pull, fresh clone   dvx {d[pf]['seconds']:8.2f} s  dvc {v[pf]['seconds']:8.2f} s  "
          f"ratio {v[pf]['seconds'] / d[pf]['seconds']:5.1f}x (bar >= 5x)")
    print(f"  requests          dvx {d[pf]['requests']:8d}    dvc {v[pf]['requests']:8d}")
    print(f"  bytes down        dvx {d['pull_fresh_clone']['bytes_down'] / 1e6:8.1f} MB dvc "
          f"{v['pull_fresh_clone']['bytes_down'] / 1e6:8.1f} MB")
    save("remote" + ("-quick" if args.quick else ""), res)


if __name__ == "__main__":
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
    main()
