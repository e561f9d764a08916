"""The local run index, ``.dvx/state/runs-index.arrow`` (``protocols/runs.md`` §12).

One row per committed run, read from the run records at ``refs/dvx/runs/*``: the
fields a filter or a sort can name, as typed columns (``dvx.runs.query``), the ref's
commit id, and the record itself (JSON, without the installed-package list). It is a
cache, never the source of truth: it carries a signature of the run refs (the stat of
``refs/dvx/runs/`` and of ``packed-refs``), and when that no longer matches (a ref was
added, removed or moved, by DVX, git or a fetch) it is brought up to date from git,
re-reading only the runs whose ref now names another commit. Deleting it is always
safe. Running runs are never in it: they are read from their state directories at
each query.
"""

from __future__ import annotations

import contextlib
import json
import os
from typing import Any

from dvx.repo import Repository
from dvx.runs.query import BUILTIN, column_name, flatten, typed
from dvx.runs.record import REF_PREFIX, RUN_DIR

INDEX_NAME = "runs-index.arrow"
INDEX_VERSION = "1"
RECORD = "\x00record"  # the record (JSON bytes)
COMMIT = "\x00commit"  # the commit the run's ref names (None for a running run)
REF = "\x00ref"  # the ref's name below refs/dvx/runs/ (the row is the ref's: ref and commit key it)


def index_path(repo: Repository) -> str:
    return os.path.join(repo.dvx_dir, "state", INDEX_NAME)


def _git_dir(repo: Repository) -> str | None:
    from dvx.gitio import common_git_dir, find_git_root

    root = find_git_root(repo.root)
    return common_git_dir(root) if root else None


def signature(repo: Repository) -> str:
    """What changes whenever a run ref is added, removed or moved: git writes a ref by
    creating ``<ref>.lock`` and renaming it (the directory changes), and deletes or
    packs refs by rewriting ``packed-refs``."""
    git_dir = _git_dir(repo)
    parts = [INDEX_VERSION]
    if git_dir is not None:
        for path in (os.path.join(git_dir, REF_PREFIX.rstrip("/")), os.path.join(git_dir, "packed-refs")):
            try:
                st = os.stat(path)
                parts.append(f"{st.st_ino}:{st.st_mtime_ns}:{st.st_ctime_ns}:{st.st_size}")
            except OSError:
                parts.append("-")
    return "|".join(parts)


def record_row(record: dict[str, Any], commit: str | None) -> dict[str, Any]:
    """The index row of one run: typed columns of every field, the commit, the record."""
    row: dict[str, Any] = {}
    fields: dict[str, Any] = {k: record.get(k) for k in BUILTIN if k not in ("commit", "code_commit")}
    fields["commit"] = commit
    fields["code_commit"] = (record.get("code") or {}).get("commit")
    flatten("config", record.get("config") or {}, fields)
    flatten("summary", record.get("summary") or {}, fields)
    for name, value in fields.items():
        t = typed(value)
        if t is not None:
            row[column_name(name, t[0])] = t[1]
    slim = dict(record)
    env = slim.get("environment")
    if isinstance(env, dict) and "packages" in env:
        slim["environment"] = {k: v for k, v in env.items() if k != "packages"}
    # compact JSON (the C encoder; NaN/Infinity as Python's json reads them back)
    row[RECORD] = json.dumps({k: v for k, v in slim.items() if not k.startswith("_")},
                             separators=(",", ":"), ensure_ascii=False).encode()
    row[COMMIT] = commit
    return row


def rows_table(rows: list[dict[str, Any]]) -> Any:
    import pyarrow as pa

    names: dict[str, None] = {}
    for r in rows:
        names.update(dict.fromkeys(r))
    cols: dict[str, Any] = {}
    for name in names:
        values = [r.get(name) for r in rows]
        kind = name.rsplit("\x00", 1)[-1]
        typ = {"n": pa.float64(), "s": pa.utf8(), "b": pa.bool_(), "l": pa.list_(pa.utf8()),
               "record": pa.binary(), "commit": pa.utf8(), "ref": pa.utf8()}[kind]
        cols[name] = pa.array(values, typ)
    if not cols:
        return pa.table({RECORD: pa.array([], pa.binary()), COMMIT: pa.array([], pa.utf8())})
    return pa.table(cols)


