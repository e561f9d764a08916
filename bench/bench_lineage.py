"""Lineage queries (issue 11 bars): on a generated history of 10,000 runs and about
40,000 edges, an upstream or downstream closure <= 10 ms warm from Python
(``dvx.Api().lineage``) and <= 0.3 s from the CLI (``dvx lineage``); the index brought up
to date after one new commit <= 50 ms; rebuilt from git <= 2 s. In the same run, the
same closures done the wandb way (one lookup per hop: each run's record read from git
when the walk reaches it, as ``artifact.logged_by()`` / ``run.used_artifacts()`` make
one request per hop; the id -> run maps a server would hold are given to it for free)
and by an SQLite recursive query (``WITH RECURSIVE`` over an indexed edge table).

The history is real git data in the documented formats, written with ``git
fast-import``: 200 code commits on ``main``, each changing one of 20 dataset pointers
(``data/dsK.dvx``, protocols/format.md §6); 10,000 run commits (protocols/runs.md §7:
the code commit's tree plus ``.dvx-run/run.json``, on ``refs/dvx/runs/<id>``), 70 %
training runs (one or two datasets as they are at their code commit, 40 % also a
recent model to fine-tune; they produce a model) and 30 % evaluations (a recent model
and a dataset; they produce a report); 5 artifacts (``refs/dvx/artifacts/<name>``,
the agreed artifact.json + ``versions/vN.dvx``) naming some of the models.
Writes ``bench/results/lineage.json`` (``lineage-quick.json`` with ``--quick``: 1,000 runs).

    .venv/bin/python bench/bench_lineage.py [--quick] [--runs N]
"""

from __future__ import annotations

import argparse
import json
import os
import random
import resource
import shutil
import sqlite3
import statistics
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from bench.common import DVX, ENV, WORK, save  # noqa: E402

N_COMMITS = 200
N_DATASETS = 20
COMMITTER = b"bench <b@x> %d +0000"


def _hex(rng: random.Random) -> str:
    return f"{rng.getrandbits(256):064x}"


def pointer(kind: str, ident: str, size: int, files: int) -> bytes:
    text = (f"# dvx pointer: the data lives in the DVX store; see protocols/format.md\n"
            f"dvx: 1\nkind: {kind}\nid: {ident}\nsize: {size}\nfiles: {files}\n")
    if kind == "file":
        text += f"b3: {ident[::-1]}\n"
    return text.encode()


def record(run_id: str, code: str, start: float, inputs: list[dict], outputs: list[dict]) -> bytes:
    rec = {"dvx_run": 1, "id": run_id, "name": run_id, "project": "bench", "group": None, "notes": None,
           "tags": [], "state": "finished", "exit_code": 0, "signal": None, "start_time": start,
           "end_time": start + 60, "config": {"lr": 0.001}, "summary": {"acc": 0.9}, "metrics": {},
           "history": {"points": 0, "next_seq": 0, "last_step": None, "keys": {}},
           "code": {"commit": code, "branch": "refs/heads/main", "dirty": False, "diff": None,
                    "diff_truncated": False},
           "environment": {}, "inputs": inputs, "outputs": outputs, "files": {}, "rank": 0, "world_size": 1,
           "resumed": 0, "session": "bench"}
    return (json.dumps(rec, sort_keys=True, indent=2) + "\n").encode()


def entry(path: str, kind: str, ident: str, size: int, files: int, where: str) -> dict:
    return {"path": path, "kind": kind, "id": ident, "size": size, "files": files,
            "pointer": f".dvx-run/{where}/{path}.dvx"}


