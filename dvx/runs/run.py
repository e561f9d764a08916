"""A run: what ``dvx.init`` returns (``protocols/runs.md``).

``Run.log`` is the hot path: it checks the types of the values, copies the dict and
appends one tuple to a list; a background thread (``writer.py``) writes the list out.
Everything that touches a disk, git or a heavy library happens in ``init``, in that
thread, or in ``finish``.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import sys
import threading
import time
import warnings
from collections.abc import Iterator, Mapping, MutableMapping
from dataclasses import dataclass
from typing import Any

from dvx.errors import DvxError
from dvx.runs.record import (
    REF_PREFIX,
    SUMMARY_RULES,
    RunError,
    Unsupported,
    check_run_id,
    encode_record,
    json_value,
    new_run_id,
    scalar,
)

_PLAIN = frozenset((float, int, bool, str))
_now = time.time
DIFF_LIMIT = 10 << 20


class RunWarning(UserWarning):
    """A logging problem: the run goes on, training is never interrupted."""


_HERE = os.path.dirname(os.path.abspath(__file__))


def _warn(message: str) -> None:
    """Warn, pointing at the caller's line (the first frame outside dvx/runs)."""
    level, frame = 2, sys._getframe(1)
    while frame is not None and os.path.dirname(os.path.abspath(frame.f_code.co_filename)) == _HERE:
        level += 1
        frame = frame.f_back  # type: ignore[assignment]
    warnings.warn(f"dvx: {message}", RunWarning, stacklevel=level)


@dataclass(frozen=True)
class ArtifactRef:
    """An input or output edge: a tracked path and the content id it had."""

    path: str
    id: str
    kind: str
    size: int
    files: int


class Config(dict):  # type: ignore[type-arg]
    """The run's configuration: a dict with attribute access (``config.lr``). Values
    must be JSON data (or dataclasses, argparse namespaces, numpy scalars); others are
    refused with a warning naming the key."""

    def __init__(self, run: Run | None = None) -> None:
        super().__init__()
        object.__setattr__(self, "_run", run)

    def _check(self, key: object, value: object) -> tuple[bool, Any]:
        if not isinstance(key, str):
            _warn(f"config key {key!r} is not a string: left out")
            return False, None
        try:
            return True, json_value(value, key)
        except Unsupported as exc:
            _warn(f"config value {exc.path!r} ({exc.kind}) cannot be recorded: left out "
                  "(use numbers, strings, booleans, None, lists or dicts)")
            return False, None

    def __setitem__(self, key: str, value: Any) -> None:
        ok, v = self._check(key, value)
        if ok:
            super().__setitem__(key, v)
            self._touch()

    def update(self, other: Any = (), /, allow_val_change: bool = True, **kw: Any) -> None:  # type: ignore[override]
        if other is not None and not isinstance(other, Mapping) and hasattr(other, "__dict__") \
                and not isinstance(other, (list, tuple)):
            other = vars(other)  # argparse.Namespace
        items = list(dict(other).items()) + list(kw.items()) if other is not None else list(kw.items())
        for k, v in items:
            self[k] = v

    def setdefaults(self, d: Mapping[str, Any]) -> None:
        for k, v in d.items():
            if k not in self:
                self[k] = v

    def __delitem__(self, key: str) -> None:
        super().__delitem__(key)
        self._touch()

    def __getattr__(self, name: str) -> Any:
        try:
            return self[name]
        except KeyError:
            raise AttributeError(f"config has no key {name!r}") from None

    def __setattr__(self, name: str, value: Any) -> None:
        self[name] = value

    def _touch(self) -> None:
        run = object.__getattribute__(self, "_run")
        if run is not None:
            run._dirty = True


class Summary(MutableMapping):  # type: ignore[type-arg]
    """``run.summary``: per metric the aggregate chosen with ``define_metric`` (last
    value by default), plus whatever is set here explicitly (which wins). Reading it
    flushes and reads the points back: not for the inner loop."""

    def __init__(self, run: Run | None) -> None:
        self._run = run
        self.explicit: dict[str, Any] = {}

    def _computed(self) -> dict[str, Any]:
        return self._run._summary_now() if self._run is not None else {}

    def __getitem__(self, key: str) -> Any:
        if key in self.explicit:
            return self.explicit[key]
        return self._computed()[key]

    def __setitem__(self, key: str, value: Any) -> None:
        if not isinstance(key, str):
            _warn(f"summary key {key!r} is not a string: left out")
            return
        try:
            self.explicit[key] = json_value(value, key)
        except Unsupported as exc:
            _warn(f"summary value {exc.path!r} ({exc.kind}) cannot be recorded: left out")
            return
        if self._run is not None:
            self._run._dirty = True

    def __delitem__(self, key: str) -> None:
        del self.explicit[key]

    def __iter__(self) -> Iterator[str]:
        return iter(self._as_dict())

    def __len__(self) -> int:
        return len(self._as_dict())

    def _as_dict(self) -> dict[str, Any]:
        return {**self._computed(), **self.explicit}

    def __repr__(self) -> str:
        return f"Summary({self._as_dict()!r})"


