"""A Python child of ``dvx run`` joining the run its parent records
(``protocols/runs.md`` §10).

``dvx run`` sets ``DVX_RUN_ID`` (the run) and ``DVX_RUN_ROOT`` (the DVX root of the
repository) in the command's environment. ``dvx.init()`` in a process that sees them
(and is not given another ``id``) returns an :class:`AttachedRun`: its points go into
the run's own ``metrics/`` segments (``dvx run`` itself logs no metrics), its config,
metric definitions, explicit summary, name, tags and artifact edges into
``attached.json`` in the run's state directory, which ``dvx run`` merges into the record
before it commits the run. The child never commits and never takes the run's lock;
one child at a time (``attach.lock``); a second concurrent one is refused. Console
and system metrics are recorded by ``dvx run`` (the child captures nothing itself).
"""

from __future__ import annotations

import fcntl
import os
from typing import Any

from dvx.runs.record import RunError, check_run_id
from dvx.runs.run import Run

ENV_ID = "DVX_RUN_ID"
ENV_ROOT = "DVX_RUN_ROOT"
ATTACHED = "attached.json"
ATTACH_LOCK = "attach.lock"


def wanted(id: str | None) -> str | None:
    """The run id to attach to, when this process should attach."""
    env = os.environ.get(ENV_ID)
    if not env or (id is not None and id != env):
        return None
    return env


class AttachedRun(Run):
    """A ``Run`` writing into the run of a parent ``dvx run`` (module docstring)."""

    def __init__(self, *args: Any, given: dict[str, Any], **kw: Any) -> None:
        self._given = given
        super().__init__(*args, **kw)

    def _save_state(self) -> None:
        from dvx.fsutil import atomic_write_bytes

        self._dirty = False
        state = {
            "dvx_run": 1, "given": self._given, "config": dict(self.config), "metrics": dict(self._metrics),
            "explicit_summary": dict(self.summary.explicit),
            "inputs": self._record["inputs"], "outputs": self._record["outputs"],
        }
        from dvx.runs.record import encode_record

        atomic_write_bytes(os.path.join(self._state_dir, ATTACHED), encode_record(state), fsync=False)

    def _do_finish(self, state: str, exit_code: int | None, sig: str | None) -> None:
        if self._console is not None:
            self._console.stop()
        self._flusher.stop()
        try:
            self._save_state()
        except (OSError, ValueError) as exc:
            from dvx.runs.run import _warn

            _warn(f"run {self.id}: could not save what this process recorded ({exc})")
        self._release_lock()


def attach(run_id: str, project: str | None, name: str | None, config: Any, tags: Any,
           notes: str | None) -> AttachedRun:
    from dvx.repo import Repository
    from dvx.runs.commit import state_root
    from dvx.runs.record import decode_record
    from dvx.runs.recover import stats_of_dir
    from dvx.runs.segments import public_stats

    check_run_id(run_id)
    repo = Repository.find(os.environ.get(ENV_ROOT) or None)
    state_dir = os.path.join(state_root(repo), run_id)
    try:
        with open(os.path.join(state_dir, "run.json"), "rb") as f:
            record = decode_record(f.read(), f"run {run_id}")
    except OSError:
        raise RunError(f"{ENV_ID}={run_id} names no run being recorded in {repo.root}",
                       f"unset {ENV_ID} to record a run of your own") from None
    fd = os.open(os.path.join(state_dir, ATTACH_LOCK), os.O_RDWR | os.O_CREAT, 0o644)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError:
        os.close(fd)
        raise RunError(f"another process is already logging into run {run_id}",
                       "one Python process at a time can join a `dvx run`") from None
    stats, _points, _last = stats_of_dir(os.path.join(state_dir, "metrics"))
    _keys, last_step, next_seq = public_stats(stats)
    given = {"project": project, "name": name, "notes": notes, "tags": sorted({str(t) for t in (tags or ())})}
    mine = {k: v for k, v in record.items() if not k.startswith("_")}
    mine["inputs"], mine["outputs"] = [], []
    previous = _read_attached(state_dir)
    run = AttachedRun(repo, state_dir, fd, mine, old=None, next_seq=next_seq,
                      next_step=last_step + 1 if isinstance(last_step, int) else 0,
                      system_interval=None, capture_output=False, given=given)
    if previous:  # an earlier child of the same `dvx run`: keep what it recorded
        dict.update(run.config, previous.get("config") or {})
        run._metrics.update(previous.get("metrics") or {})
        run.summary.explicit.update(previous.get("explicit_summary") or {})
        run._record["inputs"] = previous.get("inputs") or []
        run._record["outputs"] = previous.get("outputs") or []
    if config is not None:
        run.config.update(config)
    return run


def _read_attached(state_dir: str) -> dict[str, Any] | None:
    from dvx.runs.record import decode_record

    try:
        with open(os.path.join(state_dir, ATTACHED), "rb") as f:
            return decode_record(f.read(), ATTACHED)
    except (OSError, RunError, ValueError):
        return None


def merge_into(run: Run) -> None:
    """``dvx run``'s side: take what attached children recorded into ``run`` (before
    it finishes), and count the points they wrote."""

    from dvx.runs.recover import stats_of_dir
    from dvx.runs.segments import public_stats

    got = _read_attached(run._state_dir)
    if got:
        given = got.get("given") or {}
        rec = run._record
        if given.get("name") and rec.get("name") == rec["id"]:
            rec["name"] = given["name"]
        for key in ("project", "notes"):
            if given.get(key) and not rec.get(key):
                rec[key] = given[key]
        rec["tags"] = sorted(set(rec.get("tags") or ()) | set(given.get("tags") or ()))
        dict.update(run.config, got.get("config") or {})
        run._metrics.update(got.get("metrics") or {})
        run.summary.explicit.update(got.get("explicit_summary") or {})
        for kind in ("inputs", "outputs"):
            theirs = got.get(kind) or []
            paths = {e["path"] for e in theirs}
            rec[kind] = [e for e in rec.get(kind) or [] if e["path"] not in paths] + theirs
    stats, points, last = stats_of_dir(os.path.join(run._state_dir, "metrics"))
    if points:
        f = run._flusher
        with f.lock:
            f.stats, f.points, f.last_time = stats, points, last
            # their segments are closed: the parent's writer starts after them
            from dvx.runs.segments import SegmentWriter

            f.metrics = SegmentWriter(os.path.join(run._state_dir, "metrics"))
            f.next_seq = public_stats(stats)[2]  # the parent's calls are numbered after theirs
