"""The local run index, ``.dvx/state/runs-index.arrow`` (``protocols/runs.md`` §9).

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
import os
from typing import Any

from dvx.repo import Repository
from dvx.runs.query import BUILTIN, column_name, flatten, typed
from dvx.runs.record import REF_PREFIX

INDEX_NAME = "runs-index.arrow"
INDEX_VERSION = "1"
RECORD = "\x00record"  # the record (JSON bytes)
COMMIT = "\x00commit"  # the commit the run's ref names (None for a running run)


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
    from dvx.runs.record import encode_record

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
    row[RECORD] = encode_record({k: v for k, v in slim.items() if not k.startswith("_")})
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
               "record": pa.binary(), "commit": pa.utf8()}[kind]
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


def read_records(repo: Repository, shas: dict[str, str]) -> dict[str, dict[str, Any]]:
    """``run id -> record`` of the commits ``shas`` (run id -> commit)."""
    from dvx.gitio import GitRepo
    from dvx.runs.record import RUN_DIR, decode_record

    git = GitRepo(repo.root)
    out: dict[str, dict[str, Any]] = {}
    for run_id, sha in shas.items():
        found = git.blob_at(git.commit_info(sha), f"{RUN_DIR}/run.json")
        if found is not None:
            out[run_id] = decode_record(found[1], REF_PREFIX + run_id)
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
    from dvx.gitio import GitRepo

    refs = {ref[len(REF_PREFIX):]: sha for ref, sha in GitRepo(repo.root).refs_under(REF_PREFIX).items()}
    keep: list[int] = []
    if old is not None and old.num_rows:
        have = dict(zip(old.column(COMMIT).to_pylist(), range(old.num_rows), strict=True))
        wanted = set(refs.values())
        keep = [i for c, i in have.items() if c in wanted]
        kept = {c for c in have if c in wanted}
        todo = {rid: sha for rid, sha in refs.items() if sha not in kept}
    else:
        todo = refs
    records = read_records(repo, todo)
    new = rows_table([record_row(rec, todo[rid]) for rid, rec in records.items()])
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
    from dvx.runs.record import decode_record

    return decode_record(table.column(RECORD)[row].as_py(), "the run index")
