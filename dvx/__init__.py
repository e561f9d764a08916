"""DVX: git for data and experiments.

Public API (stable): see ``__all__``. Everything else is private.
"""

from __future__ import annotations

from dvx.errors import (
    CorruptObjectError,
    DvxError,
    FormatVersionError,
    MissingObjectError,
    NotARepositoryError,
    PathOutsideRepoError,
    PointerError,
    RemoteError,
    StoreError,
    WorkspaceConflictError,
)
from dvx.repo import Repository

__version__ = "0.1.0"

__all__ = [
    "CorruptObjectError",
    "DvxError",
    "FormatVersionError",
    "MissingObjectError",
    "NotARepositoryError",
    "PathOutsideRepoError",
    "PointerError",
    "RemoteError",
    "Repository",
    "StoreError",
    "WorkspaceConflictError",
    "__version__",
]
