"""Make ``lineage.json``: a small lineage graph, the bytes of its index file
(protocols/lineage.md §4) and the closures a walk of it gives (§6).

    PYTHONPATH=. python protocols/vectors/make_lineage_vectors.py
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from dvx.lineage.store import Index, Tables, encode, sort_edges
from dvx.lineage.walk import closure

A, B, C, D = ("a" * 64), ("b" * 64), ("c" * 64), ("d" * 64)
SHA = "1" * 40
# node keys and attributes, in index order
NODES = [
    (0, f"data:{A}", {"files": 2, "kind": "tree", "paths": ["data"], "size": 10}),
    (1, "run:train1", {"code": SHA, "commit": "2" * 40, "end": 2.0, "name": "train1", "project": None,
                       "start": 1.0, "state": "finished"}),
    (0, f"data:{B}", {"files": 1, "kind": "file", "paths": ["models/model.pt"], "size": 4}),
    (1, "run:eval1", {"code": SHA, "commit": "3" * 40, "end": 4.0, "name": "eval1", "project": None,
                      "start": 3.0, "state": "finished"}),
    (0, f"data:{C}", {"files": 1, "kind": "file", "paths": ["eval/report.json"], "size": 3}),
    (2, f"commit:{SHA}", {"author": "A <a@b>", "summary": "first dataset", "time": 1}),
    (0, f"data:{D}", {"files": 2, "kind": "tree", "paths": ["data"], "size": 12}),
]
# (source, target, kind): used 0, produced 1, committed-in 2, derived-from 3, code 4
EDGES = [(0, 1, 0), (1, 2, 1), (2, 3, 0), (3, 4, 1), (0, 5, 2), (5, 1, 4), (5, 3, 4), (0, 6, 3)]
STATE = {"artifacts": {"model": {"commit": "4" * 40, "versions": [
    {"aliases": ["latest"], "dropped": False, "id": B, "name": "model", "path": "models/model.pt",
     "run": "train1", "version": 0}]}}, "codes": [SHA], "first_seen": {f"data\n{A}": [1, SHA]},
    "heads": [SHA], "problems": []}
RUNS = {"eval1": "3" * 40, "train1": "2" * 40}


def tables() -> Tables:
    column = [np.array([e[i] for e in EDGES], np.uint8 if i == 2 else np.uint32) for i in range(3)]
    src, dst, kind = sort_edges(*column)
    return Tables.from_lists(np.array([n[0] for n in NODES], np.uint8), [n[1] for n in NODES],
                             [json.dumps(n[2], sort_keys=True, separators=(",", ":")).encode() for n in NODES],
                             src, dst, kind, STATE, RUNS, {SHA})


def main() -> None:
    data = encode(tables(), "vector-signature")
    ix = Index(data, "vector")
    walks = []
    for start, up in ((2, True), (2, False), (0, False), (4, True)):
        levels, edges = closure(ix, start, up)
        walks.append({"start": start, "up": up, "levels": levels, "edges": sorted(edges)})
    out = {
        "comment": "protocols/lineage.md: a lineage graph, its index file (hex), and closures of it",
        "signature": "vector-signature",
        "nodes": [{"kind": k, "key": key, "meta": meta} for k, key, meta in NODES],
        "edges": [list(e) for e in EDGES],
        "state": STATE,
        "runs": RUNS,
        "walked": [SHA],
        "file_hex": data.hex(),
        "closures": walks,
    }
    Path(__file__).with_name("lineage.json").write_text(json.dumps(out, indent=1) + "\n")


if __name__ == "__main__":
    main()
