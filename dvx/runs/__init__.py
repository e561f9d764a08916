"""Runs: log experiments into git commits (``protocols/runs.md``, ``docs/runs.md``).

::

    import dvx
    with dvx.init(project="resnet", config={"lr": 3e-4}) as run:
        for step in range(1000):
            run.log({"loss": loss}, step=step)

Importing this package is cheap: the run machinery (pyarrow, psutil, dulwich) is
imported by ``init``. The module-level ``log``, ``config``, ``summary``, ``finish``
act on the run ``init`` started last, as in wandb.
"""

from __future__ import annotations

import os
from collections.abc import Iterator, Mapping, MutableMapping
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from dvx.runs.run import DisabledRun, Run

__all__ = ["config", "current", "define_metric", "finish", "init", "log", "log_artifact",
           "recover_abandoned", "summary", "use_artifact"]


def init(project: str | None = None, name: str | None = None, config: Any = None,
         tags: Any = None, notes: str | None = None, id: str | None = None,
         resume: bool | str | None = None, dir: str | os.PathLike[str] | None = None,
         system_metrics: bool = True, capture_output: bool = True, mode: str = "local", *,
         group: str | None = None, reinit: bool = False, all_ranks: bool = False,
         system_metrics_interval: float = 10.0) -> Run | DisabledRun:
    """Start recording a run; it is committed under ``refs/dvx/runs/<id>`` at finish.

    ``mode="disabled"`` (or ``DVX_MODE=disabled``) makes every call a no-op. Under
    ``RANK``/``WORLD_SIZE`` only rank 0 records, unless ``all_ranks=True``. ``resume``:
    True/"allow" continues run ``id`` if it exists, "must" requires it, "never" refuses.
    """
    from dvx.runs.run import init as _init

    return _init(project, name, config, tags, notes, id, resume, dir, system_metrics, capture_output,
                 mode, group=group, reinit=reinit, all_ranks=all_ranks,
                 system_metrics_interval=system_metrics_interval)


def current() -> Run | None:
    """The run ``init`` started in this process, if it is still active."""
    import sys

    mod = sys.modules.get("dvx.runs.run")
    return mod.active() if mod is not None else None  # type: ignore[attr-defined, no-any-return]


_warned: set[str] = set()


def _no_run(what: str) -> None:
    if what not in _warned:
        _warned.add(what)
        import warnings

        warnings.warn(f"dvx: {what}() without an active run is ignored; call dvx.init() first",
                      stacklevel=3)


def log(data: Mapping[str, Any], step: int | None = None, commit: bool | None = None) -> None:
    run = current()
    if run is None:
        _no_run("log")
        return
    run.log(data, step)


def finish(exit_code: int | None = None, quiet: bool | None = None) -> None:
    run = current()
    if run is not None:
        run.finish(exit_code)


def define_metric(name: str, summary: str | None = None, goal: str | None = None, **kw: Any) -> None:
    run = current()
    if run is None:
        _no_run("define_metric")
        return
    run.define_metric(name, summary, goal, **kw)


def use_artifact(path: str | os.PathLike[str]) -> Any:
    run = current()
    if run is None:
        _no_run("use_artifact")
        return None
    return run.use_artifact(path)


def log_artifact(path: str | os.PathLike[str], name: str | None = None, type: str | None = None,
                 aliases: Any = ("latest",)) -> Any:
    run = current()
    if run is None:
        _no_run("log_artifact")
        return None
    return run.log_artifact(path, name, type, aliases)


def recover_abandoned(repo: Any) -> list[str]:
    """Commit the runs of ``repo`` whose process died (as ``crashed``); cheap when
    there are none. For commands that want "the next dvx command recovers it"."""
    from dvx.runs.recover import recover_abandoned as _recover

    return _recover(repo)


class _RunMapping(MutableMapping):  # type: ignore[type-arg]
    """A mapping of the active run (``_part``: "config" or "summary"): reads see it
    (empty without a run), writes go to it (and warn once without one)."""

    _part = ""

    def _target(self) -> MutableMapping[str, Any]:
        run = current()
        return getattr(run, self._part) if run is not None else {}

    def _writable(self) -> MutableMapping[str, Any] | None:
        run = current()
        if run is None:
            _no_run(self._part)
            return None
        return getattr(run, self._part)  # type: ignore[no-any-return]

    def __getitem__(self, key: str) -> Any:
        return self._target()[key]

    def __setitem__(self, key: str, value: Any) -> None:
        target = self._writable()
        if target is not None:
            target[key] = value

    def __delitem__(self, key: str) -> None:
        del self._target()[key]

    def __iter__(self) -> Iterator[str]:
        return iter(self._target())

    def __len__(self) -> int:
        return len(self._target())

    def __repr__(self) -> str:
        return f"{self._part.capitalize()}({dict(self._target())!r})"


class _ConfigProxy(_RunMapping):
    """``dvx.config``: the active run's config, also by attribute (``dvx.config.lr``)."""

    _part = "config"

    def __getattr__(self, name: str) -> Any:
        if name.startswith("__"):
            raise AttributeError(name)
        try:
            return self._target()[name]
        except KeyError:
            raise AttributeError(f"config has no key {name!r}") from None

    def __setattr__(self, name: str, value: Any) -> None:
        self[name] = value

    def update(self, other: Any = (), /, **kw: Any) -> None:  # type: ignore[override]
        target = self._writable()
        if target is not None:
            target.update(other, **kw)


class _SummaryProxy(_RunMapping):
    """``dvx.summary``: the active run's summary."""

    _part = "summary"


config = _ConfigProxy()
summary = _SummaryProxy()
