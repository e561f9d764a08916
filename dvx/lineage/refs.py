"""The refs the lineage graph is built from, and their signature (``protocols/lineage.md`` §5).

Three groups: run refs (``refs/dvx/runs/*``, read by :mod:`dvx.runs.index`), artifact
refs (``refs/dvx/artifacts/*``) and every other ref plus HEAD (branches, tags, remote
branches, notes...), whose commits are walked for pointer changes.

The signature changes whenever a ref is added, removed or moved: git (and dulwich)
write a loose ref by renaming ``<ref>.lock`` into its directory, delete one by
unlinking it and rewriting ``packed-refs``, and pack refs by rewriting ``packed-refs``.
It is the ``(inode, mtime, ctime, size)`` of every directory below ``refs/``, of
``packed-refs`` and of ``HEAD`` (``protocols/lineage.md`` §5).
"""

from __future__ import annotations

import os

from dvx.repo import Repository

RUNS = "refs/dvx/runs/"
ARTIFACTS = "refs/dvx/artifacts/"


def git_dir(repo: Repository) -> str | None:
    from dvx.gitio import common_git_dir, find_git_root

    root = find_git_root(repo.root)
    return common_git_dir(root) if root else None


def _stat(path: str) -> str:
    try:
        st = os.stat(path)
    except OSError:
        return "-"
    return f"{st.st_ino}:{st.st_mtime_ns}:{st.st_ctime_ns}:{st.st_size}"


def signature(repo: Repository) -> str:
    gd = git_dir(repo)
    if gd is None:
        return "no-git"
    parts = [_stat(os.path.join(gd, "packed-refs")), _stat(os.path.join(gd, "HEAD"))]
    top = os.path.join(gd, "refs")
    # directories only; the run and artifact directories are stat'ed, not listed (their
    # names hold no '/': no directory below them)
    leaf = {os.path.join(top, "dvx", "runs"), os.path.join(top, "dvx", "artifacts")}
    stack = [top]
    while stack:
        d = stack.pop()
        parts.append(f"{d[len(top):]}={_stat(d)}")
        if d in leaf:
            continue
        try:
            with os.scandir(d) as it:
                subs = sorted(e.path for e in it if e.is_dir(follow_symlinks=False))
        except OSError:
            continue
        stack.extend(reversed(subs))
    return "|".join(parts)


def branch_heads(repo: Repository) -> dict[str, str]:
    """``ref -> commit`` of HEAD and every ref outside ``refs/dvx/runs/`` and
    ``refs/dvx/artifacts/`` that names a commit (annotated tags peeled). Run refs are
    never listed one by one here: there may be tens of thousands."""
    gd = git_dir(repo)
    if gd is None:
        return {}
    from dvx.gitio import GitRepo

    git = GitRepo(repo.root)
    names: set[str] = set()
    try:
        with open(os.path.join(gd, "packed-refs"), "rb") as f:
            for line in f:
                if line[:1] in (b"#", b"^"):
                    continue
                name = line.rstrip(b"\n").partition(b" ")[2].decode("utf-8", "replace")
                if name.startswith("refs/"):
                    names.add(name)
    except OSError:
        pass
    top = os.path.join(gd, "refs")
    for dirpath, dirs, files in os.walk(top):
        rel = os.path.relpath(dirpath, gd).replace(os.sep, "/") + "/"
        dirs[:] = [d for d in dirs if rel + d + "/" not in (RUNS, ARTIFACTS)]  # never listed
        names.update(rel + f for f in files if not f.endswith(".lock"))
    out: dict[str, str] = {}
    refs = git.repo.refs
    for name in sorted(n for n in names if not n.startswith((RUNS, ARTIFACTS))):
        try:
            sha = refs[name.encode()].decode()  # type: ignore[index]
        except (KeyError, ValueError, OSError):
            continue
        commit = git.peel_commit(sha)
        if commit is not None:
            out[name] = commit
    head = git.head()
    if head is not None:
        out["HEAD"] = head
    return out


def artifact_refs(repo: Repository) -> dict[str, str]:
    """``artifact name -> commit`` of every ``refs/dvx/artifacts/<NAME>``."""
    if git_dir(repo) is None:
        return {}
    from dvx.gitio import GitRepo

    return {name[len(ARTIFACTS):]: sha for name, sha in GitRepo(repo.root).refs_under(ARTIFACTS).items()}
