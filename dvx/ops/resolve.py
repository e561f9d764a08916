"""``dvx checkout --ours/--theirs PATH``: settle a pointer both sides of a merge changed.

Takes that side's pointer from the git index (stage 2 = ours, stage 3 = theirs), checks
its data out (refusing, before anything changes, to overwrite unsaved data unless
``force``), then writes it as the pointer file. Like ``git checkout --ours``, the path
stays unmerged in the index until ``git add PATH.dvx`` (or ``dvx commit``) stages it.
"""

from __future__ import annotations

from dvx.errors import DvxError
from dvx.fsutil import atomic_write_bytes, os_error
from dvx.gitio import GitRepo
from dvx.ops.checkout import CheckoutResult, checkout
from dvx.pointer import POINTER_SUFFIX, Pointer, parse_pointer
from dvx.progress import NULL_PROGRESS, Progress
from dvx.repo import Repository


def take_side(repo: Repository, paths: list[str], side: str, *, force: bool = False,
              progress: Progress = NULL_PROGRESS) -> list[CheckoutResult]:
    assert side in ("ours", "theirs")
    if not paths:
        raise DvxError(f"--{side} needs the paths to resolve", f"e.g. `dvx checkout --{side} data`")
    git = GitRepo(repo.root)
    other = "theirs" if side == "ours" else "ours"
    chosen: dict[str, Pointer] = {}
    raw: dict[str, bytes] = {}
    for p in paths:
        rel = repo.relpath(p)
        target = rel[: -len(POINTER_SUFFIX)] if rel.endswith(POINTER_SUFFIX) else rel
        ptr_path = target + POINTER_SUFFIX
        unmerged, blob = git.conflict_side(ptr_path, side)
        if not unmerged:
            raise DvxError(f"{ptr_path} is not unmerged",
                           f"--{side} picks a side of a pointer a merge left in conflict; see `git status`")
        if blob is None:
            raise DvxError(f"{ptr_path} was deleted on the {side} side of the merge",
                           f"to delete it run `git rm {ptr_path}`; to keep the other version, "
                           f"`dvx checkout --{other} {target}`")
        chosen[target] = parse_pointer(blob, f"{ptr_path} ({side})")
        raw[target] = blob  # written as git stores it, byte for byte
    results = checkout(repo, list(chosen), force=force, pointers=chosen, progress=progress)
    done = [r.target for r in results if not r.error]  # a failed checkout keeps its conflict
    for target in done:
        try:
            atomic_write_bytes(repo.abspath(target + POINTER_SUFFIX), raw[target],
                               fsync=repo.config.core.fsync)
        except OSError as exc:
            raise os_error(exc, f"write {target}{POINTER_SUFFIX}") from None
    from dvx.ops.stale import note_checked_out

    note_checked_out(repo, done)
    return results
