"""The query API: ``api = dvx.Api(repo=".")``, ``api.runs(filters, order, limit)``,
``api.run(id)`` (as wandb's ``wandb.Api``), plus what ``dvx runs diff`` and
``dvx runs export`` compute.

Runs are found through the local index (``dvx.runs.index``), metric points are read
from the run's segments in the store, decoding only the columns and keys asked for.
"""

from __future__ import annotations

import contextlib
import os
from typing import Any

from dvx.repo import Repository
from dvx.runs.record import REF_PREFIX, RunError


class Api:
    """Read-only access to the runs of one repository (``repo``: any path inside it)."""

    def __init__(self, repo: str | os.PathLike[str] | Repository | None = ".") -> None:
        self._owned = not isinstance(repo, Repository)
        self.repo = repo if isinstance(repo, Repository) else Repository.find(os.fspath(repo or "."))

    def __repr__(self) -> str:
        return f"Api(repo={self.repo.root!r})"

    def close(self) -> None:
        """Close the store files reading points opened (a Repository passed in is left
        to its owner). Also at the end of a ``with`` block, and when garbage-collected."""
        if self._owned:
            self.repo.close()

    def __enter__(self) -> Api:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __del__(self) -> None:
        with contextlib.suppress(Exception):
            self.close()

    def _table(self, reindex: bool = False) -> Any:
        from dvx.runs import index
        from dvx.runs.recover import recover_abandoned

        recover_abandoned(self.repo)
        return index.with_running(self.repo, index.load(self.repo, rebuild=reindex))

    def runs(self, filters: str | dict[str, Any] | None = None, order: str | list[str] | None = None,
             limit: int | None = None, *, per_page: int | None = None) -> list[Run]:
        """Runs matching ``filters`` (the filter language as a string, or a MongoDB-style
        dict), sorted by ``order`` (``"-summary.acc,name"``; default newest first), at
        most ``limit``. ``per_page`` is accepted for wandb compatibility and ignored."""
        from dvx.runs.query import compile_filter, parse_order, select

        if limit is not None and (not isinstance(limit, int) or limit < 0):
            raise RunError(f"limit must be a non-negative int, not {limit!r}")
        node = compile_filter(filters)
        keys = parse_order(order)
        table = self._table()
        return [Run(self, table, row) for row in select(table, node, keys, limit)]

    def run(self, run_id: str) -> Run:
        """The run with this id (or the only one whose id starts with it); wandb's
        ``"entity/project/id"`` paths are accepted (the last part is the id)."""
        from dvx.runs.query import column_name

        wanted = str(run_id).rsplit("/", 1)[-1]
        table = self._table()
        col = column_name("id", "s")
        ids = table.column(col).to_pylist() if col in table.column_names else []
        if wanted in ids:
            return Run(self, table, ids.index(wanted))
        matches = [i for i, rid in enumerate(ids) if wanted and rid.startswith(wanted)]
        if len(matches) == 1:
            return Run(self, table, matches[0])
        if not matches:
            raise RunError(f"no run {run_id!r}", "see `dvx runs list`")
        shown = ", ".join(ids[i] for i in matches[:5])
        raise RunError(f"run id {run_id!r} is ambiguous ({shown})", "give more of the id")

    def artifact(self, name: str, type: str | None = None) -> Any:
        """One artifact version: ``"model:best"``, ``"model:v3"``, or ``"model"`` (its
        ``latest``), as wandb's ``api.artifact``; ``type``, when given, must match.
        Returns a :class:`dvx.artifacts.view.ArtifactView`."""
        from dvx.artifacts.names import ArtifactError, parse_reference
        from dvx.artifacts.read import get_artifact, pick
        from dvx.artifacts.view import ArtifactView

        ref = str(name).rsplit("/", 1)[-1]  # wandb's "entity/project/name:alias"
        art = get_artifact(self.repo, parse_reference(ref).name)
        if type is not None and art.type != type:
            raise ArtifactError(f"artifact {art.name} has type {art.type!r}, not {type!r}")
        return ArtifactView(self, art, pick(art, ref))

    def artifacts(self, type: str | None = None) -> list[Any]:
        """The ``latest`` version of every artifact (of ``type``), by name."""
        from dvx.artifacts.read import list_artifacts, pick
        from dvx.artifacts.view import ArtifactView

        return [ArtifactView(self, a, pick(a, a.name)) for a in list_artifacts(self.repo)
                if (type is None or a.type == type) and a.live]

    def reindex(self) -> int:
        """Rebuild the local index from the run records in git; returns how many runs."""
        from dvx.runs import index

        return int(index.load(self.repo, rebuild=True).num_rows)

    def lineage(self, target: str, direction: str = "up", depth: int | None = None,
                types: str | list[str] | None = None, limit: int | None = None) -> Any:
        """The lineage graph around ``target`` (see :func:`dvx.api.lineage`). The index
        stays mapped in this object, so later queries only check that the refs did not
        move (``docs/lineage.md``)."""
        from dvx.lineage.query import LineageIndex, lineage

        index = self.__dict__.get("_lineage")
        if index is None:
            index = self.__dict__["_lineage"] = LineageIndex(self.repo)
        return lineage(self.repo, target, direction, depth, types, limit, index=index)


