"""Telling data the user edited from data a git operation left behind.

``git merge``, ``git rebase``, ``git reset``, ``git checkout -- PATH.dvx`` and friends
move a pointer without touching its data. The stat cache's *base* (``StatCache.save_base``)
records which version DVX last checked out or added at each path, so ``status`` can say:

* ``modified``: the pointer still names the base and the data differs: the user edited it;
* ``stale``: the data is still the base but the pointer names another version: the
  pointer moved under it; ``dvx checkout`` brings the data (it is saved in the store);
* ``diverged``: both happened; the user must choose.

``dvx commit`` re-adds only ``modified`` data: it never turns stale data back into a
pointer (that would revert the incoming change in the new commit).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from dvx.errors import DvxError
from dvx.pointer import POINTER_SUFFIX
from dvx.statcache import StatCache

if TYPE_CHECKING:
    from dvx.ops.status import PathStatus
    from dvx.pointer import Pointer
    from dvx.repo import Repository


def note_checked_out(repo: Repository, targets: list[str]) -> None:
    """After checkout: the base of each target is what its pointer file names now (after
    ``checkout --rev`` too: data that differs from the pointer then is the user's choice,
    ``modified``, which commit re-adds). No readable pointer file: base unknown."""
    from dvx.pointer import read_pointer

    cache = StatCache(repo.state_dir)
    for target in targets:
        try:
            oid: bytes | None = read_pointer(repo.abspath(target + POINTER_SUFFIX), target + POINTER_SUFFIX).oid
        except DvxError:
            oid = None
        cache.save_base(target, oid)


def classify(repo: Repository, pointer: Pointer, res: PathStatus, cache: StatCache) -> None:
    """Turn a ``modified`` status into ``stale`` or ``diverged`` where the pointer moved.

    Without a base (data never checked out or added by this DVX, or ``.dvx/state``
    deleted), data whose content is saved in the store is taken as stale: it is a
    version DVX already knows, so treating it as an edit could revert a pointer."""
    if res.state != "modified":
        return
    base = cache.load_base(res.target)
    content = res.content_id
    if base is None:
        if content is None or not repo.store.contains(content):
            return
        base = content
    if base == pointer.oid:
        return  # the pointer did not move: an edit
    t = res.target
    if content == base:
        res.state = "stale"
        res.message = (f"{t}{POINTER_SUFFIX} changed in git (merge, rebase, reset...) but the data is "
                       f"still the version checked out before; run `dvx checkout {t}`")
    else:
        res.state = "diverged"
        res.message = (f"the data was changed here and {t}{POINTER_SUFFIX} also changed in git since it was "
                       f"checked out; keep your version with `dvx add {t}`, or take the committed one "
                       f"with `dvx checkout --force {t}`")