def generate(root: Path, n_runs: int) -> dict:
    """Write the history with git fast-import; returns what the queries need."""
    rng = random.Random(11)
    subprocess.run(["git", "init", "-q", "-b", "main", str(root)], check=True)
    subprocess.run(DVX + ["init"], cwd=root, env=ENV, check=True, capture_output=True)
    stream: list[bytes] = []

    def data(b: bytes) -> None:
        stream.append(b"data %d\n" % len(b) + b + b"\n")

    t0 = 1_700_000_000
    current = {k: (_hex(rng), 1000 + k) for k in range(N_DATASETS)}
    first_ds = ""
    code_marks: list[tuple[int, dict]] = []
    for c in range(N_COMMITS):
        mark = c + 1
        stream.append(b"commit refs/heads/main\nmark :%d\ncommitter " % mark
                      + COMMITTER % (t0 + c * 3600) + b"\n")
        data(b"data version %d" % c)
        if c:
            stream.append(b"from :%d\n" % c)
            k = c % N_DATASETS
            current[k] = (_hex(rng), 1000 + c)
            changed = [k]
        else:
            changed = list(range(N_DATASETS))
        for k in changed:
            stream.append(b"M 100644 inline data/ds%d.dvx\n" % k)
            data(pointer("tree", current[k][0], current[k][1], 10))
        code_marks.append((mark, dict(current)))
    marks_file = root / ".git" / "marks"
    subprocess.run(["git", "fast-import", "--quiet", f"--export-marks={marks_file}"], input=b"".join(stream),
                   cwd=root, check=True)
    marks = dict(line.split() for line in marks_file.read_text().splitlines())
    stream.clear()
    models: list[str] = []
    producer: dict[str, str] = {}  # model/report id -> run id (what a server would index)
    runs: list[str] = []
    for i in range(n_runs):
        run_id = f"r{i:05d}"
        cmark, datasets = code_marks[min(i * N_COMMITS // n_runs, N_COMMITS - 1)]
        inputs, outputs = [], []
        train = rng.random() < 0.7 or len(models) < 10
        picks = rng.sample(range(N_DATASETS), 2 if (train and rng.random() < 0.5) else 1)
        for k in picks:
            inputs.append(entry(f"data/ds{k}", "tree", datasets[k][0], datasets[k][1], 10, "inputs"))
        if models and (not train or rng.random() < 0.4):
            m = models[-1 - rng.randrange(min(50, len(models)))]
            inputs.append(entry("models/model.pt", "file", m, 4096, 1, "inputs"))
        first_ds = first_ds or inputs[0]["id"]  # the dataset version the first run used
        out_id = _hex(rng)
        path = "models/model.pt" if train else "eval/report.json"
        outputs.append({**entry(path, "file", out_id, 4096, 1, "outputs"), "name": path.rsplit("/", 1)[-1],
                        "type": "model" if train else "report", "aliases": []})
        if train:
            models.append(out_id)
        producer[out_id] = run_id
        runs.append(run_id)
        stream.append(b"commit refs/dvx/runs/%s\ncommitter " % run_id.encode()
                      + COMMITTER % (t0 + N_COMMITS * 3600 + i * 60) + b"\n")
        data(b"dvx run %s: %s (finished)\n\nRun-Id: %s\n" % ((run_id.encode(),) * 3))
        code = marks[f":{cmark}"]
        stream.append(b"from %s\n" % code.encode())
        stream.append(b"M 100644 inline .dvx-run/run.json\n")
        data(record(run_id, code, t0 + i * 60.0, inputs, outputs))
    # artifacts: five names over the models (the agreed format)
    artifacts = {}
    for a in range(5):
        name = f"model-{a}"
        chosen = models[a::5][-20:]
        versions = [{"version": v, "id": m, "kind": "file", "size": 4096, "files": 1, "path": "models/model.pt",
                     "run": producer[m], "commit": None, "created": "2026-12-01T00:00:00Z", "dropped": False}
                    for v, m in enumerate(chosen)]
        doc = {"format": 1, "name": name, "type": "model", "versions": versions,
               "aliases": {"latest": len(versions) - 1, "best": 0},
               "retention": {"keep_last": None, "keep_aliased": True, "ttl_days": None}}
        stream.append(b"commit refs/dvx/artifacts/%s\ncommitter " % name.encode() + COMMITTER % t0 + b"\n")
        data(b"artifacts: %s v%d (alias latest, best)" % (name.encode(), len(versions) - 1))
        stream.append(b"M 100644 inline artifact.json\n")
        data(json.dumps(doc, sort_keys=True, ensure_ascii=False).encode())
        for v in versions:
            stream.append(b"M 100644 inline versions/v%d.dvx\n" % v["version"])
            data(pointer("file", v["id"], 4096, 1))
        artifacts[name] = chosen
    subprocess.run(["git", "fast-import", "--quiet"], input=b"".join(stream), cwd=root, check=True)
    subprocess.run(["git", "reset", "-q", "--hard", "main"], cwd=root, check=True)
    return {"runs": runs, "models": models, "first_dataset": first_ds, "producer": producer,
            "artifacts": artifacts}


# -- the wandb way: one lookup per hop ----------------------------------------------------
class PerHop:
    """A walk that reads each run's record from git when it reaches it (the request
    ``run.used_artifacts()`` / ``logged_by()`` makes), with the id -> producer and id ->
    consumers maps held in memory for free."""

    def __init__(self, repo: object, runs: dict[str, str]) -> None:
        from dvx.runs.index import read_records

        self.repo, self.refs, self.read = repo, runs, read_records
        self.consumers: dict[str, list[str]] = {}
        self.producer: dict[str, str] = {}
        for rid, rec in read_records(repo, runs).items():  # what the server has indexed
            for e in rec.get("inputs") or []:
                self.consumers.setdefault(e["id"], []).append(rid)
            for e in rec.get("outputs") or []:
                self.producer[e["id"]] = rid
        self.lookups = 0

    def record(self, rid: str) -> dict:
        self.lookups += 1
        return self.read(self.repo, {rid: self.refs[rid]})[rid]  # type: ignore[no-any-return]

    def upstream(self, data_id: str) -> set[str]:
        seen, todo = {f"data:{data_id}"}, [data_id]
        while todo:
            d = todo.pop()
            rid = self.producer.get(d)
            if rid is None or f"run:{rid}" in seen:
                continue
            seen.add(f"run:{rid}")
            rec = self.record(rid)
            code = rec["code"]["commit"]
            seen.add(f"commit:{code}")
            for e in rec["inputs"]:
                if f"data:{e['id']}" not in seen:
                    seen.add(f"data:{e['id']}")
                    todo.append(e["id"])
        return seen

    def both(self, run_id: str) -> set[str]:
        """Both ways from a run: its record, then upstream of its inputs and downstream
        of its outputs."""
        rec = self.record(run_id)
        seen = {f"run:{run_id}", f"commit:{rec['code']['commit']}"}
        for e in rec["inputs"]:
            seen |= self.upstream(e["id"])
        for e in rec["outputs"]:
            seen |= self.downstream(e["id"])
        return seen

    def downstream(self, data_id: str) -> set[str]:
        seen, todo = {f"data:{data_id}"}, [data_id]
        while todo:
            d = todo.pop()
            for rid in self.consumers.get(d, []):
                if f"run:{rid}" in seen:
                    continue
                seen.add(f"run:{rid}")
                for e in self.record(rid)["outputs"]:
                    if f"data:{e['id']}" not in seen:
                        seen.add(f"data:{e['id']}")
                        todo.append(e["id"])
        return seen


# -- SQLite recursive query ---------------------------------------------------------------
def sqlite_db(ix: object, path: Path) -> sqlite3.Connection:
    from dvx.lineage.model import EDGE_KINDS, NODE_KINDS

    if path.exists():
        path.unlink()
    con = sqlite3.connect(str(path))
    con.execute("CREATE TABLE node (id INTEGER PRIMARY KEY, key TEXT UNIQUE, kind TEXT)")
    con.execute("CREATE TABLE edge (src INTEGER, dst INTEGER, kind TEXT)")
    keys = ix.keys()  # type: ignore[attr-defined]
    con.executemany("INSERT INTO node VALUES (?, ?, ?)",
                    [(i, k, NODE_KINDS[ix.node_kind[i]]) for i, k in enumerate(keys)])  # type: ignore[attr-defined]
    con.executemany("INSERT INTO edge VALUES (?, ?, ?)",
                    [(ix.edge_src[e], ix.edge_dst[e], EDGE_KINDS[ix.edge_kind[e]])  # type: ignore[attr-defined]
                     for e in range(ix.e)])  # type: ignore[attr-defined]
    con.execute("CREATE INDEX edge_src ON edge (src)")
    con.execute("CREATE INDEX edge_dst ON edge (dst)")
    con.commit()
    return con


UP_SQL = """WITH RECURSIVE up(id) AS (SELECT id FROM node WHERE key = ?
  UNION SELECT e.src FROM edge e JOIN up ON e.dst = up.id JOIN node n ON n.id = up.id
  WHERE n.kind != 'commit' OR n.key = ?)
SELECT node.key FROM up JOIN node ON node.id = up.id"""
DOWN_SQL = UP_SQL.replace("e.src FROM edge e JOIN up ON e.dst", "e.dst FROM edge e JOIN up ON e.src")


CPU: dict[str, float] = {}  # label -> median CPU seconds of the last timed() with that label


def timed(fn, n: int, label: str | None = None) -> tuple[float, object]:  # type: ignore[no-untyped-def]
    """Median wall seconds of ``n`` calls (and, under ``label``, median CPU seconds of
    this process: the VM is shared, and wall time carries other people's load)."""
    times, cpu, out = [], [], None
    for _ in range(n):
        t, c = time.perf_counter(), time.process_time()
        out = fn()
        times.append(time.perf_counter() - t)
        cpu.append(time.process_time() - c)
    if label:
        CPU[label] = statistics.median(cpu)
    return statistics.median(times), out


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--runs", type=int, default=None)
    args = ap.parse_args()
    n_runs = args.runs or (1000 if args.quick else 10_000)
    root = WORK / "lineage"
    shutil.rmtree(root, ignore_errors=True)
    root.parent.mkdir(parents=True, exist_ok=True)
    t = time.perf_counter()
    g = generate(root, n_runs)
    print(f"generated {n_runs} runs in {time.perf_counter() - t:.1f} s (git fast-import)", flush=True)
    os.chdir(root)
    import dvx
    from dvx.lineage.query import LineageIndex
    from dvx.repo import Repository
    from dvx.runs import index as runs_index

    repo = Repository.find(str(root))
    res: dict = {"runs": n_runs}
    # 1. rebuild from git: with the run index in place, and with nothing
    t = time.perf_counter()
    runs_index.load(repo)
    res["run_index_build_s"] = time.perf_counter() - t
    lin = Path(repo.dvx_dir) / "state" / "lineage"

    def rebuild() -> LineageIndex:
        shutil.rmtree(lin, ignore_errors=True)
        li = LineageIndex(Repository.find(str(root)))
        li.get()
        return li

    res["rebuild_s"], li = timed(rebuild, 3, "rebuild")
    res["rebuild_cpu_s"] = CPU["rebuild"]
    ix = li.get()
    res["nodes"], res["edges"] = ix.n, ix.e
    print(f"graph: {ix.n} nodes, {ix.e} edges; rebuild from git (run index present) "
          f"{res['rebuild_s'] * 1000:.0f} ms ({res['rebuild_cpu_s'] * 1000:.0f} ms CPU)", flush=True)

    def cold() -> None:
        shutil.rmtree(lin, ignore_errors=True)
        os.unlink(runs_index.index_path(repo))
        LineageIndex(Repository.find(str(root))).get()

    res["rebuild_with_run_index_s"], _ = timed(cold, 1, "cold")
    res["rebuild_with_run_index_cpu_s"] = CPU["cold"]
    print(f"rebuild from git, run index rebuilt too: {res['rebuild_with_run_index_s'] * 1000:.0f} ms",
          flush=True)

    # 2. closures, warm from Python (one Api, index mapped)
    api = dvx.Api(str(root))
    last_model = g["models"][-1]
    queries = {
        "upstream of the newest model": (f"id:{last_model}", "up"),
        "upstream of artifact model-0:latest": ("artifact:model-0:latest", "up"),
        "downstream of the first dataset version": (f"id:{g['first_dataset']}", "down"),
        "both ways from a mid-history run": (f"run:{g['runs'][len(g['runs']) // 2]}", "both"),
    }
    api.lineage(queries["upstream of the newest model"][0])  # map the index
    res["closures"] = {}
    runs_refs = runs_index.run_refs(repo)
    per_hop = PerHop(repo, runs_refs)
    con = sqlite_db(ix, WORK / "lineage.sqlite")
    for label, (target, direction) in queries.items():
        dt, graph = timed(lambda target=target, direction=direction: api.lineage(target, direction), 20, "q")
        dt_nodes, _ = timed(lambda target=target, direction=direction:
                            [n.attrs for n in api.lineage(target, direction).nodes], 5)
        keys = {n.key for n in graph.nodes}  # type: ignore[attr-defined]
        start_key = graph.target.key  # type: ignore[attr-defined]
        ident = start_key.split(":", 1)[1]
        per_hop.lookups = 0
        walk = {"up": per_hop.upstream, "down": per_hop.downstream, "both": per_hop.both}[direction]
        dt_hop, hop_keys = timed(lambda walk=walk, ident=ident: walk(ident), 1)
        lookups = per_hop.lookups
        sqls = {"up": [UP_SQL], "down": [DOWN_SQL], "both": [UP_SQL, DOWN_SQL]}[direction]
        dt_sql, rows = timed(lambda sqls=sqls, k=start_key: [r for s in sqls for r in con.execute(s, (k, k))],
                             5)
        sql_keys = {r[0] for r in rows}  # type: ignore[union-attr]
        # the per-hop walk follows used/produced only; DVX also follows derived-from
        # (earlier/later versions of a path) and commits, so its closure holds the other
        subset = set(hop_keys) <= keys  # type: ignore[arg-type]
        res["closures"][label] = {
            "target": target, "direction": direction, "nodes": len(keys), "python_warm_s": dt,
            "python_warm_cpu_s": CPU["q"],
            "python_warm_with_attrs_s": dt_nodes, "wandb_way_s": dt_hop, "wandb_way_lookups": lookups,
            "sqlite_cte_s": dt_sql, "same_as_sqlite": sql_keys == keys, "wandb_way_nodes": len(hop_keys),  # type: ignore[arg-type]
            "wandb_way_is_subset": subset,
        }
        print(f"{label}: {len(keys)} nodes; dvx {dt * 1000:.2f} ms warm ({CPU['q'] * 1000:.2f} ms CPU; "
              f"{dt_nodes * 1000:.2f} ms with every "
              f"node's attributes); wandb way {dt_hop * 1000:.1f} ms ({lookups} lookups, "
              f"{dt_hop / dt:.0f}x); sqlite CTE {dt_sql * 1000:.2f} ms ({dt_sql / dt:.1f}x); "
              f"same closure as sqlite: {sql_keys == keys}; wandb way found "
              f"{res['closures'][label]['wandb_way_nodes']} nodes, all among them: {subset}", flush=True)

    # 3. the CLI
    res["cli"] = {}
    for label, (target, direction) in list(queries.items())[:3]:
        flag = "--upstream" if direction == "up" else "--downstream"
        for fmt in ("json", "text"):
            times, cpu = [], []
            for _ in range(5):
                t, r0 = time.perf_counter(), resource.getrusage(resource.RUSAGE_CHILDREN)
                subprocess.run(DVX + ["lineage", target, flag, "--format", fmt], cwd=root, env=ENV,
                               check=True, stdout=subprocess.DEVNULL)
                r1 = resource.getrusage(resource.RUSAGE_CHILDREN)
                times.append(time.perf_counter() - t)
                cpu.append(r1.ru_utime - r0.ru_utime + r1.ru_stime - r0.ru_stime)
            res["cli"][f"{label} ({fmt})"] = {"wall_s": statistics.median(times),
                                              "cpu_s": statistics.median(cpu)}
            print(f"CLI {label} --format {fmt}: {statistics.median(times):.3f} s wall, "
                  f"{statistics.median(cpu):.3f} s CPU", flush=True)
    t = time.perf_counter()
    subprocess.run(DVX + ["status"], cwd=root, env=ENV, check=True, stdout=subprocess.DEVNULL)
    res["cli_dvx_status_s"] = time.perf_counter() - t
    print(f"(for scale: dvx status in the same repository {res['cli_dvx_status_s']:.3f} s)", flush=True)

    # 4. incremental update after one new commit, and after one new run
    li = LineageIndex(repo)
    li.get()
    updates, cpu = [], []
    for n in range(7):
        (root / "data" / "ds0.dvx").write_bytes(pointer("tree", f"{n + 1:064x}", 5, 1))
        subprocess.run(["git", "commit", "-qam", f"new data {n}"], cwd=root, env=ENV, check=True)
        t, c = time.perf_counter(), time.process_time()
        li.get()
        updates.append(time.perf_counter() - t)
        cpu.append(time.process_time() - c)
        assert li.last_commits_read == 1, li.last_commits_read
    res["update_after_commit_s"] = statistics.median(updates)
    res["update_after_commit_cpu_s"] = statistics.median(cpu)
    print(f"update after one new commit: {res['update_after_commit_s'] * 1000:.1f} ms wall, "
          f"{res['update_after_commit_cpu_s'] * 1000:.1f} ms CPU (1 commit read)", flush=True)
    res["load_average"] = os.getloadavg()
    res["dvx_version"] = dvx.__version__
    res["python"] = sys.version.split()[0]
    save("lineage" + ("-quick" if args.quick else ""), res)


if __name__ == "__main__":
    main()