class Run:
    """A run being recorded. Use ``dvx.init(...)`` to make one."""

    disabled = False

    def __init__(self, repo: Any, state_dir: str, lock_fd: int, record: dict[str, Any],
                 *, old: str | None, next_seq: int, next_step: int, system_interval: float | None,
                 capture_output: bool) -> None:
        self._repo = repo
        self._state_dir = state_dir
        self._lock_fd = lock_fd
        self._record = record
        self._old = old
        self._pid = os.getpid()
        self._rows: list[Any] = []  # (step, time, {key: value}) per call, laid out flat
        self._sys_rows: list[Any] = []
        self._step = next_step
        self._closed = False
        self._child = False
        self._finished = False
        self._finishing = False
        self._pending_signal: int | None = None
        self._dirty = False
        self._warned: set[str] = set()
        self._finish_lock = threading.RLock()
        self._summary_cache: tuple[int, dict[str, Any]] | None = None
        self.config = Config(self)
        dict.update(self.config, record.get("config") or {})
        self.summary = Summary(self)
        self.summary.explicit.update(record.get("_explicit_summary") or {})
        self._metrics: dict[str, dict[str, Any]] = dict(record.get("metrics") or {})
        self.commit: str | None = None
        from dvx.runs.console import ConsoleCapture
        from dvx.runs.writer import Flusher

        self._console = ConsoleCapture() if capture_output else None
        self._flusher = Flusher(state_dir, self._rows, self._sys_rows, self._console, self._warn_once,
                                self._save_if_dirty, next_seq)
        if old is not None:  # resumed: the restored points count too
            from dvx.runs.recover import stats_of_dir

            stats, points, last = stats_of_dir(os.path.join(state_dir, "metrics"))
            self._flusher.stats, self._flusher.points, self._flusher.last_time = stats, points, last
        self._sampler = None
        if system_interval is not None:
            from dvx.runs.sysmetrics import SystemSampler

            self._sampler = SystemSampler(system_interval, self._sys_rows)

    def _start(self) -> None:
        self._save_state()
        self._flusher.start()
        if self._sampler is not None:
            self._sampler.start()
        if self._console is not None:
            self._console.start()

    # -- identity -----------------------------------------------------------------------
    @property
    def id(self) -> str:
        return self._record["id"]  # type: ignore[no-any-return]

    @property
    def name(self) -> str:
        return self._record["name"]  # type: ignore[no-any-return]

    @name.setter
    def name(self, value: str) -> None:
        self._record["name"] = str(value)
        self._dirty = True

    @property
    def ref(self) -> str:
        """The git ref the run is committed under."""
        return REF_PREFIX + self.id

    @property
    def project(self) -> str | None:
        return self._record.get("project")

    @property
    def group(self) -> str | None:
        return self._record.get("group")

    @property
    def tags(self) -> tuple[str, ...]:
        return tuple(self._record.get("tags") or ())

    @tags.setter
    def tags(self, value: Any) -> None:
        self._record["tags"] = sorted({str(t) for t in value})
        self._dirty = True

    @property
    def notes(self) -> str | None:
        return self._record.get("notes")

    @notes.setter
    def notes(self, value: str | None) -> None:
        self._record["notes"] = None if value is None else str(value)
        self._dirty = True

    @property
    def state(self) -> str:
        return self._record["state"]  # type: ignore[no-any-return]

    @property
    def dir(self) -> str:
        """Where the run's data is kept while it runs."""
        return self._state_dir

    # -- logging ------------------------------------------------------------------------
    def log(self, data: Mapping[str, Any], step: int | None = None, commit: bool | None = None) -> None:
        """Record every value of ``data`` as a point at ``step`` (default: the next
        step). Never blocks on a disk; never raises for bad input (one warning per key)."""
        if self._closed:
            self._late()
            return
        if type(data) is not dict:
            if not isinstance(data, Mapping):
                self._warn_once("data", f"log() takes a dict of values, not {type(data).__name__}")
                return
            data = dict(data)
        if step is None:
            step = self._step
        elif type(step) is not int:
            step = self._coerce_step(step)
            if step is None:
                return
        t = _now()
        for k, v in data.items():
            if type(k) is not str or type(v) not in _PLAIN:
                data = self._clean(data)
                if not data:
                    return
                break
        else:
            data = data.copy()
        self._step = step + 1
        self._rows.extend((step, t, data))  # one call, atomic: its seq is its place in the buffer

    def _coerce_step(self, step: Any) -> int | None:
        try:
            if isinstance(step, bool):
                raise TypeError
            return int(step.__index__())
        except (AttributeError, TypeError, ValueError):
            self._warn_once("step", f"step must be an integer, not {type(step).__name__}: "
                            "the call was left out")
            return None

    def _clean(self, data: Mapping[Any, Any]) -> dict[str, Any]:
        out: dict[str, Any] = {}
        for k, v in data.items():
            if type(k) is not str:
                self._warn_once(f"key:{k!r}", f"log() key {k!r} is not a string: left out")
                continue
            if type(v) in _PLAIN:
                out[k] = v
                continue
            try:
                out[k] = scalar(v)
                continue
            except TypeError:
                pass
            from dvx.runs.media import as_media

            m = as_media(v)
            if m is not None:
                out[k] = m
            else:
                self._warn_once(f"value:{k}", f"log() value of {k!r} ({type(v).__name__}) is not a number, "
                                "bool, string, dvx.Histogram, dvx.Image or array: left out")
        return out

    def _late(self) -> None:
        if self._child:
            self._warn_once("child", f"log() in a forked child process is ignored: run {self.id} belongs "
                            f"to process {self._pid}")
        else:
            self._warn_once("late", f"run {self.id} is finished: log() after finish() is ignored")

    def _warn_once(self, key: str, message: str) -> None:
        if key not in self._warned:
            self._warned.add(key)
            _warn(message)

    # wandb / MLflow spellings
    def log_metric(self, key: str, value: Any, step: int | None = None) -> None:
        self.log({key: value}, step=step)

    def log_metrics(self, metrics: Mapping[str, Any], step: int | None = None) -> None:
        self.log(metrics, step=step)

    def log_param(self, key: str, value: Any) -> None:
        self.config[key] = value

    def log_params(self, params: Mapping[str, Any]) -> None:
        self.config.update(params)

    def define_metric(self, name: str, summary: str | None = None, goal: str | None = None,
                      **_ignored: Any) -> None:
        """How ``summary[name]`` is computed: ``last`` (default), ``min``, ``max``,
        ``mean`` or ``best`` (with ``goal`` ``minimize``/``maximize``). ``name`` may
        end in ``*``."""
        if not isinstance(name, str) or not name:
            self._warn_once("define", f"define_metric name must be a non-empty string, not {name!r}")
            return
        if summary is not None and summary not in SUMMARY_RULES:
            self._warn_once(f"define:{name}", f"define_metric({name!r}): summary must be one of "
                            f"{', '.join(SUMMARY_RULES)}, not {summary!r}")
            return
        if goal is not None and goal not in ("minimize", "maximize"):
            self._warn_once(f"define:{name}", f"define_metric({name!r}): goal must be 'minimize' or "
                            f"'maximize', not {goal!r}")
            return
        self._metrics[name] = {"summary": summary or "last", "goal": goal}
        self._dirty = True
        self._summary_cache = None

    # -- artifacts ----------------------------------------------------------------------
    def use_artifact(self, path: str | os.PathLike[str]) -> ArtifactRef | None:
        """Record ``path`` (a file or directory in the repository) as an input, by the
        content id it has now (stored as ``dvx add`` does). An artifact reference
        ``"NAME:vN"`` / ``"NAME:ALIAS"`` (when no file of that name exists) records the
        version it names now, with ``artifact`` set to ``NAME:vN`` in the edge."""
        from dvx.artifacts.read import looks_like_reference

        if isinstance(path, str) and looks_like_reference(path):
            return self._artifact_edge(path)
        return self._edge("inputs", path)

    def _artifact_edge(self, ref: str) -> ArtifactRef | None:
        if self._closed:
            self._late()
            return None
        try:
            from dvx.artifacts.names import parse_reference
            from dvx.artifacts.read import get_artifact, pick, version_pointer

            art = get_artifact(self._repo, parse_reference(ref).name)
            version = pick(art, ref)
            pointer = version_pointer(self._repo, art, version.version)
        except DvxError as exc:
            _warn(f"use_artifact({ref!r}) was not recorded: {exc}")
            return None
        return self._record_edge("inputs", version.path, pointer, {"artifact": version.ref},
                                 "use_artifact", ref)

    def log_artifact(self, path: str | os.PathLike[str], name: str | None = None, type: str | None = None,
                     aliases: Any = ("latest",)) -> ArtifactRef | None:
        """Record ``path`` as an output, storing it as ``dvx add`` does."""
        extra = {"name": name, "type": type, "aliases": [str(a) for a in (aliases or ())]}
        return self._edge("outputs", path, extra)

    def _edge(self, kind: str, path: Any, extra: dict[str, Any] | None = None) -> ArtifactRef | None:
        if self._closed:
            self._late()
            return None
        try:
            from dvx.ops.add import add
            from dvx.pointer import POINTER_SUFFIX, read_pointer

            rel = self._repo.relpath(os.fspath(path))
            if os.path.lexists(self._repo.abspath(rel)):
                pointer = add(self._repo, [os.fspath(path)])[0].pointer
            elif os.path.exists(self._repo.abspath(rel + POINTER_SUFFIX)):
                pointer = read_pointer(self._repo.abspath(rel + POINTER_SUFFIX), rel + POINTER_SUFFIX)
            else:
                raise DvxError(f"{path} does not exist and is not tracked", "check the path")
        except (DvxError, OSError) as exc:
            verb = "use_artifact" if kind == "inputs" else "log_artifact"
            _warn(f"{verb}({os.fspath(path)!r}) was not recorded: {exc}")
            return None
        verb = "use_artifact" if kind == "inputs" else "log_artifact"
        return self._record_edge(kind, rel, pointer, extra, verb, os.fspath(path))

    def _record_edge(self, kind: str, rel: str, pointer: Any, extra: dict[str, Any] | None, verb: str,
                     shown: str) -> ArtifactRef | None:
        from dvx.pointer import POINTER_SUFFIX, check_target

        try:
            check_target(rel)  # an artifact's path comes from git data: it names a file under the state dir
            where = f"{kind}/{rel}{POINTER_SUFFIX}"
            dest = os.path.join(self._state_dir, *where.split("/"))
            os.makedirs(os.path.dirname(dest), exist_ok=True)
            with open(dest, "wb") as f:
                f.write(pointer.render().encode())
        except (DvxError, OSError) as exc:
            _warn(f"{verb}({shown!r}) was not recorded: {exc}")
            return None
        entry: dict[str, Any] = {"path": rel, "kind": pointer.kind, "id": pointer.id, "size": pointer.size,
                                 "files": pointer.files, "pointer": f".dvx-run/{where}"}
        if extra is not None:
            entry.update(extra)
            if kind == "outputs":
                entry["name"] = entry["name"] or rel.rsplit("/", 1)[-1]
        with self._finish_lock:
            edges = [e for e in self._record[kind] if e["path"] != rel]
            edges.append(entry)
            self._record[kind] = edges
            self._dirty = True
        return ArtifactRef(rel, pointer.id, pointer.kind, pointer.size, pointer.files)

    # -- state ----------------------------------------------------------------------------
    def _snapshot(self) -> dict[str, Any]:
        rec = dict(self._record)
        rec["config"] = dict(self.config)
        rec["metrics"] = dict(self._metrics)
        rec["_explicit_summary"] = dict(self.summary.explicit)
        rec["_old"] = self._old
        return rec

    def _save_state(self) -> None:
        from dvx.fsutil import atomic_write_bytes

        self._dirty = False
        atomic_write_bytes(os.path.join(self._state_dir, "run.json"), encode_record(self._snapshot()),
                           fsync=False)

    def _save_if_dirty(self) -> None:
        if self._dirty and not self._finished:
            self._save_state()

    def _summary_now(self) -> dict[str, Any]:
        from dvx.runs.record import summarize
        from dvx.runs.segments import public_stats

        if self._finished:
            return summarize(self._record["history"]["keys"], self._metrics, {})
        if not self._child:
            self._flusher.flush()
        points = self._flusher.points
        if self._summary_cache is None or self._summary_cache[0] != points:
            self._summary_cache = (points, public_stats(self._flusher.stats)[0])
        return summarize(self._summary_cache[1], self._metrics, {})

    def flush(self) -> None:
        """Write what is buffered now (the background writer does it every 0.5 s)."""
        if not self._closed:
            self._flusher.flush()

    # -- the end --------------------------------------------------------------------------
    def finish(self, exit_code: int | None = None, quiet: bool | None = None) -> None:
        """End the run and commit it under ``run.ref``. ``exit_code`` other than 0 marks
        it failed. Safe to call twice."""
        state = "finished" if not exit_code else "failed"
        self._finish(state, exit_code)

    def _finish(self, state: str, exit_code: int | None, sig: str | None = None) -> None:
        if self._child or os.getpid() != self._pid:
            return
        with self._finish_lock:
            if self._finished or self._finishing:
                return
            self._finishing = True
            self._closed = True
            try:
                self._do_finish(state, exit_code, sig)
            finally:
                self._finishing = False
                self._finished = True
                _unregister(self)
                with contextlib.suppress(Exception):
                    self._repo.close()  # packs the run read or wrote (a resume) are closed
        if self._pending_signal is not None:
            _redeliver(self._pending_signal)

    def _do_finish(self, state: str, exit_code: int | None, sig: str | None) -> None:
        from dvx.runs.commit import commit_run
        from dvx.runs.recover import complete_history

        if self._sampler is not None:
            self._sampler.stop()
        if self._console is not None:
            self._console.stop()
        saved = self._flusher.stop()
        self._record.update(state=state, exit_code=exit_code, signal=sig, end_time=_now())
        try:
            self._record["_next_seq"] = self._flusher.next_seq + len(self._rows) // 3
            self._record["config"] = dict(self.config)
            self._record["metrics"] = dict(self._metrics)
            self._record["_explicit_summary"] = dict(self.summary.explicit)
            f = self._flusher
            complete_history(self._record, f.stats, f.points, f.last_time)
            self._save_state()  # if the commit fails, recovery commits this end state
            if not saved:
                raise RunError(f"{len(self._rows) // 3} logged calls could not be written")
            self.commit = commit_run(self._repo, self._state_dir, self._snapshot(), old=self._old)
        except (DvxError, OSError) as exc:
            _warn(f"run {self.id} could not be committed: {exc}; what was saved stays in {self._state_dir} "
                  "and the next `dvx runs list` commits it")
            self._release_lock()
            return
        self._release_lock()
        _discard(self._state_dir)

    def _release_lock(self) -> None:
        if self._lock_fd >= 0:
            with contextlib.suppress(OSError):
                os.close(self._lock_fd)
            self._lock_fd = -1

    def _after_fork_in_child(self) -> None:
        self._child = True
        self._closed = True
        self._finish_lock = threading.RLock()
        self._rows = []
        self._lock_fd = -1  # the parent's lock: never released or used here

    def __enter__(self) -> Run:
        return self

    def __exit__(self, exc_type: Any, exc: Any, tb: Any) -> None:
        if exc_type is None:
            self._finish("finished", 0)
        elif issubclass(exc_type, SystemExit):
            code = exc.code if isinstance(exc.code, int) else (0 if exc.code is None else 1)
            self._finish("finished" if code == 0 else "failed", code)
        else:
            self._finish("failed", 130 if issubclass(exc_type, KeyboardInterrupt) else 1)

    def __repr__(self) -> str:
        return f"<dvx Run {self.id} {self.name!r} {self.state}>"