class Run:
    """One run, read-only: its record's fields as attributes, and its points."""

    def __init__(self, api: Api, table: Any, row: int) -> None:
        self._api = api
        self._table: Any = table
        self._row = row
        self._rec: dict[str, Any] | None = None

    @property
    def _record(self) -> dict[str, Any]:  # decoded on first use: a query may return 10,000 runs
        if self._rec is None:
            from dvx.runs.index import record_at

            self._rec = record_at(self._table, self._row)
        return self._rec

    @property
    def _commit(self) -> str | None:
        from dvx.runs.index import COMMIT

        return self._table.column(COMMIT)[self._row].as_py()  # type: ignore[no-any-return]

    def __repr__(self) -> str:
        return f"<Run {self.id} {self.name!r} ({self.state})>"

    # identity and record fields
    @property
    def id(self) -> str:
        return str(self._record["id"])

    @property
    def name(self) -> str:
        return str(self._record.get("name") or self._record["id"])

    @property
    def state(self) -> str:
        return str(self._record.get("state"))

    @property
    def project(self) -> str | None:
        return self._record.get("project")

    @property
    def group(self) -> str | None:
        return self._record.get("group")

    @property
    def notes(self) -> str | None:
        return self._record.get("notes")

    @property
    def tags(self) -> list[str]:
        return list(self._record.get("tags") or [])

    @property
    def config(self) -> dict[str, Any]:
        return dict(self._record.get("config") or {})

    @property
    def summary(self) -> dict[str, Any]:
        return dict(self._record.get("summary") or {})

    @property
    def start_time(self) -> float | None:
        return self._record.get("start_time")

    @property
    def end_time(self) -> float | None:
        return self._record.get("end_time")

    @property
    def exit_code(self) -> int | None:
        return self._record.get("exit_code")

    @property
    def commit(self) -> str | None:
        """The run's commit (on ``refs/dvx/runs/<id>``); None while it runs for the first time."""
        return self._commit

    @property
    def ref(self) -> str:
        return REF_PREFIX + self.id

    @property
    def code(self) -> dict[str, Any]:
        """``{"commit", "branch", "dirty", "diff", "diff_truncated"}`` of the code it ran."""
        return dict(self._record.get("code") or {})

    @property
    def inputs(self) -> list[dict[str, Any]]:
        return list(self._record.get("inputs") or [])

    @property
    def outputs(self) -> list[dict[str, Any]]:
        return list(self._record.get("outputs") or [])

    @property
    def files(self) -> dict[str, str]:
        """Name -> path inside ``.dvx-run/`` of each pointer the run holds."""
        return dict(self._record.get("files") or {})

    @property
    def metrics(self) -> dict[str, Any]:
        """Per key: count, first/last step, min, max, mean, last (the record's ``history.keys``)."""
        return dict((self._record.get("history") or {}).get("keys") or {})

    @property
    def environment(self) -> dict[str, Any]:
        """Python, host, command line... and the installed packages (read from git)."""
        return dict(self.record().get("environment") or {})

    def record(self) -> dict[str, Any]:
        """The full record (``run.json``)."""
        if self._commit is None or self.state == "running":
            return dict(self._record)
        from dvx.runs.index import read_records

        return read_records(self._api.repo, {self.id: self._commit}, full=True).get(self.id, dict(self._record))

    def _as_catalog(self) -> dict[str, Any]:
        return {**self._record, "commit": self._commit, "ref": self.ref}

    # points
    def history(self, keys: str | list[str] | None = None, x: str = "step") -> Any:
        """Every point of the run's metrics as a ``pyarrow.Table``, one row per ``log``
        call that logged any of ``keys`` (default: all keys), in the order logged, or by
        ``x`` (stable) when ``x`` is "step" or "time" and the steps went backwards.
        Columns: ``x``, then the others of seq/step/time, then one column per key (null
        where that call did not log it). Only the keys asked for are decoded."""
        return read_wide(self._api.repo, self._as_catalog(), "metrics", keys, x)

    def scan_history(self, keys: str | list[str] | None = None) -> list[dict[str, Any]]:
        """``history()`` as a list of dicts (wandb's spelling)."""
        return list(self.history(keys).to_pylist())

    def system_metrics(self, keys: str | list[str] | None = None, x: str = "time") -> Any:
        """The sampled system metrics (runs.md §5) as a ``pyarrow.Table``, like ``history``."""
        return read_wide(self._api.repo, self._as_catalog(), "system", keys, x)

    def points(self, which: str = "metrics") -> Any:
        """Every point as stored: ``seq, step, time, key, kind, value, text``."""
        return read_long(self._api.repo, self._as_catalog(), which, None)


