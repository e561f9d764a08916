"""Git -> the lineage graph, from scratch or for what is new (``protocols/lineage.md`` §3, §5).

Sources, in this order:

1. Run records (every ``refs/dvx/runs/*``, through the run index
   :mod:`dvx.runs.index`): a run node; ``used`` from each input, ``produced`` to each
   output; ``code`` from the run's code commit (also kept on the run node as ``code``).
2. Commits reachable from every ref that is neither a run nor an artifact ref, and from
   the code commits of the runs (run commits themselves differ from their code commit
   only in ``.dvx-run/``, whose pointers the record already describes). For each commit,
   the pointers it changes against its first parent (:meth:`History.changes`): the new
   version's data node gets the path; ``derived-from`` from the version it replaced;
   ``committed-in`` to the earliest commit (author time, then sha) where that version
   appears at that path.
3. Artifact refs: each version's data node gets the path it came from and the label
   ``NAME:vN`` (aliases too); ``produced`` from the run that logged it.

An update reads only what changed: new run refs, commits not reachable from the heads
already walked, and artifact refs that moved. A run ref removed or moved, or a head
that is no longer reachable (a rewound or deleted branch), is not something an update
can subtract: the graph is then built from scratch.
"""

from __future__ import annotations

import json
from typing import Any

import numpy as np

from dvx.errors import DvxError
from dvx.lineage.model import (
    CODE,
    COMMIT,
    COMMITTED_IN,
    DATA,
    DERIVED_FROM,
    HEX_ID,
    PRODUCED,
    RUN,
    SHA,
    USED,
    node_key,
)
from dvx.lineage.store import Index, Tables, merge_edges, offsets_of, sort_edges
from dvx.repo import Repository

MAX_PROBLEMS = 50


class Rebuild(Exception):
    """An update cannot be done incrementally (``reason``): build from scratch."""


