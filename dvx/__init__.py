"""DVX: git for data and experiments.

The public API is ``__all__``: one function per CLI verb (``dvx.add``,
``dvx.status``, ``dvx.push``...; see ``dvx.api`` and ``docs/python.md``),
:class:`Repository`, and the error classes. Everything else is private.

``import dvx`` is cheap: names are loaded on first use (PEP 562), so a training
script that imports DVX pays for the store, hashing and git only when it calls them.
``dvx.init`` is reserved for starting a run; a repository is created with
:func:`dvx.init_repo`.
"""

from __future__ import annotations

TYPE_CHECKING = False  # not `from typing import ...`: typing alone costs ~5 ms to import

__version__ = "0.1.0"

__all__ = [
    # the verbs (dvx.api)
    "add", "checkout", "commit", "diff", "fetch", "fsck", "gc", "hooks_install", "hooks_uninstall",
    "init_repo", "log", "ls", "pull", "push", "raise_on_error", "remote_add", "remote_list",
    "remote_modify", "remote_remove", "status",
    # reading any version without a checkout (dvx.api, protocols/read.md)
    "get", "info", "open", "read",
    # runs, as wandb users expect (dvx.runs); `log` serves both: dvx.log(dict, step=...)
    # logs to the active run, dvx.log(path) lists versions like the CLI verb
    "config", "define_metric", "finish", "init", "log_artifact", "summary", "use_artifact",
    # the query API (dvx.runs.api), as wandb.Api
    "Api",
    # media a run logs (dvx.runs.media): run.log({"h": dvx.Histogram(w), "img": dvx.Image(a)})
    "Histogram", "Image",
    # the repository (dvx.repo)
    "Repository",
    # the errors (dvx.errors)
    "ConfigError", "CorruptObjectError", "DvxError", "FormatVersionError", "GitError",
    "MissingObjectError", "NotARepositoryError", "NotTrackedError", "PartialFailureError",
    "PathOutsideRepoError", "PointerError", "ReadOnlyError", "RemoteError", "StoreError", "UsageError",
    "WorkspaceConflictError",
    "__version__",
]

_RUNS = ("config", "define_metric", "finish", "init", "log_artifact", "summary", "use_artifact")
_WHERE = {name: ("dvx.api" if name[0].islower() else "dvx.errors") for name in __all__}
_WHERE.update(dict.fromkeys(_RUNS, "dvx.runs"))
_WHERE["Repository"] = "dvx.repo"
_WHERE["Api"] = "dvx.runs.api"
_WHERE["Histogram"] = _WHERE["Image"] = "dvx.runs.media"
del _WHERE["__version__"], _WHERE["log"]
_run_log: Any = None


def log(data: Any = None, step: int | None = None, commit: bool | None = None, **options: Any) -> Any:
    """``dvx.log({"loss": x}, step=3)``: log to the active run (see ``dvx.init``), as in
    wandb. ``dvx.log(path, repo=..., max_count=..., rev=...)``: the versions of tracked
    data, as ``dvx log`` prints them (``dvx.api.log``)."""
    global _run_log
    if isinstance(data, dict) or (data is not None and hasattr(data, "keys")):
        if _run_log is None:
            from dvx.runs import log as _run_log
        return _run_log(data, step, commit)
    from dvx.api import log as verb

    return verb(data, **options)
_SUBMODULES = ("api", "errors", "progress")  # light public modules, loaded on first use


def __getattr__(name: str) -> Any:
    if name in _SUBMODULES:  # `import dvx` then `dvx.progress.Progress`
        import importlib

        return importlib.import_module(f"dvx.{name}")
    module = _WHERE.get(name)
    if module is None:
        raise AttributeError(f"module 'dvx' has no attribute {name!r}")
    import importlib

    value = getattr(importlib.import_module(module), name)
    globals()[name] = value  # next time: a plain attribute
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))


if TYPE_CHECKING:  # what the lazy names are, for type checkers and editors
    from typing import Any

    from dvx.api import (
        add,
        checkout,
        commit,
        diff,
        fetch,
        fsck,
        gc,
        get,
        hooks_install,
        hooks_uninstall,
        info,
        init_repo,
        ls,
        open,
        pull,
        push,
        raise_on_error,
        read,
        remote_add,
        remote_list,
        remote_modify,
        remote_remove,
        status,
    )
    from dvx.errors import (
        ConfigError,
        CorruptObjectError,
        DvxError,
        FormatVersionError,
        GitError,
        MissingObjectError,
        NotARepositoryError,
        NotTrackedError,
        PartialFailureError,
        PathOutsideRepoError,
        PointerError,
        ReadOnlyError,
        RemoteError,
        StoreError,
        UsageError,
        WorkspaceConflictError,
    )
    from dvx.repo import Repository
    from dvx.runs import config, define_metric, finish, init, log_artifact, summary, use_artifact
    from dvx.runs.api import Api
    from dvx.runs.media import Histogram, Image
