"""Runs whose process died (``protocols/runs.md`` §7): any DVX process that looks at
runs takes the lock of each run in ``.dvx/state/runs/``; one it can take belongs to no
live process, and is committed (as ``crashed`` if its record still says ``running``)."""

from __future__ import annotations

import contextlib
import os
import shutil
import time
from typing import Any

from dvx.errors import DvxError
from dvx.repo import Repository
from dvx.runs.commit import commit_run, state_root
from dvx.runs.record import REF_PREFIX, decode_record, summarize

try:
    import fcntl
except ImportError:  # pragma: no cover - non-POSIX
    fcntl = None  # type: ignore[assignment]


def try_lock(state_dir: str) -> int | None:
    """An fd holding the run's exclusive lock, or None if a live process holds it."""
    fd = os.open(os.path.join(state_dir, "lock"), os.O_RDWR | os.O_CREAT, 0o644)
    if fcntl is None:  # pragma: no cover
        return fd
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        os.close(fd)
        return None
    return fd


def lock_owner(state_dir: str) -> str:
    try:
        with open(os.path.join(state_dir, "lock"), encoding="ascii") as f:
            return f.read().strip() or "?"
    except OSError:
        return "?"


def complete_history(record: dict[str, Any], stats: dict[str, dict[str, Any]], points: int,
                     last_time: float | None) -> float | None:
    """Fill ``history`` and ``summary`` from the statistics of the run's points
    (``segments.batch_stats``); returns the time of its last point."""
    from dvx.runs.segments import public_stats

    keys, last_step, next_seq = public_stats(stats)
    record["history"] = {"points": points, "next_seq": max(next_seq, record.get("_next_seq") or 0),
                         "last_step": last_step, "keys": keys}
    record["summary"] = summarize(keys, record.get("metrics") or {}, record.get("_explicit_summary") or {})
    return last_time


def stats_of_dir(directory: str) -> tuple[dict[str, dict[str, Any]], int, float | None]:
    """Statistics, point count and last point time of a segment directory."""
    import pyarrow.compute as pc

    from dvx.runs.segments import batch_stats, read_points

    table = read_points(directory)
    last = pc.max(table["time"]).as_py() if table.num_rows else None
    return batch_stats(table), table.num_rows, last


def _newest_mtime(state_dir: str) -> float:
    newest = 0.0
    for dirpath, _dirs, names in os.walk(state_dir):
        for name in names:
            with contextlib.suppress(OSError):
                newest = max(newest, os.lstat(os.path.join(dirpath, name)).st_mtime)
    return newest or time.time()


def recover_one(repo: Repository, state_dir: str) -> str | None:
    """Commit an abandoned run whose lock the caller holds; returns its commit (None if
    it had nothing to commit). The state directory is deleted afterwards."""
    from dvx.gitio import GitRepo
    from dvx.runs.segments import repair_segments

    path = os.path.join(state_dir, "run.json")
    if not os.path.exists(path):  # died before its record was written: nothing was logged
        shutil.rmtree(state_dir, ignore_errors=True)
        return None
    with open(path, "rb") as f:
        record = decode_record(f.read(), path)
    run_id = record["id"]
    git = GitRepo(repo.root)
    current = git.refs_under(REF_PREFIX).get(REF_PREFIX + run_id)
    if current is not None and current != record.get("_old"):
        found = git.blob_at(git.commit_info(current), ".dvx-run/run.json")
        if found is not None and decode_record(found[1], run_id).get("session") == record.get("session"):
            shutil.rmtree(state_dir, ignore_errors=True)  # committed; only the clean-up was missed
            return current
    repair_segments(os.path.join(state_dir, "metrics"))
    repair_segments(os.path.join(state_dir, "system"))
    stats, points, last = stats_of_dir(os.path.join(state_dir, "metrics"))
    complete_history(record, stats, points, last)
    if record.get("state") == "running":
        record["state"] = "crashed"
        record["exit_code"] = None
        record["end_time"] = last if last is not None else _newest_mtime(state_dir)
    sha = commit_run(repo, state_dir, record, old=record.get("_old"))
    shutil.rmtree(state_dir, ignore_errors=True)
    return sha


def recover_abandoned(repo: Repository, warn: Any = None) -> list[str]:
    """Commit every abandoned run of ``repo``; returns their ids. Cheap when there is
    none (one directory listing, no imports)."""
    root = state_root(repo)
    try:
        names = sorted(os.listdir(root))
    except (FileNotFoundError, NotADirectoryError):
        return []
    done = []
    for name in names:
        state_dir = os.path.join(root, name)
        if not os.path.isdir(state_dir):
            continue
        try:
            fd = try_lock(state_dir)
        except OSError:
            continue
        if fd is None:
            continue  # a live run
        try:
            recover_one(repo, state_dir)
            done.append(name)
        except (DvxError, OSError) as exc:
            if warn is not None:
                warn(f"run {name} could not be recovered: {exc}")
        finally:
            os.close(fd)
    return done