def _dumps(obj: dict[str, Any]) -> bytes:
    return json.dumps(obj, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode()


class Builder:
    """The graph being built. On top of an index (an update), nodes already there are
    found in its key section and only the nodes touched are decoded and re-encoded;
    edges are appended and sorted once at the end."""

    def __init__(self, repo: Repository, base: Index | None = None) -> None:
        from dvx.history import history_of

        self.repo = repo
        self.history = history_of(repo)
        self.base = base
        self.n_base = base.n if base is not None else 0
        self.new_keys: list[str] = []
        self.new_kinds: list[int] = []
        self.index: dict[str, int] = {}  # new nodes, and the base's nodes looked up so far
        self.touched: dict[int, dict[str, Any]] = {}
        self.drop_edges: set[tuple[int, int, int]] = set()
        self.new_edges: list[tuple[int, int, int]] = []
        st = base.state if base is not None else {}
        self._runs: dict[str, str] | None = None if base is not None else {}  # read when needed
        self.runs_signature = st.get("runs_signature")
        self.walked: set[str] = base.walked() if base is not None else set()  # every commit read
        self.heads: list[str] = list(st.get("heads") or [])  # where the last walk started
        self.first_seen: dict[str, list[Any]] = dict(st.get("first_seen") or {})
        self.artifacts: dict[str, Any] = dict(st.get("artifacts") or {})
        self.problems: list[str] = list(st.get("problems") or [])
        self.codes: set[str] = set(st.get("codes") or [])  # code commits of the runs
        self.commits_read = 0
        self._path_ok: dict[str, bool] = {}  # run entry paths repeat: check each once

    @property
    def runs(self) -> dict[str, str]:
        """``run id -> commit`` of the runs in the graph."""
        if self._runs is None:
            self._runs = self.base.runs() if self.base is not None else {}
        return self._runs

    # -- nodes and edges -------------------------------------------------------------
    def lookup(self, key: str) -> int | None:
        i = self.index.get(key)
        if i is None and self.base is not None:
            i = self.base.find(key)
            if i is not None:
                self.index[key] = i
        return i

    def node(self, kind: int, ident: str) -> int:
        key = node_key(kind, ident)
        i = self.lookup(key)
        if i is None:
            i = self.index[key] = self.n_base + len(self.new_keys)
            self.new_keys.append(key)
            self.new_kinds.append(kind)
            self.touched[i] = {}
        return i

    def meta(self, i: int) -> dict[str, Any]:
        m = self.touched.get(i)
        if m is None:
            m = self.base.meta(i) if self.base is not None and i < self.n_base else {}
            self.touched[i] = m
        return m

    def edge(self, a: int, b: int, kind: int) -> None:
        self.new_edges.append((a, b, kind))

    def problem(self, text: str) -> None:
        if len(self.problems) < MAX_PROBLEMS and text not in self.problems:
            self.problems.append(text)

    def data(self, ident: str, path: str | None, kind: str | None = None, size: Any = None,
             files: Any = None) -> int:
        i = self.node(DATA, ident)
        m = self.meta(i)
        if path is not None and path not in m.setdefault("paths", []):
            m["paths"] = sorted([*m["paths"], path])
        for name, value in (("kind", kind), ("size", size), ("files", files)):
            if value is not None and name not in m:
                m[name] = value
        return i

    def commit_node(self, sha: str) -> int:
        i = self.node(COMMIT, sha)
        m = self.meta(i)
        if "time" not in m and "missing" not in m:
            try:
                c = self.history.commit(sha)
                m.update(summary=c.summary, time=c.time, author=c.author)
            except DvxError:
                m["missing"] = True
        return i

    # -- 1. runs ---------------------------------------------------------------------
    def _safe_path(self, path: Any) -> str | None:
        """``path`` when it is a valid tracked path, else None (the bytes still count;
        a forged name does not)."""
        if not isinstance(path, str):
            return None
        ok = self._path_ok.get(path)
        if ok is None:
            from dvx.pointer import target_problem

            ok = self._path_ok[path] = target_problem(path) is None
        return path if ok else None

    def add_run(self, run_id: str, commit: str | None, record: dict[str, Any]) -> None:
        r = self.node(RUN, run_id)
        m = self.meta(r)
        code = (record.get("code") or {}).get("commit") if isinstance(record.get("code"), dict) else None
        code = code if isinstance(code, str) and SHA.match(code) else None
        m.update(name=record.get("name") if isinstance(record.get("name"), str) else run_id,
                 state=record.get("state"), project=record.get("project"),
                 start=record.get("start_time"), end=record.get("end_time"), commit=commit, code=code)
        for field, kind in (("inputs", USED), ("outputs", PRODUCED)):
            entries = record.get(field)
            for e in entries if isinstance(entries, list) else []:
                ident = e.get("id") if isinstance(e, dict) else None
                path = e.get("path") if isinstance(e, dict) else None
                if not isinstance(ident, str) or len(ident) != 64 or not HEX_ID.match(ident):
                    self.problem(f"run {run_id}: an entry of {field} has no valid content id; skipped")
                    continue
                d = self.data(ident, self._safe_path(path), e.get("kind"), e.get("size"), e.get("files"))
                self.edge(d, r, USED) if kind == USED else self.edge(r, d, PRODUCED)
        if code is not None:
            self.edge(self.commit_node(code), r, CODE)

    def runs_from_index(self) -> None:
        """Read the records of the runs not in the graph yet."""
        from dvx.runs import index as runs_index

        sig = runs_index.signature(self.repo)
        if self.base is not None and sig == self.runs_signature:
            return  # no run ref added, moved or removed
        table = runs_index.load(self.repo)
        self.runs_signature = sig
        if not table.num_rows:
            refs, commits = [], []
        else:
            refs = table.column(runs_index.REF).to_pylist()
            commits = table.column(runs_index.COMMIT).to_pylist()
        now = dict(zip(refs, commits, strict=True))
        gone = [rid for rid, sha in self.runs.items() if now.get(rid) != sha]
        if gone:
            raise Rebuild(f"run {gone[0]} was removed or moved")
        records = table.column(runs_index.RECORD).to_pylist() if table.num_rows else None
        for row, (rid, sha) in enumerate(zip(refs, commits, strict=True)):
            if rid in self.runs or records is None:
                continue
            try:
                record = json.loads(records[row])
            except ValueError:
                self.problem(f"run {rid}: unreadable record; skipped")
                continue
            if not isinstance(record, dict):
                continue
            self.add_run(rid, sha, record)
            self.runs[rid] = sha
            code = self.meta(self.index[node_key(RUN, rid)]).get("code")
            if code:
                self.codes.add(code)

    # -- 2. commits ------------------------------------------------------------------
    def walk_commits(self, heads: list[str]) -> None:
        """Read the commits reachable from ``heads`` that no earlier build read (the
        walk stops at commits already walked)."""
        walked = self.walked
        todo = [h for h in dict.fromkeys(heads) if h not in walked]
        seen = set(todo)
        boundary: set[str] = set()
        order: list[str] = []
        while todo:
            sha = todo.pop()
            try:
                c = self.history.commit(sha)
            except DvxError as exc:  # a record naming a commit this clone lacks
                self.problem(f"commit {sha[:12]}: {exc}")
                walked.add(sha)
                continue
            order.append(sha)
            for p in c.parents:
                if p in walked:
                    boundary.add(p)
                elif p not in seen:
                    seen.add(p)
                    todo.append(p)
        dropped = [h for h in self.heads if h not in heads and h not in boundary and h not in seen]
        if dropped and self.history.commits_from(dropped, exclude=heads):
            raise Rebuild("a branch or tag was rewound or deleted")
        from dvx.history import Bad

        bad: Bad = {}
        for sha in order:
            walked.add(sha)
            self.commits_read += 1
            changes = self.history.changes(sha, bad=bad)
            if not changes:
                continue
            when = self.history.commit(sha).time
            for target, before, after in changes:
                if after is None or target.startswith(".dvx-run/"):
                    continue
                d = self.data(after.id, target, after.kind, after.size, after.files)
                if before is not None and before.id != after.id:
                    prev = self.data(before.id, target, before.kind, before.size, before.files)
                    self.edge(prev, d, DERIVED_FROM)
                key = f"{target}\n{after.id}"
                seen_at = self.first_seen.get(key)
                if seen_at is None or [when, sha] < seen_at:
                    if seen_at is not None:
                        old_c = self.index.get(node_key(COMMIT, seen_at[1]))
                        if old_c is not None:
                            self.drop_edges.add((d, old_c, COMMITTED_IN))
                    self.first_seen[key] = [when, sha]
                    self.edge(d, self.commit_node(sha), COMMITTED_IN)
        for key, err in sorted(bad.items()):
            self.problem(f"{key}: {err}")
        self.heads = sorted(set(heads))

    # -- 3. artifacts ----------------------------------------------------------------
    def add_artifacts(self, refs: dict[str, str]) -> None:
        from dvx.lineage.artifacts import read_artifacts

        gone = [n for n in self.artifacts if n not in refs]
        if gone:
            raise Rebuild(f"artifact {gone[0]} was removed")
        changed = {n: sha for n, sha in refs.items() if (self.artifacts.get(n) or {}).get("commit") != sha}
        if not changed:
            return
        problems: list[str] = []
        found = read_artifacts(self.repo, changed, problems)
        for p in problems:
            self.problem(p)
        for name, versions in found.items():
            for v in versions:
                d = self.data(v.id, v.path)
                run = self.lookup(node_key(RUN, v.run)) if v.run is not None else None
                if run is not None:
                    self.edge(run, d, PRODUCED)
            self.artifacts[name] = {"commit": changed[name], "versions": [v.to_json() for v in versions]}

    # -- the result ------------------------------------------------------------------
    def tables(self) -> Tables:
        base = self.base
        n = self.n_base + len(self.new_keys)
        new_keys = [k.encode() for k in self.new_keys]
        if base is not None:
            key_len = np.diff(np.frombuffer(base.key_offsets, np.uint32).astype(np.int64))
            meta_len = np.diff(np.frombuffer(base.meta_offsets, np.uint32).astype(np.int64))
            keys_blob = base.keys_blob + b"".join(new_keys)
            old_meta = base.meta_blob()
            kinds = np.concatenate([np.frombuffer(base.node_kind, np.uint8),
                                    np.array(self.new_kinds, np.uint8)])
            src = np.frombuffer(base.edge_src, np.uint32)
            dst = np.frombuffer(base.edge_dst, np.uint32)
            kind = np.frombuffer(base.edge_kind, np.uint8)
        else:
            key_len = meta_len = np.zeros(0, np.int64)
            keys_blob, old_meta = b"".join(new_keys), b""
            kinds = np.array(self.new_kinds, np.uint8)
            src, dst, kind = np.zeros(0, np.uint32), np.zeros(0, np.uint32), np.zeros(0, np.uint8)
        key_len = np.concatenate([key_len, np.array([len(k) for k in new_keys], np.int64)])
        # attributes: the base's blob between the nodes touched, then the new nodes
        encoded = {i: _dumps(m) for i, m in self.touched.items()}
        pieces: list[bytes] = []
        lengths = np.concatenate([meta_len, np.zeros(n - self.n_base, np.int64)])
        pos = 0
        off = np.frombuffer(base.meta_offsets, np.uint32) if base is not None else None
        for i in sorted(encoded):
            if i < self.n_base and off is not None:  # a base node: replace its document
                pieces += [old_meta[pos:int(off[i])], encoded[i]]
                pos = int(off[i + 1])
            lengths[i] = len(encoded[i])
        pieces.append(old_meta[pos:])
        pieces += [encoded[i] for i in range(self.n_base, n)]
        meta_blob = b"".join(pieces)
        if self.drop_edges:
            keep = np.array([(int(a), int(b), int(k)) not in self.drop_edges
                             for a, b, k in zip(src, dst, kind, strict=True)], bool)
            src, dst, kind = src[keep], dst[keep], kind[keep]
        if self.new_edges and (self.base is None or self.drop_edges):
            extra = np.array(self.new_edges, np.uint32).reshape(-1, 3)
            src = np.concatenate([src.astype(np.uint32), extra[:, 0]])
            dst = np.concatenate([dst.astype(np.uint32), extra[:, 1]])
            kind = np.concatenate([kind.astype(np.uint8), extra[:, 2].astype(np.uint8)])
        if self.base is not None and not self.drop_edges:  # sorted already: merge the new ones in
            src, dst, kind = merge_edges(src, dst, kind, self.new_edges)
        else:
            src, dst, kind = sort_edges(src, dst, kind)
        state = {"artifacts": self.artifacts, "codes": sorted(self.codes), "first_seen": self.first_seen,
                 "heads": self.heads, "problems": self.problems, "runs_signature": self.runs_signature}
        return Tables(kinds, keys_blob, offsets_of(key_len), meta_blob, offsets_of(lengths), src, dst, kind,
                      state, self.runs if self._runs is not None else self.base.runs_blob(),  # type: ignore[union-attr]
                      self.walked)


def build(repo: Repository, base: Index | None = None) -> tuple[Tables, int]:
    """The graph of ``repo``: ``base`` brought up to date (``Rebuild`` when it cannot be),
    or built from scratch. Returns the tables and how many commits were read."""
    from dvx.lineage.refs import artifact_refs, branch_heads

    b = Builder(repo, base)
    b.runs_from_index()
    heads = sorted(set(branch_heads(repo).values()) | b.codes)
    b.walk_commits(heads)
    b.add_artifacts(artifact_refs(repo))
    return b.tables(), b.commits_read