class DisabledRun:
    """What ``dvx.init(mode="disabled")`` (or a rank other than 0) returns: every
    call is a cheap no-op."""

    disabled = True
    commit = None
    state = "disabled"
    ref = None
    dir = None

    def __init__(self, run_id: str | None = None, name: str | None = None, config: Any = None) -> None:
        self.id = run_id or "disabled"
        self.name = name or self.id
        self.project = self.group = self.notes = None
        self.tags: tuple[str, ...] = ()
        self.config = Config(None)
        if config:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                self.config.update(config)
        self.summary = Summary(None)

    def log(self, data: Any, step: Any = None, commit: Any = None) -> None:
        pass

    def log_metric(self, *a: Any, **k: Any) -> None:
        pass

    log_metrics = log_param = log_params = define_metric = flush = log_metric

    def use_artifact(self, *a: Any, **k: Any) -> None:
        return None

    log_artifact = use_artifact

    def finish(self, *a: Any, **k: Any) -> None:
        pass

    def __enter__(self) -> DisabledRun:
        return self

    def __exit__(self, *exc: Any) -> None:
        pass

    def __repr__(self) -> str:
        return f"<dvx DisabledRun {self.id}>"


# -- process-wide hooks: one active run, exit, exceptions, SIGTERM, fork -----------------
_active: Run | None = None
_hooks_installed = False
_orig_excepthook: Any = None
_sigterm_installed = False