def _read(path: str) -> tuple[Any, str | None]:
    import pyarrow as pa

    try:
        source = pa.memory_map(path, "r")
        reader = pa.ipc.open_file(source)
        table = reader.read_all()
    except (OSError, pa.ArrowInvalid):
        return None, None
    meta = table.schema.metadata or {}
    if meta.get(b"dvx.runs_index") != INDEX_VERSION.encode():
        return None, None
    return table, meta.get(b"signature", b"").decode()


def _write(path: str, table: Any, sig: str) -> None:
    import pyarrow as pa

    table = table.replace_schema_metadata({"dvx.runs_index": INDEX_VERSION, "signature": sig})
    os.makedirs(os.path.dirname(path), exist_ok=True)
    tmp = f"{path}.{os.getpid()}.tmp"
    try:
        with pa.OSFile(tmp, "wb") as sink, pa.ipc.new_file(sink, table.schema) as w:
            w.write_table(table)
        os.replace(tmp, path)
    except OSError:  # a read-only or full disk: queries still work, just slower
        with contextlib.suppress(OSError):
            os.unlink(tmp)


class _Objects:
    """Reads git objects: loose ones directly (a run commit, its trees and its record are
    loose until git packs them), anything else through dulwich (packs, alternates)."""

    def __init__(self, repo: Repository) -> None:
        from dvx.gitio import GitRepo

        self.git = GitRepo(repo.root)
        self.objects = os.path.join(_git_dir(repo) or os.path.join(self.git.root, ".git"), "objects")
        self.prefix = [p.encode() for p in self.git.prefix.split("/") if p]

    def raw(self, sha: str) -> bytes:
        import zlib

        try:
            with open(os.path.join(self.objects, sha[:2], sha[2:]), "rb") as f:
                data = zlib.decompress(f.read())
            return data[data.index(b"\0") + 1:]
        except (OSError, zlib.error, ValueError):
            return bytes(self.git.repo.object_store.get_raw(sha.encode())[1])  # type: ignore[arg-type]

    def entry(self, tree: str, name: bytes) -> str | None:
        """The id of the entry ``name`` of a tree (entries: ``<mode> <name>\\0<20-byte id>``)."""
        data = self.raw(tree)
        pos, n = 0, len(data)
        while pos < n:
            space = data.index(b" ", pos)
            nul = data.index(b"\0", space)
            if data[space + 1:nul] == name:
                return data[nul + 1:nul + 21].hex()
            pos = nul + 21
        return None

    def record_blob(self, commit: str) -> bytes | None:
        head = self.raw(commit)
        if not head.startswith(b"tree "):
            return None
        tree: str | None = head[5:45].decode()
        for part in (*self.prefix, RUN_DIR.encode(), b"run.json"):
            if tree is None:
                return None
            tree = self.entry(tree, part)
        return self.raw(tree) if tree is not None else None


def _without_packages(data: bytes) -> bytes:
    """A canonical record (runs.md §3: two-space indent) without the body of
    ``environment.packages``, most of its bytes, which the index leaves out anyway.
    Strings are JSON-escaped, so a raw newline only ever comes from the indentation."""
    env = data.find(b'\n  "environment": {\n')
    if env < 0:
        return data
    start = data.find(b'\n    "packages": {\n', env)
    top = data.find(b'\n  "', env + 4)  # the next top-level key
    if start < 0 or (0 <= top < start):
        return data
    end = data.find(b"\n    }", start + 18)
    if end < 0:
        return data
    return data[:start + 18] + data[end + 5:]  # "packages": {}


def run_refs(repo: Repository) -> dict[str, str]:
    """``run id -> commit`` of every ``refs/dvx/runs/*``: loose ref files, else
    ``packed-refs`` (dulwich for anything unusual, e.g. a symbolic ref)."""
    git_dir = _git_dir(repo)
    if git_dir is None:
        return {}
    refs: dict[str, str] = {}
    prefix = REF_PREFIX.encode()
    try:
        with open(os.path.join(git_dir, "packed-refs"), "rb") as f:
            for line in f:
                if line[:1] in (b"#", b"^"):
                    continue
                sha, _, name = line.rstrip(b"\n").partition(b" ")
                if name.startswith(prefix) and len(sha) == 40:
                    refs[name[len(prefix):].decode("utf-8", "replace")] = sha.decode()
    except FileNotFoundError:
        pass
    try:
        entries = list(os.scandir(os.path.join(git_dir, REF_PREFIX.rstrip("/"))))
    except (FileNotFoundError, NotADirectoryError):
        entries = []
    for entry in entries:
        if entry.name.endswith(".lock"):
            continue
        try:
            with open(entry.path, "rb") as f:
                sha = f.read(100).strip()
        except (IsADirectoryError, OSError):
            sha = b""
        if len(sha) != 40 or not all(c in b"0123456789abcdef" for c in sha):  # unusual: ask dulwich
            from dvx.gitio import GitRepo

            return {r[len(REF_PREFIX):]: v for r, v in GitRepo(repo.root).refs_under(REF_PREFIX).items()}
        refs[entry.name] = sha.decode()
    return refs


