"""Turning a run's state directory into a commit on ``refs/dvx/runs/<id>``
(``protocols/runs.md`` §7): data into the store, then git objects, then the ref."""

from __future__ import annotations

import os
from typing import Any

from dvx.lock import store_lock
from dvx.pointer import POINTER_VERSION, Pointer
from dvx.repo import Repository
from dvx.runs.record import REF_PREFIX, RUN_DIR, encode_record

STATE_SUBDIR = os.path.join("state", "runs")


def state_root(repo: Repository) -> str:
    return os.path.join(repo.dvx_dir, STATE_SUBDIR)


def _store_dir(repo: Repository, writer: Any, path: str, where: str) -> Pointer | None:
    from dvx.workspace import build_tree, hash_file, scan_dir

    if not os.path.isdir(path):
        return None
    scan = scan_dir(path, where)
    if not scan.files:
        return None
    info: dict[str, tuple[bytes, int, int]] = {}
    for name, st in scan.files.items():
        manifest, _ = hash_file(os.path.join(path, name), f"{where}/{name}", repo.chunker, writer, st)
        info[name] = (manifest.object_id(), manifest.size, 0)
    scan.links.clear()  # nothing a run writes is a link; never follow one
    tree_id, size, files = build_tree(scan, info, writer)
    return Pointer.create(dvx=POINTER_VERSION, kind="tree", id=tree_id.hex(), size=size, files=files)


def _store_file(repo: Repository, writer: Any, path: str, where: str) -> Pointer | None:
    from dvx.workspace import hash_file

    if not os.path.isfile(path) or os.path.getsize(path) == 0:
        return None
    manifest, _ = hash_file(path, where, repo.chunker, writer)
    return Pointer.create(dvx=POINTER_VERSION, kind="file", id=manifest.object_id().hex(),
                          size=manifest.size, files=1, b3=manifest.digest.hex())


def _pointer_files(state_dir: str, kind: str) -> dict[str, bytes]:
    top = os.path.join(state_dir, kind)
    found: dict[str, bytes] = {}
    for dirpath, _dirs, names in os.walk(top):
        for name in names:
            full = os.path.join(dirpath, name)
            rel = os.path.relpath(full, state_dir).replace(os.sep, "/")
            with open(full, "rb") as f:
                found[rel] = f.read()
    return found


def commit_run(repo: Repository, state_dir: str, record: dict[str, Any], *, old: str | None) -> str:
    """Store the run's data, write its commit and move its ref from ``old`` (the run's
    previous commit when it was resumed, else None). Returns the commit id. ``record``
    is completed with ``files`` and written as ``run.json`` (keys starting with ``_``
    are local bookkeeping and left out)."""
    from dvx.gitio import GitRepo

    run_id = record["id"]
    where = f"run {run_id}"
    with store_lock(repo.store.path):
        writer = repo.store.writer()
        try:
            pointers = {
                "metrics": _store_dir(repo, writer, os.path.join(state_dir, "metrics"), f"{where} metrics"),
                "system": _store_dir(repo, writer, os.path.join(state_dir, "system"), f"{where} system"),
                "media": _store_dir(repo, writer, os.path.join(state_dir, "media"), f"{where} media"),
                "console": _store_file(repo, writer, os.path.join(state_dir, "console.log"),
                                       f"{where} console.log"),
            }
            writer.commit()
        except BaseException:
            writer.abort()
            raise
    names = {"metrics": "metrics.dvx", "system": "system.dvx", "media": "media.dvx",
             "console": "console.log.dvx"}
    files: dict[str, bytes] = {}
    record["files"] = {}
    for key, pointer in pointers.items():
        if pointer is not None:
            files[names[key]] = pointer.render().encode()
            record["files"][key] = names[key]
    diff_path = os.path.join(state_dir, "code.diff")
    if record["code"].get("diff") and os.path.isfile(diff_path):
        with open(diff_path, "rb") as f:
            files["code.diff"] = f.read()
    else:
        record["code"]["diff"] = None
    files.update(_pointer_files(state_dir, "inputs"))
    files.update(_pointer_files(state_dir, "outputs"))
    files["run.json"] = encode_record({k: v for k, v in record.items() if not k.startswith("_")})
    git = GitRepo(repo.root)
    code = record["code"].get("commit")
    parents = [code] if code else []
    if old and old not in parents:  # a resumed run: its previous commit stays in its history
        parents.append(old)
    message = f"dvx run {run_id}: {record['name']} ({record['state']})\n\nRun-Id: {run_id}\n"
    end = record.get("end_time") or record.get("start_time")
    sha = git.commit_on_ref(REF_PREFIX + run_id, base=code, subtree=RUN_DIR, files=files,
                            parents=parents, message=message, old=old,
                            when=int(end) if end else None)
    _log_artifacts(repo, record, files)
    return sha


def _log_artifacts(repo: Repository, record: dict[str, Any], files: dict[str, bytes]) -> None:
    """Typed outputs become artifact versions (protocols/artifacts.md §5.1). The run is
    committed already: a problem here is a warning, never a lost run."""
    import warnings

    from dvx.artifacts.from_run import log_run_outputs

    try:
        problems = log_run_outputs(repo, record, files)
    except Exception as exc:  # noqa: BLE001 - the run is safe; say what was not logged
        problems = [f"artifacts not logged: {exc}"]
    for line in problems:
        warnings.warn(f"dvx: run {record.get('id')}: {line}", UserWarning, stacklevel=2)