def active() -> Run | None:
    return _active


def _excepthook(exc_type: Any, exc: Any, tb: Any) -> None:
    run = _active
    (_orig_excepthook or sys.__excepthook__)(exc_type, exc, tb)
    if run is not None and os.getpid() == run._pid:
        code = 130 if issubclass(exc_type, KeyboardInterrupt) else 1
        run._finish("failed", code)


def _at_exit() -> None:
    run = _active
    if run is not None and os.getpid() == run._pid and not run._child:
        run._finish("finished", None)


def _on_sigterm(signum: int, frame: Any) -> None:
    run = _active
    if run is not None and os.getpid() == run._pid and not run._child:
        if run._finishing:
            run._pending_signal = signum
            return
        run._finish("failed", 128 + signum, "SIGTERM")
    _redeliver(signum)


def _redeliver(signum: int) -> None:
    signal.signal(signum, signal.SIG_DFL)
    os.kill(os.getpid(), signum)


def _after_fork_in_child() -> None:
    run = _active
    if run is not None:
        run._after_fork_in_child()


def _register(run: Run) -> None:
    global _active, _hooks_installed, _orig_excepthook, _sigterm_installed
    _active = run
    if not _hooks_installed:
        import atexit
        import concurrent.futures.thread  # noqa: F401 - registers its exit hook before ours

        # A run still open when the main thread ends is finished then, before Python
        # joins threads and shuts the thread pools down (hooks run in reverse order, so
        # ours comes before the pools'): committing it needs the store's pack thread. A
        # plain atexit hook runs after that shutdown. It stays as the fallback.
        register = getattr(threading, "_register_atexit", None)
        if register is not None:
            with contextlib.suppress(RuntimeError):
                register(_at_exit)
        atexit.register(_at_exit)
        os.register_at_fork(after_in_child=_after_fork_in_child)
        _hooks_installed = True
    if sys.excepthook is not _excepthook:
        _orig_excepthook = sys.excepthook
        sys.excepthook = _excepthook
    if threading.current_thread() is threading.main_thread() \
            and signal.getsignal(signal.SIGTERM) is signal.SIG_DFL:
        signal.signal(signal.SIGTERM, _on_sigterm)
        _sigterm_installed = True