# -- reading points ---------------------------------------------------------------------------
_X = ("step", "seq", "time")


def read_long(repo: Repository, run: dict[str, Any], which: str, keys: list[str] | None) -> Any:
    """The points of a run (long form, the segment schema), only ``keys`` if given."""
    import pyarrow as pa
    import pyarrow.compute as pc

    from dvx.runs.catalog import segment_data
    from dvx.runs.segments import SCHEMA

    batches: list[Any] = []
    wanted = pa.array(keys, pa.utf8()) if keys is not None else None
    for data in segment_data(repo, run, which):
        try:
            reader = pa.ipc.open_stream(pa.BufferReader(data))
            while True:
                try:
                    batch = reader.read_next_batch()
                except StopIteration:
                    break
                if wanted is not None:
                    mask = pc.is_in(batch.column(3), value_set=wanted) if len(keys or ()) > 1 \
                        else pc.equal(batch.column(3), keys[0])  # type: ignore[index]
                    batch = batch.filter(mask)
                batches.append(batch)
        except (OSError, pa.ArrowInvalid):  # a segment cut short: keep its complete batches
            continue
    return pa.Table.from_batches(batches, schema=SCHEMA)


def _values(sub: Any) -> Any:
    """The values of one key's points as one Arrow array of the narrowest type."""
    import pyarrow as pa
    import pyarrow.compute as pc

    from dvx.runs.record import point_value

    kinds = set(pc.unique(sub.column("kind")).to_pylist())
    if kinds <= {0}:
        return sub.column("value")
    if kinds == {2}:
        return pc.not_equal(sub.column("value"), 0.0)
    if kinds == {1} and sub.column("text").null_count == sub.num_rows:
        return pc.cast(sub.column("value"), pa.int64(), safe=False)
    if kinds == {3}:
        return sub.column("text")
    cols = (sub.column("kind").to_pylist(), sub.column("value").to_pylist(), sub.column("text").to_pylist())
    vals = [point_value(k, v, t) for k, v, t in zip(*cols, strict=True)]
    if kinds <= {0, 1, 2}:
        return pa.array([float(v) if v is not None else None for v in vals], pa.float64())
    return pa.array([None if v is None else str(v) for v in vals], pa.utf8())


def read_wide(repo: Repository, run: dict[str, Any], which: str, keys: str | list[str] | None, x: str) -> Any:
    import numpy as np
    import pyarrow as pa
    import pyarrow.compute as pc

    if x not in _X:
        raise RunError(f"x must be one of {', '.join(_X)}, not {x!r}")
    if isinstance(keys, str):
        keys = [keys]
    long = read_long(repo, run, which, list(keys) if keys is not None else None)
    if keys is None:
        keys = sorted(set(pc.unique(long.column("key")).to_pylist()))
    order = [x] + [c for c in _X if c != x]
    if len(keys) == 1:  # every row is a point of the key: no pivot
        sub = long
        cols = {c: sub.column(c) for c in order}
        cols[keys[0]] = _values(sub)
        table = pa.table(cols)
    else:
        seq = long.column("seq").to_numpy()
        calls, first, where = np.unique(seq, return_index=True, return_inverse=True)
        take = pa.array(first)
        cols = {c: long.column(c).take(take) for c in order}
        for key in keys:
            m = pc.equal(long.column("key"), key)
            sub = long.filter(m)
            vals = _values(sub)
            slots = where[np.asarray(m.to_numpy(zero_copy_only=False), dtype=bool)]
            pos = np.full(len(calls), -1, dtype=np.int64)
            pos[slots] = np.arange(len(slots))
            idx = pa.array(pos, mask=pos < 0)
            cols[key] = vals.take(idx) if len(vals) else pa.nulls(len(calls), vals.type)
        table = pa.table(cols)
    if x != "seq" and table.num_rows > 1:
        xs = table.column(x).to_numpy()
        if np.any(xs[1:] < xs[:-1]):  # steps went back: order by x, keeping logged order within
            table = table.take(pa.array(np.argsort(xs, kind="stable")))
    return table


