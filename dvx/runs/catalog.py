"""Reading runs: committed ones from ``refs/dvx/runs/*``, running ones from
``.dvx/state/runs/`` (``protocols/runs.md`` §2, §7). Abandoned runs are recovered
first, so a killed run shows up as ``crashed``."""

from __future__ import annotations

import os
from typing import Any

from dvx.repo import Repository
from dvx.runs.record import REF_PREFIX, RUN_DIR, RunError, decode_record


def _committed(repo: Repository) -> dict[str, tuple[str, dict[str, Any]]]:
    from dvx.gitio import GitRepo

    git = GitRepo(repo.root)
    out: dict[str, tuple[str, dict[str, Any]]] = {}
    for ref, sha in git.refs_under(REF_PREFIX).items():
        run_id = ref[len(REF_PREFIX):]
        found = git.blob_at(git.commit_info(sha), f"{RUN_DIR}/run.json")
        if found is None:
            continue
        out[run_id] = (sha, decode_record(found[1], ref))
    return out


def _running(repo: Repository) -> dict[str, dict[str, Any]]:
    from dvx.runs.commit import state_root

    root = state_root(repo)
    out: dict[str, dict[str, Any]] = {}
    try:
        names = os.listdir(root)
    except FileNotFoundError:
        return out
    for name in names:
        path = os.path.join(root, name, "run.json")
        try:
            with open(path, "rb") as f:
                record = decode_record(f.read(), path)
        except (OSError, RunError):
            continue
        out[name] = {k: v for k, v in record.items() if not k.startswith("_")}
    return out


def list_runs(repo: Repository, limit: int | None = None) -> list[dict[str, Any]]:
    """Every run, newest start first: its record plus ``ref`` and ``commit`` (None while
    it runs)."""
    from dvx.runs.recover import recover_abandoned

    recover_abandoned(repo)
    runs: dict[str, dict[str, Any]] = {}
    for run_id, (sha, record) in _committed(repo).items():
        runs[run_id] = {**record, "ref": REF_PREFIX + run_id, "commit": sha}
    for run_id, record in _running(repo).items():  # a resumed run is running again
        runs[run_id] = {**record, "ref": REF_PREFIX + run_id, "commit": runs.get(run_id, {}).get("commit")}
    ordered = sorted(runs.values(), key=lambda r: (-(r.get("start_time") or 0.0), r["id"]))
    return ordered[:limit] if limit is not None else ordered


def find_run(repo: Repository, run_id: str) -> dict[str, Any]:
    """The run with this id, or the only one whose id starts with it."""
    runs = list_runs(repo)
    exact = [r for r in runs if r["id"] == run_id]
    if exact:
        return exact[0]
    matches = [r for r in runs if r["id"].startswith(run_id)] if run_id else []
    if len(matches) == 1:
        return matches[0]
    if not matches:
        raise RunError(f"no run {run_id!r}", "see `dvx runs list`")
    shown = ", ".join(r["id"] for r in matches[:5])
    raise RunError(f"run id {run_id!r} is ambiguous ({shown})", "give more of the id")


def read_history(repo: Repository, run: dict[str, Any], which: str = "metrics") -> Any:
    """Every point of a run (``which``: "metrics" or "system") as a ``pyarrow.Table``
    in the order logged (runs.md §4), read from the store (or, while it runs, from its
    state directory)."""
    import tempfile

    from dvx.gitio import GitRepo
    from dvx.ops.checkout import restore_file
    from dvx.pointer import parse_pointer
    from dvx.runs.commit import state_root
    from dvx.runs.segments import SCHEMA, read_points
    from dvx.workspace import flatten_tree

    if run.get("commit") is None or run.get("state") == "running":
        return read_points(os.path.join(state_root(repo), run["id"], which))
    git = GitRepo(repo.root)
    blob = git.blob_at(git.commit_info(run["commit"]), f"{RUN_DIR}/{which}.dvx")
    if blob is None:
        import pyarrow as pa

        return pa.Table.from_batches([], schema=SCHEMA)
    pointer = parse_pointer(blob[1], f"{RUN_DIR}/{which}.dvx")
    scratch = os.path.join(repo.dvx_dir, "tmp")  # the repository's own (never a link: repo.py)
    os.makedirs(scratch, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=scratch) as tmp:
        for rel, (mid, _size, _exe) in flatten_tree(repo.store, pointer.oid)[0].items():
            restore_file(repo.store, mid, os.path.join(tmp, rel), False)
        table = read_points(tmp)
        return table.combine_chunks()


def segment_data(repo: Repository, run: dict[str, Any], which: str = "metrics") -> list[Any]:
    """The segment files of a run (``which``: "metrics" or "system"), in order, as
    in-memory buffers (verified as read from the store; a running run's from its state
    directory), for readers that decode only some columns (``dvx.runs.api``)."""
    from dvx.gitio import GitRepo
    from dvx.pointer import parse_pointer
    from dvx.runs.commit import state_root
    from dvx.runs.segments import _NAME, segment_files
    from dvx.workspace import flatten_tree

    if run.get("commit") is None or run.get("state") == "running":
        out = []
        for _, path in segment_files(os.path.join(state_root(repo), run["id"], which)):
            with open(path, "rb") as f:
                out.append(f.read())
        return out
    git = GitRepo(repo.root)
    blob = git.blob_at(git.commit_info(run["commit"]), f"{RUN_DIR}/{which}.dvx")
    if blob is None:
        return []
    pointer = parse_pointer(blob[1], f"{RUN_DIR}/{which}.dvx")
    files = flatten_tree(repo.store, pointer.oid)[0]
    named = sorted((int(m.group(1)), rel) for rel in files if (m := _NAME.match(rel.rsplit("/", 1)[-1])))
    out = []
    for _, rel in named:
        with repo.store.open_file(files[rel][0]) as src:
            out.append(src.readall())
    return out