def _unregister(run: Run) -> None:
    global _active, _sigterm_installed
    if _active is run:
        _active = None
    if sys.excepthook is _excepthook:
        sys.excepthook = _orig_excepthook or sys.__excepthook__
    if _sigterm_installed and threading.current_thread() is threading.main_thread() \
            and signal.getsignal(signal.SIGTERM) is _on_sigterm and run._pending_signal is None:
        signal.signal(signal.SIGTERM, signal.SIG_DFL)
        _sigterm_installed = False


# -- init -----------------------------------------------------------------------------------
def _rank() -> tuple[int, int]:
    def env_int(name: str) -> int | None:
        try:
            return int(os.environ[name])
        except (KeyError, ValueError):
            return None

    rank = env_int("RANK")
    if rank is None:
        rank = env_int("LOCAL_RANK")
    return rank or 0, env_int("WORLD_SIZE") or 1


def init(project: str | None = None, name: str | None = None, config: Any = None,
         tags: Any = None, notes: str | None = None, id: str | None = None,
         resume: bool | str | None = None, dir: str | os.PathLike[str] | None = None,
         system_metrics: bool = True, capture_output: bool = True, mode: str = "local", *,
         group: str | None = None, reinit: bool = False, all_ranks: bool = False,
         system_metrics_interval: float = 10.0) -> Run | DisabledRun:
    """Start recording a run (``protocols/runs.md``); see ``docs/runs.md``."""
    global _active
    mode = os.environ.get("DVX_MODE", mode)
    if mode not in ("local", "disabled"):
        raise RunError(f"unknown mode {mode!r}", "use mode='local' or mode='disabled'")
    rank, world = _rank()
    if mode == "disabled" or (rank != 0 and not all_ranks):
        return DisabledRun(id, name, config)
    if _active is not None and os.getpid() == _active._pid and not _active._child:
        if not reinit:
            raise RunError(f"run {_active.id} is still active in this process",
                           "call run.finish() first, or pass reinit=True")
        _active.finish()
    from dvx.runs.attach import wanted

    attach_id = wanted(id)
    if attach_id is not None:  # a child of `dvx run`: join its run (runs.md §10)
        from dvx.runs.attach import attach

        joined = attach(attach_id, project, name, config, tags, notes)
        joined._start()
        _register(joined)
        return joined
    if resume not in (None, False, True, "allow", "must", "never"):
        raise RunError(f"unknown resume value {resume!r}", "use True, 'allow', 'must' or 'never'")
    from dvx.errors import NotARepositoryError
    from dvx.gitio import GitRepo
    from dvx.repo import Repository
    from dvx.runs.commit import state_root
    from dvx.runs.recover import lock_owner, recover_abandoned, try_lock

    try:
        repo = Repository.find(os.fspath(dir) if dir is not None else None)
    except NotARepositoryError as exc:
        raise NotARepositoryError(exc.message, "create one with `dvx init` (or dvx.init_repo()), or pass "
                                  "mode='disabled' to run without recording") from None
    recover_abandoned(repo, warn=lambda m: _warn(m))
    _sweep_deleted(state_root(repo))
    git = GitRepo(repo.root)
    run_id = check_run_id(id) if id is not None else new_run_id()
    ref = REF_PREFIX + run_id
    existing = git.refs_under(REF_PREFIX).get(ref)
    if existing is not None and resume in (None, False, "never"):
        raise RunError(f"run {run_id} already exists ({ref})",
                       "pass resume=True to continue it, or choose another id")
    if existing is None and resume == "must":
        raise RunError(f"run {run_id} does not exist, so it cannot be resumed", "check the id")
    state_dir = os.path.join(state_root(repo), run_id)
    os.makedirs(state_dir, exist_ok=True)
    fd = try_lock(state_dir)
    if fd is None:
        raise RunError(f"run {run_id} is in use by another process ({lock_owner(state_dir)})",
                       "two processes cannot record one run; pick another id")
    try:
        if os.path.exists(os.path.join(state_dir, "run.json")):
            raise RunError(f"run {run_id} has unsaved state from a process that just died",
                           "run `dvx runs list` to commit it, then resume")
        _write_owner(fd)
        record, next_seq, next_step = _new_record(git, repo, state_dir, run_id, existing, project, name,
                                                  tags, notes, group, rank, world, all_ranks)
        import pyarrow.acero  # noqa: F401  (pyarrow now: never in the training loop or a thread)
        import pyarrow.compute  # noqa: F401

        import dvx.runs.segments  # noqa: F401

        run = Run(repo, state_dir, fd, record, old=existing, next_seq=next_seq, next_step=next_step,
                  system_interval=system_metrics_interval if system_metrics else None,
                  capture_output=capture_output)
        if config is not None:
            run.config.update(config)
        run._start()
    except BaseException:
        os.close(fd)
        shutil.rmtree(state_dir, ignore_errors=True)
        raise
    _register(run)
    return run


