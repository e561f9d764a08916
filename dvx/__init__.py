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
    # the repository (dvx.repo)
    "Repository",
    # the errors (dvx.errors)
    "ConfigError", "CorruptObjectError", "DvxError", "FormatVersionError", "GitError",
    "MissingObjectError", "NotARepositoryError", "NotTrackedError", "PartialFailureError",
    "PathOutsideRepoError", "PointerError", "RemoteError", "StoreError", "UsageError",
    "WorkspaceConflictError",
    "__version__",
]

_WHERE = {name: ("dvx.api" if name[0].islower() else "dvx.errors") for name in __all__}
_WHERE["Repository"] = "dvx.repo"
del _WHERE["__version__"]
_SUBMODULES = ("api", "errors", "progress")  # light public modules, loaded on first use


def __getattr__(name: str) -> Any:
    if name in _SUBMODULES:  # `import dvx` then `dvx.progress.Progress`
        import importlib

        return importlib.import_module(f"dvx.{name}")
    module = _WHERE.get(name)
    if module is None:
        if name == "init":
            raise AttributeError(
                "dvx.init is reserved for starting a run (not available yet); "
                "to create a repository use dvx.init_repo(path)")
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
        hooks_install,
        hooks_uninstall,
        init_repo,
        log,
        ls,
        pull,
        push,
        raise_on_error,
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
        RemoteError,
        StoreError,
        UsageError,
        WorkspaceConflictError,
    )
    from dvx.repo import Repository