# -- diff and export (the CLI's `dvx runs diff` / `dvx runs export`) -----------------------------------
def diff_runs(a: Run, b: Run, all_keys: bool = False) -> dict[str, Any]:
    """Side by side: config, summary (flattened keys), code, inputs and outputs (by
    path), and the plain fields; only what differs unless ``all_keys``."""
    from dvx.runs.query import flatten

    def flat(prefix: str, d: dict[str, Any]) -> dict[str, Any]:
        out: dict[str, Any] = {}
        flatten(prefix, d, out)
        return {k[len(prefix) + 1:]: v for k, v in out.items()}

    def side(da: dict[str, Any], db: dict[str, Any]) -> dict[str, list[Any]]:
        rows = {}
        for k in sorted(set(da) | set(db)):
            va, vb = da.get(k, _MISSING), db.get(k, _MISSING)
            if all_keys or not _same(va, vb):
                rows[k] = [_show(va), _show(vb)]
        return rows

    def edges(entries: list[dict[str, Any]]) -> dict[str, Any]:
        return {e["path"]: e.get("id") for e in entries}

    ca, cb = a.code, b.code
    code_a = {"commit": ca.get("commit"), "branch": ca.get("branch"), "dirty": bool(ca.get("dirty"))}
    code_b = {"commit": cb.get("commit"), "branch": cb.get("branch"), "dirty": bool(cb.get("dirty"))}
    # the uncommitted changes each ran with, named by their git blob id (None: none)
    code_a["diff"] = _code_diff(a) if ca.get("diff") else None
    code_b["diff"] = _code_diff(b) if cb.get("diff") else None
    fields: tuple[str, ...] = ("name", "state", "project", "group", "exit_code")
    fields += ("start_time", "end_time") if all_keys else ()
    plain = {k: getattr(a, k) for k in fields}
    plain_b = {k: getattr(b, k) for k in plain}
    plain["tags"], plain_b["tags"] = a.tags, b.tags
    return {
        "a": a.id, "b": b.id,
        "code_differs": code_a["commit"] != code_b["commit"] or code_a["diff"] != code_b["diff"],
        "run": side(plain, plain_b),
        "config": side(flat("c", a.config), flat("c", b.config)),
        "summary": side(flat("s", a.summary), flat("s", b.summary)),
        "code": side(code_a, code_b),
        "inputs": side(edges(a.inputs), edges(b.inputs)),
        "outputs": side(edges(a.outputs), edges(b.outputs)),
    }


class _Missing:
    def __repr__(self) -> str:
        return "-"


_MISSING = _Missing()


def _same(a: Any, b: Any) -> bool:
    if isinstance(a, float) and isinstance(b, float) and a != a and b != b:
        return True  # NaN and NaN: the same value
    return type(a) is type(b) and a == b


def _show(v: Any) -> Any:
    return None if v is _MISSING else v


def _code_diff(run: Run) -> str | None:
    """The git blob id of the run's ``code.diff`` (None without one)."""
    commit = run.commit
    if commit is None:
        return None
    from dvx.gitio import GitRepo
    from dvx.runs.record import RUN_DIR

    git = GitRepo(run._api.repo.root)
    found = git.blob_id_at(git.commit_info(commit), f"{RUN_DIR}/code.diff")
    return found.decode() if found is not None else None


def export_points(run: Run, fmt: str, path: str) -> int:
    """Write every metric point of ``run`` (the long form: seq, step, time, key, kind,
    value, text) to ``path`` as Parquet or CSV; returns the number of points."""
    if fmt not in ("parquet", "csv"):
        raise RunError(f"unknown format {fmt!r}", "use --format parquet or --format csv")
    table = run.points()
    tmp = f"{path}.{os.getpid()}.tmp"
    try:
        if fmt == "parquet":
            import pyarrow.parquet as pq

            pq.write_table(table, tmp)
        else:
            import pyarrow.csv as pcsv

            pcsv.write_csv(table, tmp)
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise
    return int(table.num_rows)