def _discard(state_dir: str) -> None:
    """Delete a committed run's state directory: renamed aside at once (so nothing
    lists it again), its files unlinked by a thread (``finish`` does not wait for the
    disk; ``init`` sweeps what an exit cut short)."""
    import secrets

    trash = os.path.join(os.path.dirname(os.path.dirname(state_dir)), "runs-deleted")
    try:
        os.makedirs(trash, exist_ok=True)
        gone = os.path.join(trash, f"{os.path.basename(state_dir)}.{secrets.token_hex(4)}")
        os.rename(state_dir, gone)
    except OSError:
        shutil.rmtree(state_dir, ignore_errors=True)
        return
    try:
        threading.Thread(target=shutil.rmtree, args=(gone, True), name="dvx-run-cleanup").start()
    except RuntimeError:  # interpreter shutdown
        shutil.rmtree(gone, ignore_errors=True)


def _sweep_deleted(state_root: str) -> None:
    trash = os.path.join(os.path.dirname(state_root), "runs-deleted")
    if os.path.isdir(trash):
        shutil.rmtree(trash, ignore_errors=True)


def _write_owner(fd: int) -> None:
    import socket

    os.ftruncate(fd, 0)
    os.pwrite(fd, f"pid {os.getpid()} on {socket.gethostname()}\n".encode(), 0)