def read_records(repo: Repository, shas: dict[str, str], full: bool = False) -> dict[str, dict[str, Any]]:
    """``run id -> record`` of the commits ``shas`` (run id -> commit); without ``full``
    the installed-package list is left empty (the index does not keep it)."""
    from dvx.runs.record import RUN_FORMAT, decode_record

    objects = _Objects(repo)
    out: dict[str, dict[str, Any]] = {}
    loads = json.loads
    for run_id, sha in shas.items():
        data = objects.record_blob(sha)
        if data is None:
            continue
        try:  # the common case without the (slow) object hook: no $float in the record
            record = None if b'"$float"' in data else loads(data if full else _without_packages(data))
        except ValueError:
            record = None
        if not isinstance(record, dict) or record.get("dvx_run") != RUN_FORMAT:
            record = decode_record(data, REF_PREFIX + run_id)  # the careful path, and its errors
        out[run_id] = record
    return out


def load(repo: Repository, rebuild: bool = False) -> Any:
    """The index of committed runs as a ``pyarrow.Table``, brought up to date first
    when the run refs changed (or ``rebuild``: from scratch)."""
    import pyarrow as pa
    import pyarrow.compute as pc

    path = index_path(repo)
    sig = signature(repo)
    old, old_sig = (None, None) if rebuild else _read(path)
    if old is not None and old_sig == sig:
        return old
    refs = run_refs(repo)
    keep: list[int] = []
    todo = refs
    if old is not None and old.num_rows and REF in old.column_names:
        have = zip(old.column(REF).to_pylist(), old.column(COMMIT).to_pylist(), strict=True)
        keep = [i for i, (rid, sha) in enumerate(have) if refs.get(rid) == sha]
        kept = {old.column(REF)[i].as_py() for i in keep}
        todo = {rid: sha for rid, sha in refs.items() if rid not in kept}
    records = read_records(repo, todo)
    new = rows_table([{**record_row(rec, todo[rid]), REF: rid} for rid, rec in records.items()])
    if keep and old is not None:
        base = old.take(pa.array(keep)).replace_schema_metadata(None)
        table = pa.concat_tables([base, new], promote_options="default") if new.num_rows else base
    else:
        table = new
    if table.num_rows:  # a deterministic order (newest first) so two builds are the same file
        table = table.take(pc.sort_indices(table, sort_keys=[(column_name("start_time", "n"), "descending"),
                                                             (column_name("id", "s"), "ascending")]))
    table = table.combine_chunks()
    _write(path, table, sig)
    return table


def with_running(repo: Repository, table: Any) -> Any:
    """The index plus the runs in progress (which replace a committed row with their id:
    a resumed run is running again)."""
    import pyarrow as pa
    import pyarrow.compute as pc

    from dvx.runs.catalog import _running

    running = _running(repo)
    if not running:
        return table
    committed = {}
    id_col = column_name("id", "s")
    if table.num_rows and id_col in table.column_names:
        ids = table.column(id_col).to_pylist()
        committed = {rid: i for i, rid in enumerate(ids)}
    rows = []
    for rid, rec in running.items():
        i = committed.get(rid)
        commit = table.column(COMMIT)[i].as_py() if i is not None else None
        row = record_row(rec, None)
        row[COMMIT] = commit  # the commit it was resumed from, if any
        rows.append(row)
    extra = rows_table(rows)
    if committed:
        drop = pc.is_in(table.column(id_col), value_set=pa.array(list(running)))
        table = table.filter(pc.invert(pc.fill_null(drop, False)))
    return pa.concat_tables([table.replace_schema_metadata(None), extra], promote_options="default")


def record_at(table: Any, row: int) -> dict[str, Any]:
    return json.loads(table.column(RECORD)[row].as_py())  # type: ignore[no-any-return]