def _new_record(git: Any, repo: Any, state_dir: str, run_id: str, existing: str | None,
                project: str | None, name: str | None, tags: Any, notes: str | None, group: str | None,
                rank: int, world: int, all_ranks: bool) -> tuple[dict[str, Any], int, int]:
    import secrets

    from dvx.runs.record import environment

    head = git.head()
    diff, truncated = git.worktree_diff(head, DIFF_LIMIT)
    if diff:
        with open(os.path.join(state_dir, "code.diff"), "wb") as f:
            f.write(diff)
    if all_ranks and group is None:
        group = os.environ.get("DVX_RUN_GROUP") or os.environ.get("TORCHELASTIC_RUN_ID")
    record: dict[str, Any] = {
        "dvx_run": 1, "id": run_id, "name": name or run_id, "project": project, "group": group,
        "notes": notes, "tags": sorted({str(t) for t in (tags or ())}), "state": "running",
        "exit_code": None, "signal": None, "start_time": _now(), "end_time": None,
        "config": {}, "summary": {}, "metrics": {},
        "history": {"points": 0, "next_seq": 0, "last_step": None, "keys": {}},
        "code": {"commit": head, "branch": git.head_branch(), "dirty": bool(diff),
                 "diff": "code.diff" if diff else None, "diff_truncated": truncated},
        "environment": environment(), "inputs": [], "outputs": [], "files": {},
        "rank": rank, "world_size": world, "resumed": 0, "session": secrets.token_hex(8),
    }
    next_seq, next_step = 0, 0
    if existing is not None:
        prev = _restore(git, repo, existing, state_dir)
        for key in ("project", "group", "notes"):
            if record[key] is None:
                record[key] = prev.get(key)
        if name is None:
            record["name"] = prev.get("name") or run_id
        record["tags"] = sorted(set(record["tags"]) | set(prev.get("tags") or ()))
        record["start_time"] = prev.get("start_time") or record["start_time"]
        record["config"] = dict(prev.get("config") or {})
        record["metrics"] = dict(prev.get("metrics") or {})
        keys = (prev.get("history") or {}).get("keys") or {}
        record["_explicit_summary"] = {k: v for k, v in (prev.get("summary") or {}).items() if k not in keys}
        record["inputs"], record["outputs"] = prev.get("inputs") or [], prev.get("outputs") or []
        record["resumed"] = int(prev.get("resumed") or 0) + 1
        hist = prev.get("history") or {}
        next_seq = int(hist.get("next_seq") or 0)
        last = hist.get("last_step")
        next_step = last + 1 if isinstance(last, int) else 0
        record["_next_seq"] = next_seq
    return record, next_seq, next_step


def _restore(git: Any, repo: Any, commit: str, state_dir: str) -> dict[str, Any]:
    """Bring a committed run's record, segments, console and edges back into its state
    directory, to be continued."""
    from dvx.ops.checkout import restore_file
    from dvx.pointer import parse_pointer
    from dvx.runs.record import RUN_DIR, decode_record
    from dvx.workspace import flatten_tree

    info = git.commit_info(commit)
    found = git.blob_at(info, f"{RUN_DIR}/run.json")
    if found is None:
        raise RunError(f"{commit} holds no run record", "check the run id")
    prev = decode_record(found[1], f"run {commit[:12]}")
    for name, where in (("metrics", "metrics.dvx"), ("system", "system.dvx"), ("media", "media.dvx"),
                        ("console", "console.log.dvx")):
        blob = git.blob_at(info, f"{RUN_DIR}/{where}")
        if blob is None:
            continue
        pointer = parse_pointer(blob[1], where)
        if not repo.store.contains(pointer.oid):
            raise RunError(f"the data of run {prev['id']} ({where}) is not in the local store",
                           "fetch it first (`dvx fetch --all-commits`)")
        if pointer.kind == "file":
            restore_file(repo.store, pointer.oid, os.path.join(state_dir, "console.log"), False)
            continue
        os.makedirs(os.path.join(state_dir, name), exist_ok=True)
        for rel, (mid, _size, _exe) in flatten_tree(repo.store, pointer.oid)[0].items():
            restore_file(repo.store, mid, os.path.join(state_dir, name, rel), False)
    for kind in ("inputs", "outputs"):
        for entry in prev.get(kind) or []:
            blob = git.blob_at(info, entry["pointer"])
            if blob is not None:
                dest = os.path.join(state_dir, kind, *(entry["path"] + ".dvx").split("/"))
                os.makedirs(os.path.dirname(dest), exist_ok=True)
                with open(dest, "wb") as f:
                    f.write(blob[1])
    return prev
